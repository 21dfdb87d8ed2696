"""Musical metrics: key estimation on real music21 pieces, in-key ratio, histograms, repetition."""

import pytest

from engine.music.metrics import (Key, Note, continuation_metrics, estimate_key, histogram_distance, in_key_ratio,
                            key_relative_histogram, notes_of, repetition_rate)
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
