"""The latent adversary: a classifier that tries to read the phrase's style from each latent, and the term
that makes the encoder hide it. Training only.

Two ways to play the game:

    steps = 0   co-trained (the first design): the adversary is one more module of the model's optimizer,
                one update a step, and the encoder gets its reversed gradient (Ganin & Lempitsky):
                    + weight * CE(adversary(reverse_gradient(latent, lam)), style)
                Measured on the shipped model of 2026-12-03: the adversary sat at chance in training (0.28)
                while a probe trained afresh on the same latents found the style at 0.55. The encoder had
                only to outrun one slowly moving adversary, not hide the style.
    steps = k   best response: the adversary has its own optimizer and takes k updates a step on a bank of
                the latents of the last `bank` batches (detached), so it stays close to the probe a listener
                would train afresh; the encoder is pushed to make its prediction uniform (the flipped-label
                family of Kawai et al.; maximising the adversary's loss instead rewards a confidently wrong
                answer, which still carries the style):
                    + weight * lam * CE(adversary(latent), uniform)
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from engine.train.restyle_model import reverse_gradient


class Adversary(nn.Module):
    """latent (M, Z) -> style logits (M, S)."""

    def __init__(self, z_dim: int, n_styles: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(z_dim, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(),
                                 nn.Linear(128, n_styles))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class LatentAdversary:
    """The adversary, its training (for steps > 0: its own optimizer and bank) and the encoder's term."""

    def __init__(self, z_dim: int, n_styles: int, steps: int = 0, bank: int = 16, lr: float = 1e-3,
                 batch: int = 256) -> None:
        self.net = Adversary(z_dim, n_styles)
        self.n_styles = n_styles
        self.steps = steps
        self.bank_batches = bank
        self.batch = batch
        self.bank: list[tuple[Tensor, Tensor]] = []  # (M, Z) detached latents, (M,) styles
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=lr, betas=(0.9, 0.98)) if steps > 0 else None

    @property
    def co_trained(self) -> bool:
        """Whether the adversary's parameters belong in the model's optimizer (steps = 0)."""
        return self.steps == 0

    def encoder_term(self, latent: Tensor, styles: Tensor, lam: float) -> tuple[Tensor, Tensor]:
        """latent (M, Z), styles (M,) -> (the term the model minimises, the adversary's accuracy on them)."""
        if self.co_trained:
            logits = self.net(reverse_gradient(latent, lam))  # (M, S)
            term = F.cross_entropy(logits, styles)
        else:
            logits = self.net(latent)  # (M, S); the gradient reaching the adversary here is discarded
            term = lam * -F.log_softmax(logits, -1).mean()  # CE against the uniform distribution
        accuracy = (logits.argmax(-1) == styles).float().mean()
        return term, accuracy

    def update(self, latent: Tensor, styles: Tensor) -> float | None:
        """(steps > 0) Bank this batch's latents (M, Z) and train the adversary `steps` times on the bank;
        its mean loss, or None when co-trained."""
        if self.co_trained:
            return None
        self.bank.append((latent.detach(), styles.detach()))
        del self.bank[: -self.bank_batches]
        zs = torch.cat([z for z, _ in self.bank])  # (sum M, Z)
        ys = torch.cat([y for _, y in self.bank])
        total = 0.0
        for _ in range(self.steps):
            idx = torch.randint(len(zs), (min(self.batch, len(zs)),))
            loss = F.cross_entropy(self.net(zs[idx]), ys[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            total += float(loss.detach())
        return total / self.steps

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "opt": self.opt.state_dict() if self.opt else None}

    def load_state_dict(self, state: dict) -> None:
        if "net" not in state:  # a checkpoint of the first design: the bare module's weights
            self.net.load_state_dict(state)
            return
        self.net.load_state_dict(state["net"])
        if self.opt is not None and state.get("opt"):
            self.opt.load_state_dict(state["opt"])


__all__ = ["Adversary", "LatentAdversary"]
