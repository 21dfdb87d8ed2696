"""The decoder taught by back-translation (`engine.train.train_backtranslate`): a tiny run on real phrases of
the small cache restyles each into another style with the shipped model, pairs the real phrase (the target,
under its own style) with its restyled line in the same bar lines (what the encoder reads), and rewrites the
file with only the decoder's weights changed (the encoder and the critic frozen: z, the probe on z and the
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
from engine.train.train_backtranslate import PRESETS, back_loss, back_pairs, train_backtranslate

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "restyle.pt"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")


def test_each_pair_is_a_real_phrase_and_its_restyled_line_in_the_same_bar_lines():
    cfg = PRESETS["tiny-restyle-back"]
    sampler = PhraseSampler(style_corpus(cfg.data_limit), "train", seed=1, limit=cfg.data_limit)
    pairs = back_pairs(MODEL, sampler, cfg, 256, np.random.default_rng(1))
    assert len(pairs) == cfg.pairs
    v = DEFAULT_VOCAB
    for p in pairs:
        assert 0 <= p.style < len(STYLE_NAMES)
        for tokens in (p.target, p.read):
            assert tokens[:2] == [v.bos, v.task("RESTYLE")] and any(v.is_note_on(t) for t in tokens)
        assert p.target.count(v.bar) == p.read.count(v.bar)  # one z a bar of the target
        assert p.read != p.target  # another line, not the phrase again


def test_the_back_loss_is_the_decoders_cross_entropy_on_the_real_phrase_and_falls_as_it_learns_it():
    from engine.train.train_critic import load_restyle_model

    cfg = PRESETS["tiny-restyle-back"]
    sampler = PhraseSampler(style_corpus(cfg.data_limit), "train", seed=2, limit=cfg.data_limit)
    pairs = back_pairs(MODEL, sampler, cfg, 256, np.random.default_rng(2))[:2]
    model, _ = load_restyle_model(MODEL)
    params = [p for n, p in model.named_parameters() if not n.startswith(("encoder.", "critic."))]
    opt = torch.optim.AdamW(params, lr=1e-3)
    torch.manual_seed(0)
    first = back_loss(model, pairs, 0.0)
    for _ in range(8):
        loss = back_loss(model, pairs, 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(first) and back_loss(model, pairs, 0.0).item() < 0.8 * first.item()


def test_a_tiny_run_changes_only_the_decoder_and_the_runtime_restyles_with_it(tmp_path):
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    out = tmp_path / "restyle.pt"
    summary = train_backtranslate(PRESETS["tiny-restyle-back"], out=out)
    assert summary["pairs"] == PRESETS["tiny-restyle-back"].pairs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        before, after = torch.jit.load(str(MODEL)).state_dict(), torch.jit.load(str(out)).state_dict()
    assert set(before) == set(after)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and not any(k.startswith(("encoder.", "critic.")) for k in changed)
    card = json.loads(out.with_name("restyle.card.json").read_text())
    assert card["task"] == "RESTYLE" and card["back"]["config"]["steps"] == 4 and card["critic"]
    restyler = Restyler(ModelSession(load_model(out), device="cpu", threads=1))
    notes = np.array([[0, 24, 62, 80], [24, 48, 64, 80], [48, 96, 66, 80], [96, 192, 67, 80]], dtype=np.int32)
    result = restyler.restyle(Melody(notes, Meter(4, 4), 2), RestyleSettings(style="fiddle"), seed=0)
    assert len(result.notes) and result.meter == Meter(4, 4)


def test_sideman_train_reaches_every_back_translation_preset():
    from engine.commands.train import BACK_CONFIGS

    assert set(BACK_CONFIGS) == set(PRESETS)
