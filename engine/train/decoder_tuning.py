"""What teaching a restyle file's decoder alone shares (restyle-picks, restyle-back): the decoder's loss under a
given condition, the real half of each batch (train phrases under their own style, as in the model's
training), the loop that trains the decoder with the encoder and the critic frozen, so that z, the probe on
z and the critic's judgement stay the file's, and the run around it (`teach_decoder`: load, examples, loop,
export with the card and the n-gram critic carried)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.corpus.phrases import PhraseSampler, style_corpus
from engine.errors import ModelError
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.export import export_model
from engine.train.train_critic import CARD_KEYS, load_restyle_model
from engine.train.train_restyle import PhraseBatches, RestyleTrainConfig, one_hot
from engine.train.train_style_ngram import carry_style_ngram

REPO = Path(__file__).resolve().parents[2]


def decoder_loss(model, tokens: torch.Tensor, z: torch.Tensor, styles: torch.Tensor, bars: torch.Tensor,
                 word_dropout: float) -> torch.Tensor:
    """tokens (B, T), z (B, N, Z), styles (B,), bars (B,): next-token cross-entropy under [z, style]."""
    v = DEFAULT_VOCAB
    inputs = tokens[:, :-1]
    cond = model.bar_condition(z, one_hot(styles, model.n_styles), inputs, bars)  # (B, T-1, Z + S)
    if word_dropout > 0:
        ons = (inputs >= v.note_on_base) & (inputs < v.note_off_base)
        inputs = inputs.masked_fill(ons & (torch.rand(inputs.shape) < word_dropout), v.pad)
    logits = model(inputs, cond)  # (B, T-1, V)
    target = tokens[:, 1:].clone()
    target[target == v.pad] = -100
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100)


def real_loss(model, batches: PhraseBatches, size: int, word_dropout: float) -> torch.Tensor:
    """Real train phrases in their own style, drawn as the model's training drew them (`PhraseBatches`), z
    sampled from the frozen encoder."""
    clean, source, styles = batches.batch(size)  # (B, T), (B, T'), (B,)
    with torch.no_grad():
        mu, logvar, has = model.posterior(source)  # (B, N, Z) x2, (B, N)
        z = model.decoder_latents(mu + torch.randn_like(mu) * (0.5 * logvar).exp(), source)  # (B, N, Z [+ A])
    return decoder_loss(model, clean, z, styles, has.sum(1), word_dropout)


def tune_decoder(model, examples: Sequence, example_loss: Callable, batches: PhraseBatches, cfg,
                 rng: np.random.Generator, log: logging.Logger, label: str) -> None:
    """`cfg.steps` steps on the decoder alone: each batch `cfg.batch_size` rows, `cfg.real_share` of them real
    phrases (`real_loss`), the rest drawn from `examples` and scored by `example_loss(model, batch,
    word_dropout)`; AdamW at `cfg.lr`, gradients clipped at `cfg.grad_clip`. The encoder and the critic are
    frozen (and kept in eval mode); the model is left in eval mode."""
    t0 = time.monotonic()
    for p in list(model.encoder.parameters()) + list(model.critic.parameters()):
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_real = int(round(cfg.batch_size * cfg.real_share))
    model.train()
    model.encoder.eval()
    model.critic.eval()
    for step in range(cfg.steps):
        idx = rng.integers(len(examples), size=cfg.batch_size - n_real)
        loss_examples = example_loss(model, [examples[i] for i in idx], cfg.word_dropout)
        loss = loss_examples
        if n_real:
            loss_real = real_loss(model, batches, n_real, cfg.word_dropout)
            loss = (1.0 - cfg.real_share) * loss_examples + cfg.real_share * loss_real
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        opt.step()
        if step % 100 == 0:
            log.info("step %d: %s %.3f real %.3f (%.0f s)", step, label, loss_examples.item(),
                     loss_real.item() if n_real else float("nan"), time.monotonic() - t0)
    model.eval()


def teach_decoder(cfg, make_examples: Callable, example_loss: Callable, card_key: str, taught: str, label: str,
                  log: logging.Logger, out: Path | None = None) -> dict:
    """A whole run: the per-bar restyle file `cfg.model` loaded, `make_examples(path, sampler, trained config,
    rng)` written from its train phrases, `tune_decoder` on them, and the file exported to `out` (default
    runs/<name>/restyle.pt) with its card under `card_key` saying what was `taught`; its n-gram critic carried."""
    t0 = time.monotonic()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, card = load_restyle_model(REPO / cfg.model)
    trained = RestyleTrainConfig.from_dict(card["training"]["config"])
    if trained.latent != "bar":
        raise ModelError(f"{cfg.model}: a model with one z a phrase; {cfg.name} teaches the per-bar model")
    rng = np.random.default_rng(cfg.seed)
    sampler = PhraseSampler(style_corpus(cfg.data_limit), "train", seed=cfg.seed, limit=cfg.data_limit)
    examples = make_examples(REPO / cfg.model, sampler, trained, rng)
    batches = PhraseBatches(sampler, trained, cfg.seed + 1)  # the real half, drawn as in the model's training
    generation_s = time.monotonic() - t0
    tune_decoder(model, examples, example_loss, batches, cfg, rng, log, label)
    path = out or REPO / "runs" / cfg.name / "restyle.pt"
    card = {k: card[k] for k in CARD_KEYS if k in card}
    card[card_key] = {"taught": taught, "config": asdict(cfg), "pairs": len(examples),
                      "generation_s": round(generation_s, 1), "wall_time_s": round(time.monotonic() - t0, 1)}
    export_model(model, path, card)
    carry_style_ngram(REPO / cfg.model, path)
    log.info("exported %s", path)
    return {"path": str(path), **card[card_key]}


__all__ = ["decoder_loss", "real_loss", "teach_decoder", "tune_decoder"]
