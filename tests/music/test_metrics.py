"""Musical metrics: key estimation on real music21 pieces, in-key ratio, histograms, repetition."""

import numpy as np
import pytest

from engine.music.metrics import (Key, Note, continuation_metrics, estimate_key, histogram_distance, in_key_ratio,
                                  key_relative_histogram, listener_metrics, notes_of, peak_polyphony, repetition_rate)
from engine.music.tokens import DecodedEvent


def scale_notes(tonic, steps, start=0, dur=24):
    return [Note(start + i * dur, start + (i + 1) * dur, 60 + tonic + s, 80, 0) for i, s in enumerate(steps)]


def test_estimate_key_of_scales():
    assert estimate_key(scale_notes(2, [0, 2, 4, 5, 7, 9, 11, 12, 7, 4, 0, 0])) == Key(2, False)  # D major
    assert estimate_key(scale_notes(9, [0, 2, 3, 5, 7, 8, 11, 12, 7, 3, 0, 0])) == Key(9, True)  # A minor


def test_estimate_key_of_a_real_chorale():
    music21 = pytest.importorskip("music21")
    score = music21.corpus.parse("bach/bwv66.6")  # F# minor
    notes = [Note(int(n.offset * 24), int((n.offset + n.quarterLength) * 24), n.pitch.midi, 80, 0)
             for n in score.recurse().notes if n.isNote]
    key = estimate_key(notes)
    assert key == Key(6, True) or key == Key(9, False)  # F# minor or its relative major


def test_in_key_ratio_and_histograms():
    c_major = Key(0, False)
    notes = scale_notes(0, [0, 2, 4, 6])  # F# is out of C major
    assert in_key_ratio(notes, c_major) == 0.75
    h = key_relative_histogram(notes, c_major)
    assert h.sum() == pytest.approx(1.0)
    assert histogram_distance(h, h) == 0.0
    assert histogram_distance(h, key_relative_histogram(scale_notes(0, [1, 3]), c_major)) == 1.0


def test_repetition_rate():
    motif = [0, 2, 4, 5, 7]
    assert repetition_rate(scale_notes(0, motif * 3)) > 0.5
    assert repetition_rate(scale_notes(0, [0, 1, 3, 6, 10, 15, 21])) == 0.0


def test_notes_of_pairs_events_and_metrics_run():
    events = [DecodedEvent(0, True, 60, 80, 0), DecodedEvent(24, False, 60, 0, 0),
              DecodedEvent(24, True, 64, 80, 0), DecodedEvent(48, False, 64, 0, 0),
              DecodedEvent(48, True, 67, 80, 0)]  # the last note never ends: dropped
    notes = notes_of(events)
    assert [(n.start, n.end, n.pitch) for n in notes] == [(0, 24, 60), (24, 48, 64)]
    m = continuation_metrics(notes, 48, notes, 48)
    assert m.in_key == 1.0 and m.density_ratio == 1.0 and m.range_ratio == 1.0


def _n(start, end, pitch, role=1):
    return Note(start, end, pitch, 80, role)


def test_listener_metrics_hear_register_polyphony_density_and_held_notes():
    bar = 96
    phrase = [_n(0, 24, 60, 0), _n(24, 48, 64, 0), _n(48, 72, 67, 0), _n(72, 96, 72, 0)]  # C4-C5, one voice
    in_register = [_n(96, 120, 62), _n(120, 144, 65), _n(144, 168, 69), _n(168, 192, 71)]
    m = listener_metrics(phrase, bar, in_register, bar, bar)
    assert m.out_of_range == 0 and m.register_distance == pytest.approx(1.5) and not m.empty
    assert m.peak_polyphony == 1 and m.phrase_polyphony == 1 and not m.thicker
    assert m.density_ratio == pytest.approx(1.0) and m.held_over_bar == 0
    # the failure the human-playing issue describes: a cluster in the wrong register, held over the bar
    cluster = [_n(96, 300, p) for p in (41, 43, 45, 47, 92)] + [_n(100, 110, 60)]
    m = listener_metrics(phrase, bar, cluster, bar, bar)
    assert m.out_of_range == pytest.approx(5 / 6)  # 41, 43, 45, 47 (below 48) and 92 (above 84)
    assert m.peak_polyphony == 6 and m.thicker
    assert m.held_over_bar == pytest.approx(5 / 6)
    assert m.density_ratio == pytest.approx(1.5)
    assert m.register_distance == pytest.approx(abs(np.median([41, 43, 45, 47, 92, 60]) - 65.5))
    empty = listener_metrics(phrase, bar, [], bar, bar)
    assert empty.empty and np.isnan(empty.out_of_range)


def test_peak_polyphony_counts_notes_sounding_together_not_touching():
    assert peak_polyphony([_n(0, 10, 60), _n(10, 20, 62)]) == 1  # one ends as the next begins
    assert peak_polyphony([_n(0, 10, 60), _n(5, 20, 62), _n(6, 8, 64)]) == 3
    assert peak_polyphony([]) == 0
