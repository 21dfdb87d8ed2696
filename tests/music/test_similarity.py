"""Melody similarity: chroma (Groove2Groove content) and onset-pattern measures, and the pitch-class histogram."""

import numpy as np
import pytest

from engine.music.melody import Melody
from engine.music.similarity import (chroma_frames, chroma_similarity, onset_cells, onset_similarity,
                                     pitch_class_histogram, windowed_chroma)
from engine.music.tokens import Meter

BEAT = 24  # DEFAULT_VOCAB ticks per beat
C4, E4, G4, C5 = 60, 64, 67, 72


def melody(rows, meter=Meter(4, 4), bars=1) -> Melody:
    """A Melody from (on, off, pitch) rows, velocity 80."""
    notes = np.asarray([(on, off, pitch, 80) for on, off, pitch in rows], dtype=np.int32).reshape(-1, 4)
    return Melody(notes, meter, bars)


def quarters(pitches, shift=0, bars=2) -> Melody:
    """One quarter note per beat from tick `shift`, the last cut at the phrase end (4/4)."""
    end = bars * 4 * BEAT
    return melody([(i * BEAT + shift, min((i + 1) * BEAT + shift, end), p) for i, p in enumerate(pitches)], bars=bars)


TUNE = quarters([C4, E4, G4, C5, G4, E4, 62, C4])
SCALE = quarters([60, 62, 64, 65, 67, 69, 71, 72])
EMPTY = melody([], bars=2)


def test_identical_melodies_score_one():
    for m in (TUNE, SCALE):
        assert chroma_similarity(m, m) == pytest.approx(1.0)
        assert onset_similarity(m, m) == 1.0


def test_tritone_transposition_keeps_rhythm_and_loses_content():
    shifted = SCALE.transposed(6)
    assert chroma_similarity(SCALE, shifted) < 0.2
    assert onset_similarity(SCALE, shifted) == 1.0


