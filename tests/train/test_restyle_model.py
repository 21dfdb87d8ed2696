"""The restyle model's parts: encoder and critic shapes, the condition path (the cached decode equals the
whole-sequence forward, through TorchScript and the runtime session), free bits, the gradient reversal,
and a tiny training run on real corpus phrases that exports a file the runtime loads and restyles with."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from engine.model.modelfile import load_model
from engine.model.restyler import Restyler, RestyleSettings
from engine.model.session import ModelSession
from engine.music.melody import Melody, encode_melody
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB as V
from engine.train.export import export_model, script_model
from engine.train.restyle_model import RestyleLM, bar_condition, bar_ids, free_bits_kl, kl_per_dim, reverse_gradient
from engine.train.latent_adversary import LatentAdversary
from engine.train.train_restyle import PRESETS, losses, pad_batch

TINY = PRESETS["tiny-restyle"]


def tune(shift: int = 0) -> Melody:
    rows = [(i * 12, i * 12 + 10, p + shift, 80) for i, p in enumerate((62, 66, 69, 74, 73, 71, 69, 66))]
    return Melody(np.asarray(rows, dtype=np.int32), Meter(4, 4), 1)


@pytest.fixture(scope="module")
def model() -> RestyleLM:
    torch.manual_seed(0)
    m = RestyleLM(TINY.model_config(), TINY.restyle_config(), V.pad)
    return m.eval()


def test_encoder_critic_and_decoder_shapes(model):
    two_bars = Melody(np.concatenate([tune().notes, tune(2).notes + [96, 96, 0, 0]]), Meter(4, 4), 2)
    batch = pad_batch([encode_melody(two_bars), encode_melody(tune(3))[:20]], V.pad)  # (2, T) with padding
    mu, logvar, has = model.posterior(batch)
    assert mu.shape == logvar.shape == (2, 2, TINY.z_dim)  # one z a bar: the longest phrase has 2
    assert has.tolist() == [[True, True], [True, False]]
    assert model.critic(batch).shape == (2, 5)
    cond = model.bar_condition(mu, torch.eye(5)[:2], batch, has.sum(1))  # (2, T, Z + S)
    assert cond.shape == (2, batch.size(1), TINY.z_dim + 5)
    assert model(batch, cond).shape == (2, batch.size(1), V.size)
    # padding is invisible: a phrase alone and padded in a batch encode the same
    alone = model.posterior(batch[1:, :20])[0]
    assert torch.allclose(alone[:, 0], mu[1:, 0], atol=1e-5)


def test_each_position_is_conditioned_on_the_z_of_its_bar():
    """BAR opens the next bar (the header is in bar 0), except the one that closes the phrase."""
    two_bars = Melody(np.asarray([(0, 90, 62, 80), (96, 180, 64, 80)], dtype=np.int32), Meter(4, 4), 2)
    tokens = torch.tensor([encode_melody(two_bars)])
    bars = [i for i, t in enumerate(tokens[0].tolist()) if t == V.bar]
    assert len(bars) == 3  # the phrase's two bar lines and its end
    ids = bar_ids(tokens, V.bar, V.eos, V.pad)[0].tolist()
    assert ids[: bars[1]] == [0] * bars[1] and ids[bars[1]:] == [1] * (len(ids) - bars[1])
    z = torch.tensor([[[1.0], [2.0]]])  # (1, N=2, Z=1)
    cond = bar_condition(z, torch.zeros(1, 5), tokens, torch.tensor([2]), V.bar, V.eos, V.pad)
    assert cond[0, :, 0].tolist() == [1.0 + i for i in ids]
    one = bar_condition(z[:, :1], torch.zeros(1, 5), tokens, torch.tensor([1]), V.bar, V.eos, V.pad)
    assert (one[0, :, 0] == 1.0).all()  # one z for the phrase: every position


def test_torchscript_encode_critic_and_cached_decode_equal_the_eager_model(model, tmp_path):
    tokens = encode_melody(tune())
    x = torch.tensor([tokens])
    scripted = script_model(model)
    assert torch.allclose(scripted.encode(x), model.encode(x), atol=1e-5)
    assert torch.allclose(scripted.critic_logits(x), model.critic_logits(x), atol=1e-5)
    path = tmp_path / "tiny-restyle.pt"
    export_model(model, path, {"task": "RESTYLE", "styles": ["chorale", "folksong", "fiddle", "renaissance",
                                                             "medieval"], "restyle": TINY.restyle_config().to_dict()})
    session = ModelSession(load_model(path, V), device="cpu", threads=1)
    z = scripted.encode(x)  # (1, Z): one bar
    cond = torch.cat([z[0], torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0])])
    session.set_condition(cond)
    session.reset()
    full = model(x, cond.view(1, -1))[0]  # (T, V): the whole sequence at once
    session.feed(tokens[:5])
    for i in range(5, len(tokens)):
        logits = session.append(tokens[i])  # the runtime's cached path (native kernel or TorchScript)
        assert torch.allclose(logits, full[i], atol=1e-3), i


def test_the_runtime_switches_the_condition_at_each_bar_line_as_training_feeds_it(model, tmp_path):
    """Two bars: the session, its condition moved on at the bar line (BarConditions), gives the logits of
    the whole-sequence forward with each position's bar z."""
    from engine.model.restyler import BarConditions

    two_bars = Melody(np.concatenate([tune().notes, tune(2).notes + [96, 96, 0, 0]]), Meter(4, 4), 2)
    tokens = encode_melody(two_bars)
    x = torch.tensor([tokens])
    path = tmp_path / "tiny-restyle.pt"
    export_model(model, path, {"task": "RESTYLE", "styles": ["chorale", "folksong", "fiddle", "renaissance",
                                                             "medieval"], "restyle": TINY.restyle_config().to_dict()})
    session = ModelSession(load_model(path, V), device="cpu", threads=1)
    z = session.module.encode(x)  # (2, Z)
    assert z.shape == (2, TINY.z_dim) and torch.allclose(z, model.encode(x), atol=1e-5)
    style = torch.eye(5)[3:4]
    full = model(x, model.bar_condition(z.unsqueeze(0), style, x, torch.tensor([2])))[0]  # (T, V)
    conditions = BarConditions(session, z.numpy(), style[0].numpy())
    conditions.start()
    session.feed(tokens[:4])  # the header and the first BAR
    crossed = 0
    for i in range(4, len(tokens) - 2):  # up to the BAR that closes the phrase (the runtime stops there)
        if tokens[i] == V.bar:
            conditions.next_bar()
            crossed += 1
        logits = session.append(tokens[i])
        assert torch.allclose(logits, full[i], atol=1e-3), i
    assert crossed == 1


