"""The pick's n-gram critic counted on real phrases of the small cache and attached to the shipped restyle
model: the file's weights are untouched, it still loads with torch.jit.load alone, its card says what was
attached, the runtime picks with both critics, and a file whose card names a critic it lacks is refused
with the fix."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.errors import ModelError
from engine.model.style_ngram import read_style_ngram
from engine.music.melody import Melody, encode_melody
from engine.music.styles import style_index
from engine.music.tokens import Meter
from engine.train.train_style_ngram import PRESETS, attach_style_ngram, build_style_ngram, load_style_ngram_config

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "restyle.pt"
CONTINUATION = REPO / "models" / "continuation.pt"

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")


@pytest.fixture(scope="module")
def tiny_ngram():
    return build_style_ngram(PRESETS["tiny-style-ngram"])  # real phrases of the small cache (24 pieces a style)


def test_attached_to_a_restyle_file_the_critic_travels_inside_it_and_the_runtime_picks_with_both(tmp_path, tiny_ngram):
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    metrics = tiny_ngram.card["metrics"]
    assert metrics["test_phrases"] > 0 and 0.0 <= metrics["test_balanced_accuracy_clean"] <= 1.0
    out = tmp_path / "restyle.pt"
    attach_style_ngram(MODEL, tiny_ngram, out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        files = {"card.json": ""}
        before = torch.jit.load(str(MODEL)).state_dict()
        after = torch.jit.load(str(out), _extra_files=files).state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    card = json.loads(files["card.json"])
    assert card["restyle"]["ngram_critic"]["config"]["phrases"] == 400
    assert json.loads(out.with_name("restyle.card.json").read_text()) == card
    ngram = read_style_ngram(out)
    assert ngram.styles == tiny_ngram.styles
    assert all(np.array_equal(a.trigram_counts, b.trigram_counts) for a, b in zip(ngram.counts, tiny_ngram.counts))

    restyler = Restyler(ModelSession(load_model(out), device="cpu", threads=1))
    assert restyler.ngram is not None
    notes = np.array([[0, 24, 62, 80], [24, 48, 64, 80], [48, 96, 66, 80], [96, 192, 67, 80]], dtype=np.int32)
    source = Melody(notes, Meter(4, 4), 2)
    settings = RestyleSettings(style="fiddle")
    decode = restyler.begin(source, settings, seed=1)
    decode.run()
    both = restyler.score(source, decode)
    restyler.ngram = None
    token_only = restyler.score(source, decode)
    restyler.ngram = ngram
    target = style_index("fiddle")
    p_ngram = float(ngram.probabilities(decode.result())[target])
    heard = Melody(decode.result().notes, decode.meter, decode.bars)
    p_token = float(restyler.own_style(encode_melody(heard))[target])
    assert both == pytest.approx(token_only + 0.5 * (p_ngram - p_token))  # the style term: the critics' mean
    result = restyler.restyle(source, RestyleSettings(style="fiddle", candidates=3), seed=0)
    assert len(result.notes) and result.meter == Meter(4, 4)


def test_a_file_whose_card_names_a_critic_it_lacks_is_refused_with_the_fix(tmp_path, tiny_ngram):
    from engine.model.modelfile import load_model
    from engine.model.restyler import Restyler
    from engine.model.session import ModelSession

    good = tmp_path / "good.pt"
    attach_style_ngram(MODEL, tiny_ngram, good)
    stripped = tmp_path / "stripped.pt"  # the same archive without the critic's bytes
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(stripped, "w") as dst:
        for item in src.infolist():
            if not item.filename.endswith("/extra/style_ngram.npz"):
                dst.writestr(item, src.read(item.filename))
    with pytest.raises(ModelError, match="does not hold.*sideman train --config style-ngram"):
        Restyler(ModelSession(load_model(stripped), device="cpu", threads=1))
    if CONTINUATION.exists():
        with pytest.raises(ModelError, match="goes with a restyle model"):
            attach_style_ngram(CONTINUATION, tiny_ngram, tmp_path / "x.pt")


def test_every_n_gram_preset_is_reachable_from_sideman_train_and_overrides_are_checked():
    from engine.commands.train import NGRAM_CONFIGS

    assert set(NGRAM_CONFIGS) == set(PRESETS)
    cfg = load_style_ngram_config("style-ngram", {"phrases": "100", "model": "runs/x/restyle.pt"})
    assert cfg.phrases == 100 and cfg.model == "runs/x/restyle.pt"
    with pytest.raises(ModelError, match="unknown style n-gram setting 'phrase'"):
        load_style_ngram_config("style-ngram", {"phrase": "10"})
