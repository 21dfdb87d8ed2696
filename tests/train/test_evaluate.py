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
