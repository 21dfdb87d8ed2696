"""Would a critic that hears what the judge hears pick better, and is the gain real or the judge's taste?

Scores the candidates saved by `scripts/experiment_critic_pick.py --save` again: the pick by the file's own
critic (the shipped rule: p(target) + chroma), by a feature critic (an MLP on the judge's 70 phrase
statistics, trained like the judge on train phrases but with its own seed and draw: `--feature-critic`), and
by both averaged. Each pick is judged twice: by the independent classifier (the eval's judge) and by a second
judge of another kind, counted here from train phrases only: per-style trigram models over (melodic interval,
inter-onset time) that read the order of the notes, not their statistics, and no pitch class, register or
metric position (`engine.model.style_ngram`, counted as `sideman train --config style-ngram` counts it; it
became the pick's second critic, and the picks by it and by its mean with the file's critic are scored here
too). A pick that only pleases the judge's feature boundary gains under the first and not under the second.

    python scripts/experiment_feature_critic.py runs/fc/shipped-s1-clean.pkl [more.pkl ...]
        [--feature-critic runs/feature-critic/feature-critic.pt] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import time
import warnings
from pathlib import Path

import numpy as np

from engine.corpus.phrases import corpus_phrases, style_corpus
from engine.model.style_ngram import StyleNgram, melody_symbols
from engine.music.melody import Melody
from engine.music.similarity import chroma_similarity
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.humanize import play_melody
from engine.train.style_classifier import load_classifier
from engine.train.train_style_ngram import StyleNgramConfig, balanced_accuracy, build_style_ngram

log = logging.getLogger("sideman.experiment.feature_critic")

def predict(ngram: StyleNgram, melodies: list[Melody]) -> np.ndarray:
    """The trigram models' verdict on each phrase (-1: fewer than 2 notes)."""
    return np.asarray([int(np.argmax(ngram.probabilities(m))) if len(m.notes) > 1 else -1 for m in melodies])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("saved", nargs="+")
    p.add_argument("--feature-critic", default="runs/feature-critic/feature-critic.pt")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    t0 = time.monotonic()
    corpus = style_corpus(0)
    second = build_style_ngram(StyleNgramConfig())  # 30,000 train phrases, half as played (seed 23)
    judge, critic = load_classifier(), load_classifier(a.feature_critic)
    report: dict = {"feature_critic": a.feature_critic, "ceilings": {}, "draws": {}}
    test = corpus_phrases(corpus, "test", 300, seed=5)
    y = np.asarray([ph.style for ph in test])
    rng = np.random.default_rng(6)
    for name, ms in (("clean", [ph.melody for ph in test]),
                     ("as_played", [play_melody(ph.melody, rng) for ph in test])):
        report["ceilings"][name] = {"judge": round(balanced_accuracy(judge.predict(ms), y), 4),
                                    "second_judge": round(balanced_accuracy(predict(second, ms), y), 4),
                                    "feature_critic": round(balanced_accuracy(critic.predict(ms), y), 4)}
    log.info("ceilings %s", report["ceilings"])
    for path in a.saved:
        d = pickle.loads(Path(path).read_bytes())
        outs, targets = d["outs"], np.asarray(d["targets"])
        pairs = sorted(set(d["pair_of"]))
        index = {pr: [j for j, q in enumerate(d["pair_of"]) if q == pr] for pr in pairs}
        verdict = judge.predict(outs) == targets  # (N,)
        second_verdict = predict(second, outs) == targets
        chroma = np.array([chroma_similarity(s, o, DEFAULT_VOCAB) for s, o in zip(d["sources"], outs)])
        chroma_given = np.array([chroma_similarity(s, o, DEFAULT_VOCAB) for s, o in zip(d["given"], outs)])
        p_token = next(iter(d["critic_p_target"].values()))
        p_feature = critic.probabilities(outs)[np.arange(len(targets)), targets]
        ll = np.stack([second.log_likelihoods(melody_symbols(o)) for o in outs])  # (N, S)
        n_sym = np.maximum([len(melody_symbols(o)) for o in outs], 1)[:, None]
        p_trigram = softmax(ll)[np.arange(len(targets)), targets]  # the trigram models' posterior
        p_trigram_note = softmax(ll / n_sym * 4)[np.arange(len(targets)), targets]  # tempered: per 4 notes
        row = {"pairs": len(pairs), "as_played": d["as_played"], "seed": d["seed"],
               "one_sample": {"judge": round(float(np.mean([verdict[index[pr][0]] for pr in pairs])), 4),
                              "second_judge": round(float(np.mean([second_verdict[index[pr][0]] for pr in pairs])), 4),
                              "chroma": round(float(np.mean([chroma[index[pr][0]] for pr in pairs])), 4)},
               "any_candidate": round(float(np.mean([verdict[index[pr]].any() for pr in pairs])), 4),
               "correlation_with_judge": {
                   "token_critic": round(float(np.corrcoef(p_token, verdict)[0, 1]), 4),
                   "feature_critic": round(float(np.corrcoef(p_feature, verdict)[0, 1]), 4),
                   "trigram": round(float(np.corrcoef(p_trigram, verdict)[0, 1]), 4),
                   "trigram_per_note": round(float(np.corrcoef(p_trigram_note, verdict)[0, 1]), 4)},
               "correlation_with_second_judge": {
                   "token_critic": round(float(np.corrcoef(p_token, second_verdict)[0, 1]), 4),
                   "feature_critic": round(float(np.corrcoef(p_feature, second_verdict)[0, 1]), 4)},
               "picks": {}}
        for pick_name, score in (("token_critic", p_token), ("feature_critic", p_feature),
                                 ("both", 0.5 * (p_token + p_feature)), ("trigram", p_trigram),
                                 ("trigram_per_note", p_trigram_note), ("token+trigram", 0.5 * (p_token + p_trigram)),
                                 ("token+trigram_per_note", 0.5 * (p_token + p_trigram_note)),
                                 ("judge_itself (cheating)", verdict * 1.0)):
            for lam in (0.5, 1.0, 2.0):
                picks = [index[pr][int(np.argmax(score[index[pr]] + lam * chroma_given[index[pr]]))] for pr in pairs]
                row["picks"][f"{pick_name}+{lam:g}chroma"] = {
                    "judge": round(float(verdict[picks].mean()), 4),
                    "second_judge": round(float(second_verdict[picks].mean()), 4),
                    "chroma": round(float(chroma[picks].mean()), 4)}
        report["draws"][path] = row
        log.info("%s: %s", path, json.dumps(row))
    report["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
