"""What the independent style classifier sees of a phrase: a fixed vector of musical statistics.

The classifier (`engine.train.style_classifier`) judges the restyle model's output, so it shares nothing
with it: no tokens, no embeddings, no training. Its features are what a listener hears of a line:

    intervals      histogram of the melodic steps, -12..+12 semitones (leaps beyond clipped)        25
    durations      histogram of note lengths, log2 of beats from 1/8 to 8 (9 bins)                    9
    beat phase     where onsets fall in the beat, in 12 bins of 2 ticks                              12
    two-beat phase where onsets fall in each two beats from the phrase's start, in 8 bins of a 16th     8
    scale          duration-weighted pitch classes relative to the most-heard one                    12
    register       mean pitch and range (scaled), notes per beat, share of the time sounding          4
                                                                                                 = 70
The meter is not a feature, and no feature reads the bar lines: live the meter is the clock's (the
player's), a restyled phrase keeps the source's meter and length, and bar lines are not heard (two bars of
2/4 and one of 4/4 sound the same), so the classifier must judge what restyling can change. Every feature
is a function of the notes' ticks from the phrase's start and the phrase's length alone, so the same notes
barred another way give the same vector. (An earlier set had the onsets' place in the bar, 8 bins of the
bar: it read the bar length, and the real chorales barred as 2/4 were called chorales 0 % of the time
against 88 % as written; docs/benchmarks.md.)
"""

from __future__ import annotations

import numpy as np

from engine.music.melody import OFF, ON, PITCH, Melody
from engine.music.vocab import DEFAULT_VOCAB, Vocab

N_FEATURES = 70


def _hist(values: np.ndarray, bins: int) -> np.ndarray:
    h = np.bincount(values, minlength=bins)[:bins].astype(np.float64)
    return h / h.sum() if h.sum() else h


def style_features(m: Melody, vocab: Vocab = DEFAULT_VOCAB) -> np.ndarray:
    """(70,) float32: the phrase's statistics (see the module docstring)."""
    tpb = vocab.config.ticks_per_beat
    notes = m.notes
    out: list[np.ndarray] = []
    pitches = notes[:, PITCH].astype(np.int64)
    steps = np.clip(np.diff(pitches), -12, 12) + 12 if len(pitches) > 1 else np.zeros(0, np.int64)
    out.append(_hist(steps, 25))
    dur_beats = np.maximum(notes[:, OFF] - notes[:, ON], 1) / tpb
    out.append(_hist(np.clip(np.rint(np.log2(dur_beats) + 3), 0, 8).astype(np.int64), 9))
    out.append(_hist((notes[:, ON] % tpb) // 2, 12))
    two_beats = 2 * tpb
    out.append(_hist(np.minimum((notes[:, ON] % two_beats) * 8 // two_beats, 7), 8))
    weights = np.bincount(pitches % 12, weights=dur_beats, minlength=12) if len(pitches) else np.zeros(12)
    tonic = int(np.argmax(weights)) if weights.sum() else 0
    scale = np.roll(weights, -tonic)
    out.append(scale / scale.sum() if scale.sum() else scale)
    length_beats = max(m.length_ticks(vocab) / tpb, 1e-9)
    sounding = min(1.0, float(np.sum(notes[:, OFF] - notes[:, ON])) / max(m.length_ticks(vocab), 1))
    register = [
        (pitches.mean() - 66.0) / 12.0 if len(pitches) else 0.0,
        (pitches.max() - pitches.min()) / 24.0 if len(pitches) else 0.0,
        len(pitches) / length_beats / 4.0,
        sounding,
    ]
    out.append(np.asarray(register))
    vec = np.concatenate(out).astype(np.float32)
    assert vec.shape == (N_FEATURES,), vec.shape
    return vec


def feature_matrix(melodies, vocab: Vocab = DEFAULT_VOCAB) -> np.ndarray:
    """(N, 70) for a list of melodies."""
    return np.stack([style_features(m, vocab) for m in melodies]) if melodies else np.zeros((0, N_FEATURES),
                                                                                            np.float32)


__all__ = ["N_FEATURES", "feature_matrix", "style_features"]