def test_free_bits_floor_each_dimension_and_the_kl_is_zero_at_the_prior():
    mu, logvar = torch.zeros(4, 3), torch.zeros(4, 3)
    assert torch.allclose(kl_per_dim(mu, logvar), torch.zeros(3))
    assert float(free_bits_kl(mu, logvar, 0.25)) == pytest.approx(0.75)  # 3 dims at the floor
    mu = torch.tensor([[2.0, 0.0, 0.0]]).repeat(4, 1)
    assert float(free_bits_kl(mu, torch.zeros(4, 3), 0.25)) == pytest.approx(2.0 + 0.5)


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (reverse_gradient(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


@pytest.mark.parametrize("steps", [0, 4])
def test_the_objective_has_every_term_and_the_adversary_reads_the_latents(model, steps):
    m = RestyleLM(TINY.model_config(), TINY.restyle_config(), V.pad).train()
    batch = pad_batch([encode_melody(tune(k)) for k in range(4)], V.pad)
    adversary = LatentAdversary(TINY.z_dim, 5, steps=steps)
    out = losses(m, adversary, batch, batch, torch.tensor([0, 1, 2, 3]), TINY, step=5)
    for key in ("recon", "kl", "adversary", "critic", "total", "token_accuracy", "adversary_accuracy"):
        assert torch.isfinite(torch.as_tensor(out[key])), key
    latents, styles = out.pop("latents")
    _, _, has = m.posterior(batch)
    assert latents.shape == (int(has.sum()), TINY.z_dim) and styles.shape == (int(has.sum()),)
    out["total"].backward()
    assert m.encoder.head.weight.grad.abs().sum() > 0 and m.critic.head.weight.grad.abs().sum() > 0
    assert (adversary.update(latents, styles) is None) == (steps == 0)  # after the model's step, as in training


@pytest.mark.slow
@pytest.mark.parametrize("game", [{}, {"adversary_reads": "mu", "adversary_steps": 2, "mmd_weight": 1.0},
                                  {"adversary_reads": "mu", "adversary_steps": 2, "mmd_weight": 1.0, "anchor": True}],
                         ids=["co-trained", "best-response-and-mmd", "mmd-and-anchor"])
def test_a_tiny_training_run_on_real_phrases_exports_a_model_the_runtime_restyles_with(tmp_path, game):
    import json
    from dataclasses import replace

    from engine.train.train_restyle import train_restyle

    cfg = replace(TINY, out_dir=str(tmp_path), **game)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train_restyle(replace(cfg, stop_at=10), resume=False, progress=False)  # stopped, then resumed
        summary = train_restyle(cfg, resume=True, progress=False)
    assert summary["steps"] == TINY.max_steps and np.isfinite(summary["best_val_recon"])
    log = [json.loads(line) for line in (tmp_path / TINY.name / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, TINY.max_steps + 1))
    assert all(("style_mmd" in r) == bool(game) and ("adversary_fit" in r) == bool(game) for r in log)
    session = ModelSession(load_model(summary["path"], V), device="cpu", threads=1)
    out = Restyler(session).restyle(tune(), RestyleSettings(style="fiddle"), seed=1)
    assert out.bars == 1 and out.meter == Meter(4, 4)
    assert (out.notes[:, 0] < 96).all() and (out.notes[:, 1] <= 96).all()


def test_guided_logits_push_away_from_the_own_style_and_feed_both_sessions_every_token():
    from engine.model.restyler import GuidedLogits

    class Fixed:
        def __init__(self, logits):
            self.logits, self.fed = torch.tensor(logits), []

        def feed(self, tokens):
            self.fed += list(tokens)
            return self.logits

        def append(self, token):
            self.fed.append(token)
            return self.logits

    target, own = Fixed([2.0, 1.0, 0.0]), Fixed([1.0, 1.0, 1.0])
    g = GuidedLogits(target, own, 1.5)
    assert torch.allclose(g.feed([5, 6]), torch.tensor([3.5, 1.0, -1.5]))
    assert torch.allclose(g.append(7), torch.tensor([3.5, 1.0, -1.5]))
    assert target.fed == own.fed == [5, 6, 7]  # the contrast hears every token the target does


def test_a_wrong_adversary_setting_is_refused_with_its_name():
    from dataclasses import replace

    from engine.errors import SidemanError

    with pytest.raises(SidemanError, match="adversary_reads must be 'mu' or 'z'"):
        replace(TINY, adversary_reads="sample")
    with pytest.raises(SidemanError, match="adversary_steps must be >= 0"):
        replace(TINY, adversary_steps=-1)


def test_every_restyle_preset_is_reachable_from_sideman_train():
    from engine.commands.train import RESTYLE_CONFIGS

    assert set(RESTYLE_CONFIGS) == set(PRESETS)


def test_the_anchor_is_where_the_phrase_is_and_reaches_the_decoder_beside_z(tmp_path):
    """A model trained with the anchor: the phrase's pitch-class shares, mean pitch and range, from its note-ons;
    the decoder's condition is [z, anchor, style]; the exported file's `anchor` method gives the same and the
    runtime decodes with it; a model without one reads z alone, as before."""
    from engine.music.styles import STYLE_NAMES
    from engine.train.restyle_model import ANCHOR_DIM

    cfg = PRESETS["tiny-restyle-anchor"]
    assert cfg.model_config().cond_dim == cfg.z_dim + ANCHOR_DIM + 5
    torch.manual_seed(0)
    model = RestyleLM(cfg.model_config(), cfg.restyle_config(), V.pad).eval()
    tokens = torch.tensor([encode_melody(tune())])  # D F# A D' C#' B A F#: pitches 62..74
    a = model.phrase_anchor(tokens)[0]  # (14,)
    pitches = [62, 66, 69, 74, 73, 71, 69, 66]
    shares = np.bincount([p % 12 for p in pitches], minlength=12) / len(pitches)
    assert np.allclose(a[:12].numpy(), shares)
    assert a[12].item() == pytest.approx((np.mean(pitches) - 60) / 12) and a[13].item() == pytest.approx(1.0)
    higher = model.phrase_anchor(torch.tensor([encode_melody(tune(12))]))[0]
    assert torch.allclose(higher[:12], a[:12]) and higher[12].item() == pytest.approx(a[12].item() + 1)
    z = torch.randn(1, 1, cfg.z_dim)
    assert torch.equal(model.decoder_latents(z, tokens)[0, 0], torch.cat([z[0, 0], a]))
    plain = RestyleLM(TINY.model_config(), TINY.restyle_config(), V.pad).eval()
    assert torch.equal(plain.decoder_latents(z, tokens), z) and plain.phrase_anchor(tokens).shape == (1, 0)
    # the file, through the runtime
    path = tmp_path / "anchored.pt"
    export_model(model, path, {"name": "anchored", "task": "RESTYLE", "styles": list(STYLE_NAMES),
                               "restyle": cfg.restyle_config().to_dict()})
    restyler = Restyler(ModelSession(load_model(path, V), device="cpu", threads=1))
    rows = restyler.decoder_latents(encode_melody(tune()))  # (N, Z + A)
    assert restyler.anchored and rows.shape == (1, cfg.z_dim + ANCHOR_DIM)
    assert np.allclose(rows[0, cfg.z_dim:], a.numpy(), atol=1e-6)
    assert restyler.latent(encode_melody(tune())).shape == (1, cfg.z_dim)  # the probe reads z alone
    # the eval's probes read z, the anchor and both, one row a bar of each phrase
    from engine.corpus.phrases import StyledPhrase
    from engine.train.evaluate_restyle import _latents

    phrases = [StyledPhrase(tune(), 0, "a", 0), StyledPhrase(tune(12), 2, "b", 0)]
    z_rows, styles = _latents(restyler, phrases)
    a_rows, _ = _latents(restyler, phrases, view="anchor")
    both, _ = _latents(restyler, phrases, view="decoder_input")
    assert z_rows.shape == (2, cfg.z_dim) and a_rows.shape == (2, ANCHOR_DIM) and list(styles) == [0, 2]
    assert np.allclose(both, np.hstack([z_rows, a_rows])) and np.allclose(a_rows[0], a.numpy(), atol=1e-6)
    out = restyler.restyle(tune(), RestyleSettings(style="chorale"), seed=0)
    assert out.meter == Meter(4, 4) and (out.notes[:, 1] <= 96).all()
