"""What keeps the style out of z: the latent adversary (`engine.train.latent_adversary`) and the style MMD
(`engine.train.style_mmd`), on a toy encoder whose input carries the style openly, judged by a probe trained
afresh as the restyle eval's is."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.train.evaluate_restyle import probe_accuracy
from engine.train.latent_adversary import Adversary, LatentAdversary
from engine.train.style_mmd import style_mmd

STYLES, CONTENT, Z = 5, 4, 8


def toy_batch(gen: torch.Generator, n: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x (n, CONTENT + STYLES): content and the style's one-hot side by side; content (n, CONTENT); style (n,)."""
    content = torch.randn(n, CONTENT, generator=gen)
    style = torch.randint(STYLES, (n,), generator=gen)
    return torch.cat([content, 2.0 * F.one_hot(style, STYLES).float()], 1), content, style


def play(adversary: LatentAdversary | None, steps: int = 600, weight: float = 1.0, mmd_weight: float = 0.0):
    """Train a linear encoder (x -> z) and decoder (z -> content) with the adversary and/or the style MMD;
    (fresh probe accuracy on z, reconstruction MSE) on held-out data."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    encoder, decoder = nn.Linear(CONTENT + STYLES, Z), nn.Linear(Z, CONTENT)
    params = list(encoder.parameters()) + list(decoder.parameters())
    if adversary is not None and adversary.co_trained:
        params += list(adversary.net.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    for _ in range(steps):
        x, content, style = toy_batch(gen)
        z = encoder(x)
        loss = F.mse_loss(decoder(z), content)
        if adversary is not None:
            term, _ = adversary.encoder_term(z, style, lam=1.0)
            loss = loss + weight * term
        if mmd_weight:
            loss = loss + mmd_weight * style_mmd(z, style, STYLES)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if adversary is not None:
            adversary.update(z, style)
    with torch.no_grad():
        x_tr, _, y_tr = toy_batch(gen, 1000)
        x_te, c_te, y_te = toy_batch(gen, 500)
        mse = float(F.mse_loss(decoder(encoder(x_te)), c_te))
        z_tr, z_te = encoder(x_tr).numpy(), encoder(x_te).numpy()
    return probe_accuracy(z_tr, y_tr.numpy(), z_te, y_te.numpy(), epochs=60), mse


def test_without_an_adversary_the_style_stays_readable_in_z():
    probe, mse = play(None)
    assert probe > 0.9 and mse < 0.05  # the control: the probe can find it


def test_an_adversary_alone_leaves_the_style_readable_to_a_fresh_probe():
    # why the restyle model adds the style MMD: the encoder fools the adversary of the moment (co-trained, or
    # retrained 4x a step on a bank) by moving the styles' clusters, not by merging them
    for adversary in (LatentAdversary(Z, STYLES, steps=0), LatentAdversary(Z, STYLES, steps=4, bank=8, lr=3e-3)):
        probe, _ = play(adversary)
        assert probe > 0.9


def test_the_style_mmd_empties_z_of_the_style_and_keeps_the_content():
    probe, mse = play(None, mmd_weight=1.0)
    assert probe < 0.3 and mse < 0.01  # chance is 0.2


def test_the_style_mmd_is_zero_for_alike_styles_and_blind_to_scale():
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(400, Z, generator=gen)
    styles = torch.randint(STYLES, (400,), generator=gen)
    apart = z + 3.0 * F.one_hot(styles, STYLES).float().repeat(1, 2)[:, :Z]
    alike, separated = float(style_mmd(z, styles, STYLES)), float(style_mmd(apart, styles, STYLES))
    assert alike < 0.05 < 0.2 < separated
    assert float(style_mmd(0.01 * apart, styles, STYLES)) == pytest.approx(separated, rel=1e-3)
    assert float(style_mmd(z[:3], styles[:3], STYLES)) == 0.0  # too few latents to say


def test_the_encoder_term_is_lowest_when_the_adversary_is_left_uniform():
    adversary = LatentAdversary(Z, STYLES, steps=4)
    z = torch.randn(64, Z)
    styles = torch.randint(STYLES, (64,))
    with torch.no_grad():
        for p in adversary.net.parameters():
            p.zero_()  # every logit 0: a uniform prediction
    term, _ = adversary.encoder_term(z, styles, lam=1.0)
    assert float(term.detach()) == pytest.approx(np.log(STYLES), abs=1e-6)
    half, _ = adversary.encoder_term(z, styles, lam=0.5)
    assert float(half.detach()) == pytest.approx(0.5 * np.log(STYLES), abs=1e-6)


def test_the_co_trained_adversary_reverses_the_gradient_into_the_encoder():
    adversary = LatentAdversary(Z, STYLES, steps=0)
    z = torch.randn(16, Z, requires_grad=True)
    styles = torch.randint(STYLES, (16,))
    term, _ = adversary.encoder_term(z, styles, lam=1.0)
    term.backward()
    reversed_grad = z.grad.clone()
    z.grad = None
    F.cross_entropy(adversary.net(z), styles).backward()
    assert torch.allclose(reversed_grad, -z.grad, atol=1e-6)
    assert adversary.update(z, styles) is None and adversary.opt is None


def test_the_bank_keeps_the_last_batches_and_the_state_round_trips():
    adversary = LatentAdversary(Z, STYLES, steps=2, bank=3)
    for k in range(5):
        adversary.update(torch.full((4, Z), float(k)), torch.zeros(4, dtype=torch.long))
    assert [float(z[0, 0]) for z, _ in adversary.bank] == [2.0, 3.0, 4.0]
    other = LatentAdversary(Z, STYLES, steps=2, bank=3)
    other.load_state_dict(adversary.state_dict())
    z = torch.randn(7, Z)
    assert torch.equal(other.net(z), adversary.net(z))
    first_design = Adversary(Z, STYLES)  # a checkpoint of the first design holds the bare module's weights
    other.load_state_dict(first_design.state_dict())
    assert torch.equal(other.net(z), first_design(z))


def test_bar_content_describes_each_bar_by_its_pitch_classes_and_onsets():
    import numpy as np

    from engine.corpus.phrases import StyledPhrase
    from engine.music.melody import Melody
    from engine.music.tokens import Meter
    from engine.train.evaluate_restyle import bar_content

    meter = Meter(4, 4)
    bar = Melody(np.zeros((0, 4), np.int32), meter, 1).bar_ticks()
    # bar 0: C for the first half, E and G in the second; bar 1: one D held through it
    notes = np.array([[0, bar // 2, 60, 80], [bar // 2, 3 * bar // 4, 64, 80], [3 * bar // 4, bar, 67, 80],
                      [bar, 2 * bar, 62, 80]], np.int32)
    rows, styles = bar_content([StyledPhrase(Melody(notes, meter, 2), 3, "piece", 0)])
    assert rows.shape == (2, 40) and list(styles) == [3, 3]
    chroma = rows[:, :24].reshape(2, 2, 12)
    assert chroma[0, 0, 0] == 0.5 and chroma[0, 1, 4] == chroma[0, 1, 7] == 0.25
    assert chroma[1, 0, 2] == chroma[1, 1, 2] == 0.5
    assert list(np.flatnonzero(rows[0, 24:])) == [0, 8, 12] and list(np.flatnonzero(rows[1, 24:])) == [0]
