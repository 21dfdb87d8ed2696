"""Teach a restyle model's decoder to write a style over another style's content: `sideman train --config
restyle-back`.

Back-translation (the unsupervised style-transfer recipe of Lample et al., "Multiple-attribute text
rewriting", ICLR 2019): a train phrase x of style s (transposed, as played half the time) is restyled with the
runtime's own settings into another style t drawn at random (one sample, y), and the decoder is trained to
write x back, as written, in its style s from what it reads of y (y's z a bar in x's bar lines, y's anchor).
In the model's own training the decoder only ever wrote a phrase under its own style from that phrase's own
latents and anchor, which tell the style too (the probe on the anchor: 0.51), so at a restyle it follows the
phrase's style by that path. Here what it reads comes from a line of another style while the target is real
music of the style asked for: the style condition has to win. Unlike restyle-picks (whose targets were the
model's own lines, and which taught the critic's taste), every target is a real phrase. Half of each batch
is real phrases under their own style, as in the model's training. The encoder and the critic are frozen:
z, the probe on z and the critic's judgement are the model's as before; only the decoder moves.

    sideman train --config restyle-back --set model=F   # F -> runs/restyle-back/restyle.pt (+ card)
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
from engine.music.styles import STYLE_NAMES
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.humanize import play_melody
from engine.train.decoder_tuning import decoder_loss, teach_decoder
from engine.train.train_restyle import pad_batch, with_overrides

log = logging.getLogger("sideman.train.back")


@dataclass(frozen=True)
class BackConfig:
    name: str = "restyle-back"
    model: str = "models/restyle.pt"  # whose decoder is taught (relative to the repository)
    pairs: int = 3000  # train phrases restyled, one target and one sample each
    steps: int = 800
    batch_size: int = 32  # half back-translated, half real (real_share)
    real_share: float = 0.5
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    word_dropout: float = 0.4  # as the model's training: the decoder keeps reading z
    played_share: float = 0.5
    transpose: tuple[int, int] = (-5, 6)
    seed: int = 17
    data_limit: int = 0  # pieces per style (tiny runs for tests)
    threads: int = 1


PRESETS = {
    "restyle-back": BackConfig(),
    "tiny-restyle-back": BackConfig(name="tiny-restyle-back", pairs=6, steps=4, batch_size=4, data_limit=24),
}


@dataclass(frozen=True)
class BackPair:
    target: list[int]  # the real phrase x as written (its own bar lines)
    read: list[int]  # y, x restyled into another style, in x's bar lines: what the encoder reads
    style: int  # x's own style: the condition the decoder writes x under


def back_pairs(path: Path, sampler: PhraseSampler, cfg: BackConfig, max_len: int,
               rng: np.random.Generator) -> list[BackPair]:
    """`cfg.pairs` train phrases, each restyled once into another style with the runtime's settings."""
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    restyler = Restyler(ModelSession(load_model(path, DEFAULT_VOCAB), device="cpu", threads=cfg.threads),
                        DEFAULT_VOCAB)
    lo, hi = cfg.transpose
    out: list[BackPair] = []
    t0 = time.monotonic()
    while len(out) < cfg.pairs:
        m, style = sampler.draw()
        m = m.transposed(int(rng.integers(lo, hi + 1)))
        target = encode_melody(m)
        if len(target) > max_len:
            continue
        given = play_melody(m, rng) if rng.random() < cfg.played_share else m
        other = int(rng.choice([s for s in range(len(STYLE_NAMES)) if s != style]))
        decode = restyler.begin(given, RestyleSettings(style=STYLE_NAMES[other]), seed=int(rng.integers(2**31)))
        decode.run()
        y = decode.result()  # in the phrase's own meter and bars
        if not len(y.notes):
            continue
        read = encode_melody(Melody(y.notes, m.meter, m.bars))[:max_len]
        out.append(BackPair(target, read, style))
        if len(out) % 500 == 0:
            log.info("restyled %d of %d (%.0f s)", len(out), cfg.pairs, time.monotonic() - t0)
    return out


def back_loss(model, batch: list[BackPair], word_dropout: float) -> torch.Tensor:
    """The decoder's cross-entropy on the real phrases under their own style, reading their restyled lines."""
    pad = DEFAULT_VOCAB.pad
    targets = pad_batch([p.target for p in batch], pad)  # (B, T)
    read = pad_batch([p.read for p in batch], pad)  # (B, T')
    styles = torch.tensor([p.style for p in batch])  # (B,)
    with torch.no_grad():
        mu, logvar, has = model.posterior(read)  # (B, N, Z) x2, (B, N)
        z = model.decoder_latents(mu + torch.randn_like(mu) * (0.5 * logvar).exp(), read)  # (B, N, Z [+ A])
    return decoder_loss(model, targets, z, styles, has.sum(1), word_dropout)


def train_backtranslate(cfg: BackConfig, out: Path | None = None) -> dict:
    return teach_decoder(cfg, lambda path, sampler, trained, rng: back_pairs(path, sampler, cfg, trained.max_len, rng),
                         back_loss, "back", "the decoder to write each real train phrase in its own style from its "
                         "line restyled into another (back-translation; engine.train.train_backtranslate)", "back",
                         log, out)


def load_back_config(name: str, overrides: dict | None = None) -> BackConfig:
    return with_overrides(PRESETS[name], overrides, "back-translation setting", ModelError)


__all__ = ["BackConfig", "BackPair", "PRESETS", "back_loss", "back_pairs", "load_back_config",
           "train_backtranslate"]
