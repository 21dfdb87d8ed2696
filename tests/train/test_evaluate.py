"""`sideman eval` on the tiny corpus cache (real music21 pieces): losses, the musical metrics, and what a
listener hears on clean, as-played and swung prompts, for the model, the Markov baseline and the
reference."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from engine.cli import main
from engine.train.config import load_config
from engine.train.data import load_token_data, prompt_variants
from plumbing_model import plumbing_model

pytestmark = pytest.mark.slow

HEARD = ("out_of_range", "register_distance_median", "thicker_share", "density_in_range_share", "held_over_bar",
         "empty_answers", "answers", "peak_polyphony_max")


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return plumbing_model(tmp_path_factory.mktemp("model"))


def test_eval_reports_what_a_listener_hears_on_clean_as_played_and_swung_prompts(model_path, capsys):
    args = ["eval", "--model", str(model_path), "--config", "tiny", "--data-limit", "20", "--prompts", "6",
            "--windows", "8", "--markov-order", "2", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    for set_name in ("as_played", "swing"):
        for source in ("reference", "markov"):
            assert set(HEARD) <= set(r[set_name][source]), (set_name, source)
    (model,) = r["models"].values()
    for key in ("musical", "musical_as_played", "musical_swing"):
        m = model[key]
        assert m["answers"] >= 1
        for share in ("out_of_range", "thicker_share", "density_in_range_share", "held_over_bar"):
            assert m[share] is None or 0.0 <= m[share] <= 1.0
    for key in ("out_of_range_model", "out_of_range_model_as_played", "register_distance_median_model_as_played",
                "thicker_share_model_swing", "empty_answers_model_as_played"):
        assert key in r
    # as shipped, an answer is at most one voice thicker than its phrase; the free rows show the model's own
    for key in ("musical", "musical_as_played", "musical_swing"):
        assert model[key]["thicker_share"] in (0.0, None), key
        assert set(HEARD) <= set(model[key + "_free_texture"]), key
    assert "thicker_share_model_free_texture_as_played" in r and "peak_polyphony_max_model_free_texture" in r
    # the reference answers the phrase it belongs to: in its register, never thicker than the piece
    assert r["reference"]["out_of_range"] == 0.0


def test_as_played_prompts_are_the_test_pieces_played_not_copied():
    cfg = replace(load_config("tiny"), data_limit=20)
    data = load_token_data(cfg)
    variants = prompt_variants(cfg, "test")
    assert len(variants["as_played"]) == len(variants["swing"]) == len(data.test)
    assert all(not np.array_equal(a, b) for a, b in zip(variants["as_played"], data.test))
    again = prompt_variants(cfg, "test")["as_played"]  # the same seeds: the same prompts on every run
    assert all(np.array_equal(a, b) for a, b in zip(variants["as_played"], again))


def test_eval_accompany_reports_loss_per_sideman_token_and_consonance_clean_and_as_played(model_path, capsys):
    """On real chorales (the first 70; three test pieces): the planner runs for the model and the Markov
    model, and the reference is Bach's own lower voices."""
    args = ["eval", "--task", "accompany", "--model", str(model_path), "--config", "tiny-accompany",
            "--prompts", "3", "--bars", "4", "--windows", "8", "--markov-order", "2", "--json"]
    assert main(args) == 0
    r = json.loads(capsys.readouterr().out)
    (model,) = r["models"].values()
    assert r["sideman_loss_markov"] > 0 and model["sideman_loss"] > 0
    keys = ("cr", "ur", "dissonant", "parallels_per_bar", "crossing_share", "above_melody_share", "onsets_together")
    for set_name in ("clean", "as_played"):
        for m in (model[set_name], r[set_name]["markov"], r[set_name]["reference"]):
            assert set(keys) <= set(m)
            assert abs(m["cr"] + m["ur"] + m["dissonant"] - 1.0) < 1e-3
    ref = r["clean"]["reference"]
    assert ref["cr"] > 0.9 and ref["ur"] < 0.05  # Bach's voices sound with his melody, consonantly
    assert ref["above_melody_share"] < 0.05 and ref["onsets_together"] > 0.8
    # as played, the melody is off the grid: fewer onsets fall together with the voices written on the grid
    assert r["as_played"]["reference"]["onsets_together"] < ref["onsets_together"]
