"""The probe given the meter (`engine.train.evaluate_restyle.probe_given_meter`): what a latent tells of the style
beyond the phrase's meter, which the restyle keeps and which alone tells the style in part. On toy latents: one
that carries only the meter adds nothing beyond it; one that carries the style adds what the meter left."""

from __future__ import annotations

import numpy as np

from engine.train.evaluate_restyle import probe_given_meter


def toy(n: int, z_carries: str, rng: np.random.Generator):
    """Five styles over three meters (meter 0: styles 0-2; meter 1: styles 2-3; meter 2: styles 3-4): z (n, 8),
    the meter one-hot (n, 3), the style (n,)."""
    meter_of = {0: [0], 1: [0], 2: [0, 1], 3: [1, 2], 4: [2]}
    style = rng.integers(0, 5, n)
    meter = np.array([rng.choice(meter_of[s]) for s in style])
    onehot = np.eye(3, dtype=np.float32)[meter]
    z = rng.normal(size=(n, 8)).astype(np.float32)
    if z_carries == "meter":
        z[:, :3] += 3 * onehot
    else:
        z[:, :5] += 3 * np.eye(5, dtype=np.float32)[style]
    return z, onehot, style


def test_a_latent_with_only_the_meter_adds_nothing_beyond_it_and_one_with_the_style_does():
    rng = np.random.default_rng(0)
    for carries, lo, hi in (("meter", -0.06, 0.06), ("style", 0.3, 1.0)):
        z_tr, m_tr, y_tr = toy(1500, carries, rng)
        z_te, m_te, y_te = toy(500, carries, rng)
        r = probe_given_meter(z_tr, m_tr, y_tr, z_te, m_te, y_te)
        assert 0.4 < r["meter"] < 0.7  # the meter alone tells the style in part (chance 0.2)
        assert lo < r["beyond_meter"] < hi, (carries, r)
        assert abs(r["beyond_meter"] - (r["with_meter"] - r["meter"])) < 2e-4
