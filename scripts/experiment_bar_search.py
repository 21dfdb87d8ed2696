"""The critic's choice made bar by bar instead of among whole phrases: restyle held-out phrases into every
other style three ways on the same pairs, and let the independent classifier judge each.

    one sample      the live mode's (guidance 1.5, temperature 0.8)
    pick of K       K whole candidates, the one with the best critic p(target) + chroma to the source
                    (`Restyler.restyle`, the offline default)
    bar search      K candidates for each bar, each continuing the bars kept so far; kept: the one whose
                    phrase so far has the best critic p(target) + chroma to the source so far. K samples a
                    bar, as the pick of K has, plus the kept prefix fed again for each

    python scripts/experiment_bar_search.py models/restyle.pt [--per-style 20] [--candidates 8] [--seed S]
        [--as-played] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from engine.corpus.phrases import style_corpus
from engine.model.modelfile import load_model
from engine.model.restyler import Restyler, RestyleDecode, RestyleSettings
from engine.model.sampler import SamplingConfig
from engine.model.session import ModelSession
from engine.music.melody import Melody, decode_melody, encode_melody
from engine.music.similarity import chroma_similarity
from engine.music.styles import STYLE_NAMES, style_index
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.evaluate_restyle import _phrases
from engine.train.humanize import play_melody
from engine.train.style_classifier import load_classifier

V = DEFAULT_VOCAB
HEADER = 4  # bos, task, style, bar (RestyleDecode's header)


def force(decode: RestyleDecode, token: int) -> None:
    """Write `token` into the decode as if sampled (RestyleDecode.step without the choice)."""
    decode.tokens.append(token)
    decode._entered = decode._entered or V.is_note_on(token)
    decode.state.feed(token)
    decode.budget -= 1
    if decode.state.position >= decode.end or decode.budget <= 0:
        decode.done = True
        return
    if token == V.bar:
        for c in decode.conditions:
            c.next_bar()
    decode._logits = decode.model.append(token)


def partial(decode: RestyleDecode) -> tuple[Melody, int]:
    """What the decode has written, as a Melody of its whole bars (all of them when done), in its bar lines."""
    bars = decode.bars if decode.done else max(1, sum(1 for t in decode.tokens[HEADER:] if t == V.bar))
    written = decode_melody(decode.tokens, decode.meter, decode.bars, V)
    end = bars * decode.meter.bar_ticks(V.config.ticks_per_beat)
    notes = written.notes[written.notes[:, 0] < end].copy()
    notes[:, 1] = np.minimum(notes[:, 1], end)
    return Melody(notes, decode.meter, bars), bars


def source_prefix(view: Melody, bars: int) -> Melody:
    end = bars * view.bar_ticks(V)
    notes = view.notes[view.notes[:, 0] < end].copy()
    notes[:, 1] = np.minimum(notes[:, 1], end)
    return Melody(notes, view.meter, bars)


def bar_search(restyler: Restyler, source: Melody, settings: RestyleSettings, k: int, seed: int,
               weight: float = 1.0) -> Melody:
    target = style_index(settings.style)
    prefix: list[int] = []
    for step in range(64):
        best, best_score = None, -1.0
        for c in range(k):
            d = restyler.begin(source, settings, seed=seed * 1000 + step * k + c)
            for t in prefix:
                force(d, t)
            while not d.done:
                d.step()
                if d.tokens[-1] == V.bar:
                    break
            heard, bars = partial(d)
            style = float(restyler.own_style(encode_melody(heard, V))[target])
            view = Melody(source.notes, d.meter, d.bars)  # the source in the model's bar lines
            score = style + weight * chroma_similarity(source_prefix(view, bars), heard, V)
            if score > best_score:
                best, best_score = d, score
        prefix = best.tokens[HEADER:]
        if best.done:
            return best.result()
    return best.result()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--per-style", type=int, default=20)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--as-played", action="store_true")
    p.add_argument("--weight", type=float, default=1.0, help="the bar search's weight on chroma (the pick's is 1)")
    p.add_argument("--only-search", action="store_true", help="only the bar search (not one sample, the pick)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    torch.set_num_threads(1)
    t0 = time.monotonic()
    corpus = style_corpus(0)
    judge = load_classifier()
    restyler = Restyler(ModelSession(load_model(a.model, DEFAULT_VOCAB), device="cpu", threads=1), DEFAULT_VOCAB)
    phrases = _phrases(corpus, a.per_style, a.seed)
    rng = np.random.default_rng(a.seed + 1)
    played = {id(ph): play_melody(ph.melody, rng) for ph in phrases}
    outs = {"one_sample": [], "pick": [], "bar_search": []}
    sources, targets = [], []
    for i, ph in enumerate(phrases):
        source = played[id(ph)] if a.as_played else ph.melody
        for t in range(len(STYLE_NAMES)):
            if t == ph.style:
                continue
            seed = a.seed * 1000 + i * 10 + t
            base = RestyleSettings(style=STYLE_NAMES[t], amount=1.0, sampling=SamplingConfig(0.8, 0, 0.95, None))
            if not a.only_search:
                outs["one_sample"].append(restyler.restyle(source, base, seed=seed))
                picked = RestyleSettings(style=STYLE_NAMES[t], amount=1.0, candidates=a.candidates,
                                         sampling=SamplingConfig(0.8, 0, 0.95, None))
                outs["pick"].append(restyler.restyle(source, picked, seed=seed))
            outs["bar_search"].append(bar_search(restyler, source, base, a.candidates, seed, a.weight))
            sources.append(ph.melody)
            targets.append(t)
    targets_a = np.asarray(targets)
    report = {"model": a.model, "as_played": a.as_played, "seed": a.seed, "pairs": len(targets),
              "candidates": a.candidates}
    report["weight"] = a.weight
    for name, o in outs.items():
        if not o:
            continue
        report[name] = {"target_accuracy": round(float((judge.predict(o) == targets_a).mean()), 4),
                        "chroma": round(float(np.mean([chroma_similarity(s, x, V) for s, x in zip(sources, o)])), 4),
                        "notes": round(float(np.mean([len(x.notes) for x in o])), 2)}
    report["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
