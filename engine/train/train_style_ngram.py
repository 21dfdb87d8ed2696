"""Count the restyle pick's n-gram critic on real phrases and attach it to a restyle model file:
`sideman train --config style-ngram`.

The critic (`engine.model.style_ngram`) is five trigram models, one a style, over the notes' (interval,
inter-onset time) symbols. They are counted on real train phrases only, the styles equally often, half of them
as a person plays them (`engine.train.humanize.play_melody`), as the independent classifier's are, but with
their own draw; never on generated phrases and never with the classifier. Counting takes under a minute.
The model file is written again with the critic inside (the archive's extra file `style_ngram.npz`) and its
card's `restyle.ngram_critic` (what was counted, and the critic's own balanced accuracy on held-out test
phrases, clean and as played).

    sideman train --config style-ngram          # models/restyle.pt -> runs/style-ngram/restyle.pt (+ card)
    sideman train --config style-ngram --set model=runs/X/restyle.pt --set out=models/restyle.pt
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from engine.corpus.phrases import PhraseSampler, corpus_phrases, style_corpus
from engine.errors import ModelError
from engine.model.modelfile import CARD_NAME, read_card
from engine.model.style_ngram import EXTRA_NAME, N_SYMBOLS, StyleCounts, StyleNgram, melody_symbols, read_style_ngram
from engine.music.styles import STYLE_NAMES
from engine.train.export import card_path
from engine.train.humanize import play_melody
from engine.train.train_restyle import with_overrides

log = logging.getLogger("sideman.train.style_ngram")
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class StyleNgramConfig:
    name: str = "style-ngram"
    model: str = "models/restyle.pt"  # the restyle file the critic is attached to (relative to the repository)
    out: str = ""  # where the file with the critic goes (default runs/NAME/restyle.pt)
    phrases: int = 30000  # real train phrases, the styles equally often
    played_share: float = 0.5
    test_per_style: int = 300  # held-out test phrases a style for the critic's own accuracy
    seed: int = 23
    data_limit: int = 0  # pieces per style (tiny runs for tests)


PRESETS = {
    "style-ngram": StyleNgramConfig(),
    "tiny-style-ngram": StyleNgramConfig(name="tiny-style-ngram", phrases=400, test_per_style=10, data_limit=24),
}


def count_style(sequences: list[np.ndarray]) -> StyleCounts:
    """One style's unigram, bigram and trigram counts over its phrases' symbol sequences."""
    uni = np.zeros(N_SYMBOLS, np.int64)
    bi, tri = [], []
    for s in sequences:
        uni += np.bincount(s, minlength=N_SYMBOLS)
        if len(s) >= 2:
            bi.append(s[:-1] * N_SYMBOLS + s[1:])
        if len(s) >= 3:
            tri.append((s[:-2] * N_SYMBOLS + s[1:-1]) * N_SYMBOLS + s[2:])
    b_keys, b_counts = np.unique(np.concatenate(bi) if bi else np.zeros(0, np.int64), return_counts=True)
    t_keys, t_counts = np.unique(np.concatenate(tri) if tri else np.zeros(0, np.int64), return_counts=True)
    return StyleCounts(uni, b_keys, b_counts.astype(np.int64), t_keys, t_counts.astype(np.int64))


def balanced_accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == s] == s) for s in np.unique(y)]))


def build_style_ngram(cfg: StyleNgramConfig, corpus=None) -> StyleNgram:
    """Count the critic on real train phrases and measure it on held-out test phrases."""
    t0 = time.monotonic()
    corpus = corpus or style_corpus(cfg.data_limit)
    sampler = PhraseSampler(corpus, "train", seed=cfg.seed, limit=cfg.data_limit)
    rng = np.random.default_rng(cfg.seed)
    per_style: list[list[np.ndarray]] = [[] for _ in STYLE_NAMES]
    for _ in range(cfg.phrases):
        m, s = sampler.draw()
        if rng.random() < cfg.played_share:
            m = play_melody(m, rng)
        per_style[s].append(melody_symbols(m))
    card = {"kind": "style-ngram", "config": asdict(cfg),
            "symbols": "melodic interval (+-12) x inter-onset time (log2 beats, 1/8..8); interpolated trigrams"}
    ngram = StyleNgram(list(STYLE_NAMES), [count_style(seqs) for seqs in per_style], card)
    test = corpus_phrases(corpus, "test", cfg.test_per_style, seed=cfg.seed, strict=not cfg.data_limit)
    y = np.asarray([ph.style for ph in test])
    r = np.random.default_rng(cfg.seed + 1)
    metrics = {}
    for key, melodies in (("clean", [ph.melody for ph in test]),
                          ("played", [play_melody(ph.melody, r) for ph in test])):
        pred = np.asarray([int(np.argmax(ngram.probabilities(m))) for m in melodies])
        metrics[f"test_balanced_accuracy_{key}"] = round(balanced_accuracy(pred, y), 4)
    metrics["test_phrases"] = int(len(y))
    metrics["wall_time_s"] = round(time.monotonic() - t0, 1)
    card["metrics"] = metrics  # (the critic's own card)
    log.info("style n-gram critic: test balanced accuracy %.3f clean, %.3f as played (%d phrases, %.0f s)",
             metrics["test_balanced_accuracy_clean"], metrics["test_balanced_accuracy_played"], len(y),
             metrics["wall_time_s"])
    return ngram


def attach_style_ngram(model: Path, ngram: StyleNgram, out: Path) -> dict:
    """Write the restyle file `model` again at `out` with `ngram` inside and its card saying so."""
    card = read_card(model)
    if card.get("task") != "RESTYLE":
        raise ModelError(f"{model}: a {card.get('task', 'CONTINUE')} model; the n-gram critic goes with a "
                         "restyle model (models/restyle.pt)")
    if list(card.get("styles", [])) != ngram.styles:
        raise ModelError(f"{model}: trained for the styles {card.get('styles')}, the critic counted for "
                         f"{ngram.styles}; count it again with `sideman train --config style-ngram`")
    card["restyle"] = {**card["restyle"], "ngram_critic": {k: ngram.card[k] for k in ("config", "metrics", "symbols")}}
    text = json.dumps(card, indent=2, sort_keys=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(model), map_location="cpu")
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        torch.jit.save(module, str(tmp), _extra_files={CARD_NAME: text, EXTRA_NAME: ngram.to_bytes()})
    os.replace(tmp, out)
    card_path(out).write_text(text + "\n")
    return card


def carry_style_ngram(source: Path, out: Path) -> None:
    """After a restyle file is written again from `source` (a retrained critic, a shipped run), put the
    source's n-gram critic back in `out` (export writes the card alone)."""
    ngram = read_style_ngram(source)
    if ngram is not None:
        attach_style_ngram(out, ngram, out)


def train_style_ngram(cfg: StyleNgramConfig) -> dict:
    model = REPO / cfg.model if not Path(cfg.model).is_absolute() else Path(cfg.model)
    if not model.is_file():
        raise ModelError(f"{model}: no such restyle model file; train one with `sideman train --config restyle` "
                         "or give --set model=PATH")
    out = Path(cfg.out) if cfg.out else REPO / "runs" / cfg.name / "restyle.pt"
    ngram = build_style_ngram(cfg)
    card = attach_style_ngram(model, ngram, out)
    log.info("attached the style n-gram critic: %s -> %s (%.1f MB)", model, out, out.stat().st_size / 1e6)
    return {"path": str(out), "bytes": out.stat().st_size, **card["restyle"]["ngram_critic"]}


def load_style_ngram_config(name: str, overrides: dict | None = None) -> StyleNgramConfig:
    return with_overrides(PRESETS[name], overrides, "style n-gram setting", ModelError)


__all__ = ["PRESETS", "StyleNgramConfig", "attach_style_ngram", "build_style_ngram", "carry_style_ngram", "count_style",
           "load_style_ngram_config", "train_style_ngram"]
