"""The restyle pick's n-gram critic alone (engine.model.style_ngram), on toy phrases: its symbols, that it
tells apart two styles made of the same steps and lengths in another order, and that it survives the trip
into bytes and refuses damaged ones with the fix."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import ModelError
from engine.model.style_ngram import N_SYMBOLS, N_TIMES, StyleNgram, melody_symbols, read_style_ngram
from engine.music.melody import Melody
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.train_style_ngram import count_style

TPB = DEFAULT_VOCAB.config.ticks_per_beat


def melody(pitches: list[int], beats: list[float]) -> Melody:
    """Notes one after another, each `beats` long."""
    on, rows = 0, []
    for p, b in zip(pitches, beats):
        ticks = int(round(b * TPB))
        rows.append([on, on + ticks, p, 80])
        on += ticks
    return Melody(np.asarray(rows, dtype=np.int32), Meter(4, 4), max(1, -(-on // (4 * TPB))))


def test_a_symbol_is_the_interval_and_the_time_since_the_last_onset():
    m = melody([60, 62, 55, 80], [1, 0.5, 2, 1])
    s = melody_symbols(m)
    # +2 after a beat, -7 after half a beat, +12 (clipped from +25) after two beats; log2(beats) + 3
    assert s.tolist() == [(12 + 2) * N_TIMES + 3, (12 - 7) * N_TIMES + 2, (12 + 12) * N_TIMES + 4]
    assert melody_symbols(melody([60], [1])).size == 0
    assert melody_symbols(m.transposed(5)).tolist() == s.tolist()  # no key, no register


def toy_phrases(rng: np.random.Generator, style: int, n: int) -> list[Melody]:
    """Style 0: a long note, then two short ones, stepping up; style 1: the same durations and steps in
    another order (two short notes, then a long one). Both have the same intervals and the same note lengths
    overall: what tells them apart is which step comes after which length."""
    out = []
    for _ in range(n):
        start = int(rng.integers(55, 70))
        cells = int(rng.integers(2, 5))
        beats = ([1.0, 0.5, 0.5] if style == 0 else [0.5, 0.5, 1.0]) * cells
        pitches = [start + 2 * (i % 3) - (i // 3) for i in range(len(beats))]
        out.append(melody(pitches, beats))
    return out


def toy_critic() -> StyleNgram:
    rng = np.random.default_rng(0)
    counts = [count_style([melody_symbols(m) for m in toy_phrases(rng, s, 40)]) for s in (0, 1)]
    return StyleNgram(["long-short-short", "short-short-long"], counts, {"kind": "style-ngram"})


def test_it_hears_the_order_of_the_notes():
    critic = toy_critic()
    rng = np.random.default_rng(1)
    for style in (0, 1):
        for m in toy_phrases(rng, style, 10):
            p = critic.probabilities(m)
            assert p.shape == (2,) and abs(p.sum() - 1) < 1e-9
            assert int(np.argmax(p)) == style, p
    assert critic.probabilities(melody([60], [1])).tolist() == [0.5, 0.5]  # one note: no evidence


def test_bytes_round_trip_and_damaged_bytes_say_how_to_fix_them(tmp_path):
    critic = toy_critic()
    again = StyleNgram.from_bytes(critic.to_bytes())
    assert again.styles == critic.styles and again.card["kind"] == "style-ngram"
    m = toy_phrases(np.random.default_rng(2), 1, 1)[0]
    assert np.allclose(again.probabilities(m), critic.probabilities(m))
    assert again.counts[0].unigram.shape == (N_SYMBOLS,)
    with pytest.raises(ModelError, match="damaged.*sideman train --config style-ngram"):
        StyleNgram.from_bytes(critic.to_bytes()[:100])
    not_a_model = tmp_path / "x.pt"
    not_a_model.write_bytes(b"no zip here")
    with pytest.raises(ModelError, match="not a TorchScript model archive"):
        read_style_ngram(not_a_model)