def test_rhythm_shifted_by_an_eighth_keeps_content_and_loses_rhythm():
    late = quarters([C4, E4, G4, C5, G4, E4, 62, C4], shift=BEAT // 2)
    assert chroma_similarity(TUNE, late) > 0.7
    assert onset_similarity(TUNE, late) == 0.0


def test_empty_against_non_empty_is_zero():
    assert chroma_similarity(EMPTY, TUNE) == 0.0
    assert onset_similarity(EMPTY, TUNE) == 0.0
    assert chroma_similarity(EMPTY, EMPTY) == 0.0  # nothing sounds anywhere
    assert onset_similarity(EMPTY, EMPTY) == 1.0  # two empty patterns agree


def test_chroma_similarity_by_hand():
    # 1 bar of 4/4 = 4 beats: windows of 2 beats at beats 0, 1, 2
    a = melody([(0, 2 * BEAT, C4), (2 * BEAT, 4 * BEAT, E4)])  # C for two beats, then E for two
    b = melody([(0, 4 * BEAT, C4)])  # C for the whole bar
    # window 0: C vs C -> 1; window 1: (C/2 + E/2) vs C -> 1/sqrt(2); window 2: E vs C -> 0
    assert chroma_similarity(a, b) == pytest.approx((1 + 1 / np.sqrt(2) + 0) / 3)


def test_chroma_similarity_skips_silent_windows_and_counts_one_sided_ones_as_zero():
    c = melody([(0, BEAT, C4)])  # C on beat 1 only: sounds in window 0 only
    assert chroma_similarity(c, c) == pytest.approx(1.0)  # windows 1 and 2 are silent on both sides: skipped
    c_then_g = melody([(0, BEAT, C4), (3 * BEAT, 4 * BEAT, G4)])  # adds G on beat 4, in window 2 only
    # window 0: 1; window 1: silent on both sides, skipped; window 2: silent vs G -> 0
    assert chroma_similarity(c, c_then_g) == pytest.approx(0.5)


def test_phrases_of_different_meters_and_lengths_share_one_grid():
    a = melody([(0, 2 * BEAT, C4), (2 * BEAT, 4 * BEAT, E4)])  # 1 bar of 4/4 = 96 ticks
    b = melody([(0, 2 * BEAT, C4), (2 * BEAT, 4 * BEAT, E4)], meter=Meter(3, 4), bars=2)  # 144 ticks
    assert chroma_similarity(a, b) == pytest.approx(1.0)  # what lies past tick 96 is silent on both sides
    assert onset_similarity(a, b) == 1.0
    later = melody([(0, 2 * BEAT, C4), (2 * BEAT, 4 * BEAT, E4), (4 * BEAT, 6 * BEAT, G4)], Meter(3, 4), bars=2)
    assert chroma_similarity(a, later) < 1.0  # b's last two beats count against the shorter a
    assert onset_similarity(a, later) == pytest.approx(2 * 2 / (2 + 3))


def test_chroma_frames_mark_every_frame_a_note_touches():
    m = melody([(1, 5, C4 + 1), (5, 6, 48)])  # 2 ticks a frame: C# in frames 0..2, C (48) in frame 2 only
    frames = chroma_frames(m, 4 * BEAT)
    assert frames.shape == (48, 12)
    assert np.flatnonzero(frames[:, 1]).tolist() == [0, 1, 2]
    assert np.flatnonzero(frames[:, 0]).tolist() == [2]
    assert frames.sum() == 4


def test_windows_cover_a_length_that_is_not_a_whole_number_of_strides():
    frames = np.zeros((30, 12))  # 2.5 beats, e.g. one bar of 5/8
    frames[29, 0] = 1.0
    windows = windowed_chroma(frames, window=24, stride=12)
    assert windows.shape == (2, 12)  # the second window runs past the end, padded with silence
    assert windows[:, 0].tolist() == [0.0, 1 / 24]
    five_eight = melody([(0, 48, C4), (48, 60, E4)], meter=Meter(5, 8))
    cut_short = melody([(0, 48, C4)], meter=Meter(5, 8))
    assert chroma_similarity(five_eight, cut_short) < 1.0  # the last eighth is not lost


def test_onset_cells_round_to_the_nearest_sixteenth():
    m = melody([(2, 3, C4), (3, 4, E4), (93, 94, G4)])  # 2 -> cell 0, 3 -> cell 1 (half up), 93 -> last cell
    assert np.flatnonzero(onset_cells(m, 4 * BEAT)).tolist() == [0, 1, 15]


def test_similarities_are_symmetric_and_in_unit_range():
    rng = np.random.default_rng(0)
    meters = [Meter(4, 4), Meter(3, 4), Meter(6, 8), Meter(5, 8)]

    def random_melody() -> Melody:
        meter, bars = meters[rng.integers(len(meters))], int(rng.integers(1, 5))
        end = bars * meter.bar_ticks(BEAT)
        n = int(rng.integers(0, 12))
        ons = np.sort(rng.integers(0, end, size=n))
        rows = [(on, min(end, on + int(rng.integers(1, 3 * BEAT))), int(rng.integers(40, 90))) for on in ons]
        return melody(rows, meter, bars)

    for _ in range(60):
        a, b = random_melody(), random_melody()
        for sim in (chroma_similarity, onset_similarity):
            ab, ba = sim(a, b), sim(b, a)
            assert ab == pytest.approx(ba, abs=1e-12)
            assert 0.0 <= ab <= 1.0


def test_pitch_class_histogram():
    m = melody([(0, 3 * BEAT, C4), (3 * BEAT, 4 * BEAT, C5 + 7)])  # C for 3 beats, G for 1
    weighted = pitch_class_histogram(m)
    assert weighted.shape == (12,)
    assert weighted[0] == pytest.approx(0.75) and weighted[7] == pytest.approx(0.25)
    assert weighted.sum() == pytest.approx(1.0)
    counted = pitch_class_histogram(m, weighted=False)
    assert counted[0] == pytest.approx(0.5) and counted[7] == pytest.approx(0.5)
    assert pitch_class_histogram(EMPTY).tolist() == [0.0] * 12
