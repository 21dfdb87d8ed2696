"""The restyle pick's rule on saved candidates: which critic (the model's own, or its mean with the n-gram
critic the file carries), how much chroma weighs, and among how many candidates (the first n of those saved).

    python scripts/experiment_pick_rules.py runs/fc/shipped-s1-clean-16.pkl [...] [--model models/restyle.pt]
        [--json out.json]

The candidates come from `scripts/experiment_critic_pick.py --save` (its token critic's p(target) is saved
with them); the n-gram critic is read from `--model`; the independent classifier judges; chroma is to the
source as written (the eval's), the pick's chroma term to the source given (as played, for played draws).
"""

from __future__ import annotations

import argparse
import json
import pickle
import warnings
from pathlib import Path

import numpy as np

from engine.model.style_ngram import read_style_ngram
from engine.music.similarity import chroma_similarity
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.style_classifier import load_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("saved", nargs="+")
    p.add_argument("--model", default="models/restyle.pt", help="the restyle file whose n-gram critic scores")
    p.add_argument("--weights", default="1,1.5,2", help="the chroma weights to try")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    ngram, judge = read_style_ngram(a.model), load_classifier()
    weights = [float(w) for w in a.weights.split(",")]
    report: dict = {"model": a.model, "draws": {}}
    for path in a.saved:
        d = pickle.loads(Path(path).read_bytes())
        outs, targets = d["outs"], np.asarray(d["targets"])
        verdict = judge.predict(outs) == targets  # (N,)
        p_token = next(iter(d["critic_p_target"].values()))
        p_ngram = np.asarray([ngram.probabilities(o)[t] for o, t in zip(outs, targets)])
        chroma = np.asarray([chroma_similarity(s, o, DEFAULT_VOCAB) for s, o in zip(d["sources"], outs)])
        given = np.asarray([chroma_similarity(s, o, DEFAULT_VOCAB) for s, o in zip(d["given"], outs)])
        pairs = sorted(set(d["pair_of"]))
        index = [[j for j, q in enumerate(d["pair_of"]) if q == pr] for pr in pairs]
        saved = len(index[0])
        row = {"pairs": len(pairs), "as_played": d["as_played"], "seed": d["seed"], "candidates_saved": saved,
               "one_sample": {"target_accuracy": round(float(np.mean([verdict[ix[0]] for ix in index])), 4),
                              "chroma": round(float(np.mean([chroma[ix[0]] for ix in index])), 4)}}
        for n in sorted({min(8, saved), saved}):
            row[f"any_of_{n}"] = round(float(np.mean([verdict[ix[:n]].any() for ix in index])), 4)
            for critic, style in (("token", p_token), ("both", 0.5 * (p_token + p_ngram))):
                for w in weights:
                    score = style + w * given
                    picks = [ix[:n][int(np.argmax(score[ix[:n]]))] for ix in index]
                    row[f"n{n}_{critic}_chroma{w:g}"] = {"target_accuracy": round(float(verdict[picks].mean()), 4),
                                                         "chroma": round(float(chroma[picks].mean()), 4)}
        report["draws"][path] = row
        print(path, json.dumps(row))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
