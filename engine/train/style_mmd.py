"""The style MMD: how far each style's latents lie from all the latents, as a kernel two-sample distance
(the Variational Fair Autoencoder, Louizos et al. 2016). Training only.

    style_mmd = sum_s MMD^2(q(z | style s), q(z))      biased estimate on the batch's latents

It is zero exactly when every style's latents are distributed alike (for a characteristic kernel), so unlike
an adversary it has no equilibrium in which style stays readable to a classifier trained afresh: on a toy
encoder whose input carries the style openly, the adversary (co-trained, or retrained 4x a step) left a
fresh probe at 0.9-1.0 while this term took it to chance (tests/train/test_latent_adversary.py).

The latents are standardised over the batch first (with the gradient), so shrinking z does not pay; the
kernel is a mixture of RBFs over several bandwidths (in units of the per-dimension standard deviation).
"""

from __future__ import annotations

import torch
from torch import Tensor

BANDWIDTHS = (0.5, 1.0, 2.0, 4.0)


def style_mmd(z: Tensor, styles: Tensor, n_styles: int, bandwidths: tuple[float, ...] = BANDWIDTHS) -> Tensor:
    """z (M, Z) latents, styles (M,) -> sum over styles present (at least 2 latents) of MMD^2 to the pool ()."""
    if z.size(0) < 4:
        return z.sum() * 0.0
    z = (z - z.mean(0)) / (z.std(0) + 1e-4)  # (M, Z)
    d2 = torch.cdist(z, z).pow(2) / z.size(1)  # (M, M) mean squared distance per dimension
    k = sum(torch.exp(-d2 / (2.0 * b * b)) for b in bandwidths) / len(bandwidths)  # (M, M)
    pool = k.mean()
    total = z.new_zeros(())
    for s in range(n_styles):
        mask = styles == s  # (M,)
        if int(mask.sum()) < 2:
            continue
        total = total + k[mask][:, mask].mean() - 2.0 * k[mask].mean() + pool
    return total


__all__ = ["style_mmd"]
