"""The decoder taught its critic's picks (`engine.train.train_picks`): a tiny run on real phrases of the small
cache restyles them with the shipped model, keeps each pair's pick with the condition it was written under,
and rewrites the file with only the decoder's weights changed (the encoder and the critic frozen: z and the
critic's judgement as before); the runtime restyles with the file it writes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.corpus.phrases import PhraseSampler, style_corpus
from engine.music.melody import Melody
from engine.music.styles import STYLE_NAMES
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.train_picks import PRESETS, picked_phrases, train_picks

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "restyle.pt"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")


def test_each_pick_is_a_line_the_model_wrote_for_its_target_with_a_z_a_bar():
    cfg = PRESETS["tiny-restyle-picks"]
    sampler = PhraseSampler(style_corpus(cfg.data_limit), "train", seed=1, limit=cfg.data_limit)
    picks = picked_phrases(MODEL, sampler, cfg, np.random.default_rng(1))
    assert len(picks) == cfg.pairs
    v = DEFAULT_VOCAB
    for p in picks:
        assert 0 <= p.style < len(STYLE_NAMES)
        assert p.tokens[:2] == [v.bos, v.task("RESTYLE")] and any(v.is_note_on(t) for t in p.tokens)
        bars_written = sum(1 for t in p.tokens if t == v.bar)
        assert p.z.ndim == 2 and 1 <= len(p.z) and bars_written >= len(p.z) - 1


def test_a_tiny_run_changes_only_the_decoder_and_the_runtime_restyles_with_it(tmp_path):
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    out = tmp_path / "restyle.pt"
    summary = train_picks(PRESETS["tiny-restyle-picks"], out=out)
    assert summary["pairs"] == PRESETS["tiny-restyle-picks"].pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before, after = torch.jit.load(str(MODEL)).state_dict(), torch.jit.load(str(out)).state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and not any(k.startswith(("encoder.", "critic.")) for k in changed)
    card = json.loads(out.with_name("restyle.card.json").read_text())
    assert card["task"] == "RESTYLE" and card["picks"]["config"]["steps"] == 4 and card["critic"]
    restyler = Restyler(ModelSession(load_model(out), device="cpu", threads=1))
    notes = np.array([[0, 24, 62, 80], [24, 48, 64, 80], [48, 96, 66, 80], [96, 192, 67, 80]], dtype=np.int32)
    result = restyler.restyle(Melody(notes, Meter(4, 4), 2), RestyleSettings(style="fiddle"), seed=0)
    assert len(result.notes) and result.meter == Meter(4, 4)
