"""The restyle critic retrained alone: phrases barred at random keep their notes and length; a tiny run on
real phrases of the small cache rewrites the shipped model with only the critic's weights changed, and the
runtime restyles with the file it writes, which ships with its evaluation's numbers."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.music.melody import Melody
from engine.music.tokens import Meter
from engine.train.train_critic import PRESETS, rebarred_at_random, ship, train_critic

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "restyle.pt"


def test_a_phrase_barred_at_random_keeps_its_notes_and_length():
    rng = np.random.default_rng(0)
    notes = np.array([[0, 24, 60, 80], [24, 72, 62, 80], [72, 96, 64, 80], [96, 192, 65, 80]], dtype=np.int32)
    seen = set()
    for meter, bars in ((Meter(4, 4), 2), (Meter(2, 4), 4), (Meter(6, 8), 2), (Meter(3, 4), 3)):
        m = Melody(notes, meter, bars)
        for _ in range(40):
            r = rebarred_at_random(m, rng, 1.0)
            assert r.length_ticks() == m.length_ticks() and np.array_equal(r.notes, m.notes)
            assert r.bar_ticks() * r.bars == m.bar_ticks() * m.bars
            seen.add((meter, r.meter))
    assert len(seen) >= 10  # split and joined, every way
    m = Melody(notes, Meter(4, 4), 2)
    assert all(rebarred_at_random(m, rng, 0.0) is m for _ in range(20))


@pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")
def test_a_tiny_critic_run_changes_only_the_critic_and_the_runtime_restyles_with_it(tmp_path):
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    out = tmp_path / "restyle.pt"
    summary = train_critic(PRESETS["tiny-restyle-critic"], out=out)
    assert set(summary["test_accuracy_after"]) == {"clean", "played", "rebarred"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before, after = torch.jit.load(str(MODEL)).state_dict(), torch.jit.load(str(out)).state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("critic.") for k in changed)
    card = json.loads(out.with_name("restyle.card.json").read_text())
    assert card["task"] == "RESTYLE" and card["critic"]["config"]["steps"] == 6
    from engine.model.style_ngram import read_style_ngram

    carried = read_style_ngram(MODEL)  # the file's n-gram critic (if it has one) goes along with it
    assert (read_style_ngram(out) is None) == (carried is None)
    assert ("ngram_critic" in card["restyle"]) == (carried is not None)
    restyler = Restyler(ModelSession(load_model(out), device="cpu", threads=1))
    notes = np.array([[0, 24, 62, 80], [24, 48, 64, 80], [48, 96, 66, 80], [96, 192, 67, 80]], dtype=np.int32)
    result = restyler.restyle(Melody(notes, Meter(4, 4), 2), RestyleSettings(style="chorale"), seed=0)
    assert len(result.notes) and result.meter == Meter(4, 4)
    # shipped with its evaluation: the weights as trained, the card's metrics from the eval (the probe kept)
    evaluation = {"clean": {"model_critic": {"target_accuracy": 0.5, "chroma": 0.6, "onsets": 0.4}},
                  "ceiling": {"clean": 0.79}}
    shipped = ship(out, evaluation, out=tmp_path / "shipped.pt")
    card = json.loads(shipped.with_name("shipped.card.json").read_text())
    assert card["metrics"]["model_critic_target_accuracy_clean"] == 0.5 and card["metrics"]["probe"]
    assert card["critic"]["config"]["steps"] == 6
    assert (read_style_ngram(shipped) is None) == (carried is None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        again = torch.jit.load(str(shipped)).state_dict()
    assert all(torch.equal(after[k], again[k]) for k in after)


def test_every_critic_preset_is_reachable_from_sideman_train_and_overrides_are_checked():
    from engine.commands.train import CRITIC_CONFIGS
    from engine.errors import ModelError
    from engine.train.train_critic import load_critic_config

    assert set(CRITIC_CONFIGS) == set(PRESETS)
    cfg = load_critic_config("restyle-critic", {"steps": "10", "threads": "1"})
    assert cfg.steps == 10 and cfg.threads == 1 and cfg.model == "models/restyle.pt"
    with pytest.raises(ModelError, match="unknown critic setting 'stpes'"):
        load_critic_config("restyle-critic", {"stpes": "10"})


@pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")
def test_a_critic_trained_against_the_models_own_phrases_changes_only_the_critic_and_says_so(tmp_path):
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession
    from engine.train.train_critic import with_generated_class

    logits = torch.tensor([[1.0, -2.0, 0.5, 0.0, 3.0]])  # (1, S)
    wide = with_generated_class(logits)  # (1, S + 1): "generated" last, at logit 0
    assert wide.shape == (1, 6) and float(wide[0, 5]) == 0.0 and torch.equal(wide[:, :5], logits)
    out = tmp_path / "restyle.pt"
    summary = train_critic(PRESETS["tiny-restyle-critic-gan"], out=out)
    assert summary["generated_class"] is True and 0.0 <= summary["held_out_generated_called_generated"] <= 1.0
    card = json.loads(out.with_name("restyle.card.json").read_text())
    assert card["critic"]["config"]["generated"] == 6 and "restyled phrases" in card["critic"]["retrained"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before, after = torch.jit.load(str(MODEL)).state_dict(), torch.jit.load(str(out)).state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all(k.startswith("critic.") for k in changed)
    restyler = Restyler(ModelSession(load_model(out), device="cpu", threads=1))
    notes = np.array([[0, 24, 62, 80], [24, 48, 64, 80], [48, 96, 66, 80], [96, 192, 67, 80]], dtype=np.int32)
    result = restyler.restyle(Melody(notes, Meter(4, 4), 2), RestyleSettings(style="fiddle", candidates=2), seed=0)
    assert len(result.notes)


@pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")
def test_a_critic_is_taken_from_another_file_as_it_is_and_a_misshapen_one_is_refused(tmp_path):
    """`critic_from` with no steps: the other file's critic, weight for weight, in this model's file, the
    encoder and decoder untouched, the card naming where it came from; a critic of another shape is refused."""
    from dataclasses import asdict, replace

    from engine.errors import ModelError
    from engine.music.styles import STYLE_NAMES
    from engine.train.export import export_model
    from engine.train.restyle_model import RestyleLM
    from engine.train.train_restyle import PRESETS as RESTYLE_PRESETS

    donor = tmp_path / "donor.pt"
    train_critic(PRESETS["tiny-restyle-critic"], out=donor)  # the shipped file with a critic trained 6 steps more
    out = tmp_path / "taken.pt"
    summary = train_critic(replace(PRESETS["tiny-restyle-critic"], steps=0, critic_from=str(donor)), out=out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        shipped, given, taken = (torch.jit.load(str(p)).state_dict() for p in (MODEL, donor, out))
    assert any(not torch.equal(shipped[k], given[k]) for k in shipped if k.startswith("critic."))
    assert all(torch.equal(taken[k], given[k] if k.startswith("critic.") else shipped[k]) for k in shipped)
    assert summary["taken_from"]["file"] == str(donor) and summary["retrained"].startswith(f"taken from {donor}")
    # a tiny model's critic is smaller than the shipped model's
    tiny_cfg = RESTYLE_PRESETS["tiny-restyle"]
    tiny = tmp_path / "tiny.pt"
    export_model(RestyleLM(tiny_cfg.model_config(), tiny_cfg.restyle_config(), 0).eval(), tiny,
                 {"name": "tiny", "task": "RESTYLE", "styles": list(STYLE_NAMES),
                  "restyle": tiny_cfg.restyle_config().to_dict(), "training": {"config": asdict(tiny_cfg)}})
    with pytest.raises(ModelError, match="its critic is shaped otherwise"):
        train_critic(replace(PRESETS["tiny-restyle-critic"], steps=0, critic_from=str(tiny)), out=tmp_path / "x.pt")
