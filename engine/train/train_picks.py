"""Teach a restyle model's decoder its own critic's picks: `sideman train --config restyle-picks`.

Expert iteration (best-of-N distillation; the critic used in training, the issue's GAN part, without a
relaxed output): train phrases (transposed, as played half the time) are restyled into another style drawn
at random with the runtime's own settings (guidance, register, the target's bar lines), `candidates` each,
and the one the runtime's pick keeps (the critic's p(target) + chroma to the phrase, `Restyler.restyle`)
becomes a training example for the decoder, under the condition it was written with ([each bar's z, the
target one-hot]). Half of each batch is real phrases with their own style, as in the model's training, so
the decoder keeps reconstructing. The encoder and the critic are frozen: z, the probe and the critic's
judgement are the model's as before; only what the decoder writes for a style moves.

    sideman train --config restyle-picks     # models/restyle.pt -> runs/restyle-picks/restyle.pt (+ card)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.corpus.phrases import PhraseSampler
from engine.errors import ModelError
from engine.model.modelfile import load_model
from engine.music.melody import Melody, encode_melody
from engine.music.similarity import chroma_similarity
from engine.music.styles import STYLE_NAMES
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.humanize import play_melody
from engine.train.decoder_tuning import decoder_loss, teach_decoder
from engine.train.train_restyle import pad_batch, with_overrides

log = logging.getLogger("sideman.train.picks")


@dataclass(frozen=True)
class PicksConfig:
    name: str = "restyle-picks"
    model: str = "models/restyle.pt"  # whose decoder is taught (relative to the repository)
    pairs: int = 1500  # train phrases restyled, one target each
    candidates: int = 8  # the runtime's offline default
    steps: int = 600
    batch_size: int = 32  # half picked, half real (real_share)
    real_share: float = 0.5
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    word_dropout: float = 0.4  # as the model's training: the decoder keeps reading z
    played_share: float = 0.5
    transpose: tuple[int, int] = (-5, 6)
    seed: int = 13
    data_limit: int = 0  # pieces per style (tiny runs for tests)
    threads: int = 1


PRESETS = {
    "restyle-picks": PicksConfig(),
    "tiny-restyle-picks": PicksConfig(name="tiny-restyle-picks", pairs=6, candidates=2, steps=4, batch_size=4,
                                      data_limit=24),
}


@dataclass(frozen=True)
class Picked:
    tokens: list[int]  # as the decoder wrote it (header, then the line in the target's bar lines)
    z: np.ndarray  # (N, Z [+ A]) what the decoder read a bar when it wrote it (z, and the anchor if any)
    style: int  # the target


def picked_phrases(path: Path, sampler: PhraseSampler, cfg: PicksConfig, rng: np.random.Generator) -> list[Picked]:
    """`cfg.pairs` train phrases restyled with the runtime's settings; of each pair's candidates, the pick."""
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    restyler = Restyler(ModelSession(load_model(path, DEFAULT_VOCAB), device="cpu", threads=cfg.threads),
                        DEFAULT_VOCAB)
    lo, hi = cfg.transpose
    out: list[Picked] = []
    t0 = time.monotonic()
    while len(out) < cfg.pairs:
        m, style = sampler.draw()
        m = m.transposed(int(rng.integers(lo, hi + 1)))
        if rng.random() < cfg.played_share:
            m = play_melody(m, rng)
        target = int(rng.choice([s for s in range(len(STYLE_NAMES)) if s != style]))
        settings = RestyleSettings(style=STYLE_NAMES[target])
        best, best_score = None, -1.0
        for _ in range(cfg.candidates):
            decode = restyler.begin(m, settings, seed=int(rng.integers(2**31)))
            decode.run()
            result = decode.result()
            heard = Melody(result.notes, decode.meter, decode.bars)  # as the pick hears it
            if not len(heard.notes):
                continue
            score = float(restyler.own_style(encode_melody(heard))[target]) + chroma_similarity(m, result)
            if score > best_score:
                z = np.stack([row[: -restyler.n_styles].numpy() for row in decode.conditions[0].rows])  # (N, Z [+ A])
                best, best_score = Picked(list(decode.tokens), z, target), score
        if best is not None:
            out.append(best)
        if len(out) % 250 == 0 and out:
            log.info("picked %d of %d (%.0f s)", len(out), cfg.pairs, time.monotonic() - t0)
    return out


def picked_loss(model, batch: list[Picked], word_dropout: float) -> torch.Tensor:
    """The decoder's cross-entropy on picked lines under the condition they were written with."""
    pad = DEFAULT_VOCAB.pad
    tokens = pad_batch([p.tokens for p in batch], pad)  # (B, T)
    n = max(len(p.z) for p in batch)
    z = torch.zeros(len(batch), n, batch[0].z.shape[1])  # (B, N, Z [+ A])
    for i, p in enumerate(batch):
        z[i, : len(p.z)] = torch.from_numpy(p.z)
    bars = torch.tensor([len(p.z) for p in batch])  # (B,)
    styles = torch.tensor([p.style for p in batch])  # (B,)
    return decoder_loss(model, tokens, z, styles, bars, word_dropout)


def train_picks(cfg: PicksConfig, out: Path | None = None) -> dict:
    return teach_decoder(cfg, lambda path, sampler, trained, rng: picked_phrases(path, sampler, cfg, rng),
                         picked_loss, "picks", "the decoder on its own critic's picks of the runtime's candidates "
                         "(engine.train.train_picks)", "picked", log, out)


def load_picks_config(name: str, overrides: dict | None = None) -> PicksConfig:
    return with_overrides(PRESETS[name], overrides, "picks setting", ModelError)


__all__ = ["PRESETS", "Picked", "PicksConfig", "load_picks_config", "picked_phrases", "train_picks"]
