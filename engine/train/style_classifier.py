"""The independent style classifier: which of the five styles a melody phrase is in.

It judges restyled phrases in `sideman eval --task restyle`, so it is trained on real phrases only and
used by no model's training. It reads the phrase's statistics (`engine.train.style_features`: intervals,
durations, metric positions, scale degrees, register; not the meter, which restyling keeps), never tokens, through a small MLP. Its
accuracy on held-out real phrases (the test split), clean and as played, is the ceiling for the
restyled phrases' target-style accuracy.

    sideman train --config style-classifier        # -> models/style-classifier.pt (+ .card.json), ~1 min

Half of its training phrases are as a person plays them (`engine.train.humanize.play_melody`), and every
phrase is transposed by -5..+6 semitones, so key and touch are not what it learns.
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
import torch.nn as nn
import torch.nn.functional as F

from engine.corpus.dataset import Corpus
from engine.corpus.phrases import PhraseSampler, corpus_phrases, style_corpus
from engine.errors import ModelError
from engine.music.styles import STYLE_NAMES
from engine.train.humanize import play_melody
from engine.train.style_features import N_FEATURES, feature_matrix

log = logging.getLogger("sideman.train.style_classifier")

REPO = Path(__file__).resolve().parents[2]
DEFAULT_PATH = REPO / "models" / "style-classifier.pt"
CARD_NAME = "card.json"


@dataclass(frozen=True)
class ClassifierConfig:
    name: str = "style-classifier"
    train_phrases: int = 30000  # drawn from the train split, the styles equally often
    val_per_style: int = 300
    test_per_style: int = 600
    hidden: int = 256
    dropout: float = 0.2
    epochs: int = 40
    batch_size: int = 256
    lr: float = 2e-3
    weight_decay: float = 1e-4
    played_share: float = 0.5
    transpose: tuple[int, int] = (-5, 6)
    seed: int = 7
    data_limit: int = 0  # pieces per style (tiny runs for tests)


PRESETS = {
    "style-classifier": ClassifierConfig(),
    "tiny-style-classifier": ClassifierConfig(name="tiny-style-classifier", train_phrases=1500, val_per_style=30,
                                              test_per_style=40, epochs=5, data_limit=24),
}


class StyleMLP(nn.Module):
    """features (B, 70) -> logits (B, n_styles); the features' mean and sd are buffers (set from training)."""

    def __init__(self, n_features: int, n_styles: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.net = nn.Sequential(nn.Linear(n_features, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, n_styles))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)


def _phrases(melodies, rng: np.random.Generator, cfg: ClassifierConfig, played: bool):
    out = []
    for m in melodies:
        lo, hi = cfg.transpose
        m = m.transposed(int(rng.integers(lo, hi + 1)))
        if played and rng.random() < cfg.played_share:
            m = play_melody(m, rng)
        out.append(m)
    return out


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """(accuracy, confusion matrix (true, predicted))."""
    with torch.no_grad():
        pred = model(torch.from_numpy(x)).argmax(-1).numpy()
    k = len(STYLE_NAMES)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    return float((pred == y).mean()) if len(y) else 0.0, confusion


def train_classifier(cfg: ClassifierConfig, corpus: Corpus | None = None, out: Path | None = None) -> dict:
    t0 = time.monotonic()
    corpus = corpus or style_corpus(cfg.data_limit)
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    sampler = PhraseSampler(corpus, "train", seed=cfg.seed, limit=cfg.data_limit)
    drawn = [sampler.draw() for _ in range(cfg.train_phrases)]
    x_train = feature_matrix(_phrases([m for m, _ in drawn], rng, cfg, played=True))
    y_train = np.asarray([s for _, s in drawn], dtype=np.int64)

    def held_out(split: str, per_style: int, played: bool) -> tuple[np.ndarray, np.ndarray]:
        ph = corpus_phrases(corpus, split, per_style, seed=cfg.seed, strict=not cfg.data_limit)
        r = np.random.default_rng(cfg.seed + 1)
        ms = [p.melody for p in ph]
        ms = [play_melody(m, r) for m in ms] if played else ms
        return feature_matrix(ms), np.asarray([p.style for p in ph], dtype=np.int64)

    x_val, y_val = held_out("val", cfg.val_per_style, played=False)
    model = StyleMLP(N_FEATURES, len(STYLE_NAMES), cfg.hidden, cfg.dropout)
    model.mean.copy_(torch.from_numpy(x_train.mean(0)))
    model.std.copy_(torch.from_numpy(x_train.std(0) + 1e-3))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    best, best_state = -1.0, None
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = F.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        acc, _ = accuracy(model, x_val, y_val)
        if acc > best:
            best, best_state = acc, {k: v.clone() for k, v in model.state_dict().items()}
        log.info("epoch %d: loss %.3f, val accuracy %.3f", epoch + 1, loss.item(), acc)
    model.load_state_dict(best_state)
    model.eval()
    metrics = {"val_accuracy": round(best, 4)}
    for played in (False, True):
        x, y = held_out("test", cfg.test_per_style, played)
        acc, conf = accuracy(model, x, y)
        key = "played" if played else "clean"
        metrics[f"test_accuracy_{key}"] = round(acc, 4)
        metrics[f"test_confusion_{key}"] = conf.tolist()
        metrics[f"test_phrases_{key}"] = int(len(y))
    metrics["chance"] = round(1.0 / len(STYLE_NAMES), 4)
    card = {"format": "sideman-style-classifier-1", "name": cfg.name, "kind": "style-classifier",
            "styles": list(STYLE_NAMES), "features": N_FEATURES, "config": asdict(cfg), "metrics": metrics,
            "training": {"train_phrases": cfg.train_phrases, "wall_time_s": round(time.monotonic() - t0, 1),
                         "corpus": str(corpus.dir)}}
    path = out or (DEFAULT_PATH if cfg.name == "style-classifier" else REPO / "runs" / cfg.name / f"{cfg.name}.pt")
    save_classifier(model, card, path)
    log.info("style classifier: test accuracy %.3f clean, %.3f as played (chance %.2f) -> %s",
             metrics["test_accuracy_clean"], metrics["test_accuracy_played"], metrics["chance"], path)
    return {"path": str(path), **card}


def save_classifier(model: StyleMLP, card: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(card, indent=2, sort_keys=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
        tmp = path.with_name(path.name + ".tmp")
        torch.jit.save(scripted, str(tmp), _extra_files={CARD_NAME: text})
    os.replace(tmp, path)
    path.with_name(path.stem + ".card.json").write_text(text + "\n")


@dataclass(frozen=True)
class StyleClassifier:
    """The loaded classifier: `probabilities(melodies)` -> (N, n_styles)."""

    module: torch.jit.ScriptModule
    card: dict

    def probabilities(self, melodies) -> np.ndarray:
        x = torch.from_numpy(feature_matrix(list(melodies)))
        with torch.no_grad():
            return torch.softmax(self.module(x), -1).numpy()

    def predict(self, melodies) -> np.ndarray:
        return self.probabilities(melodies).argmax(-1)


def load_classifier(path: str | Path = DEFAULT_PATH) -> StyleClassifier:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no style classifier; train it with `sideman train --config style-classifier`")
    extra = {CARD_NAME: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), _extra_files=extra)
    card = json.loads(extra[CARD_NAME] or "{}")
    if card.get("kind") != "style-classifier" or card.get("styles") != list(STYLE_NAMES):
        raise ModelError(f"{path}: not a style classifier for the styles {', '.join(STYLE_NAMES)}; retrain it "
                         "with `sideman train --config style-classifier`")
    module.eval()
    return StyleClassifier(module, card)


__all__ = ["ClassifierConfig", "PRESETS", "StyleClassifier", "load_classifier", "train_classifier"]
