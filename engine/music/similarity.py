"""How alike two melody phrases are: in content (pitch classes over time) and in rhythm (onset pattern).

Both measures compare two `Melody`s on one tick grid from tick 0 (the phrases' first bar lines), over the
longer of the two phrase lengths (`bars * bar_ticks`), so phrases of different meters or bar counts can be
compared; whatever of a note lies past that length is ignored. A beat is `vocab.config.ticks_per_beat`
ticks (a quarter note).

chroma_similarity (Groove2Groove's content measure, Cifka et al. 2020):
    - chroma frames: `frames_per_beat` frames a beat; frame f spans ticks [f, f + 1) * tpb / frames_per_beat
      and gets 1 for each pitch class with a note sounding in any part of it (so a (F, 12) 0/1 array);
    - windows: a moving average over `window_beats` beats, taken every `stride_beats` beats from tick 0,
      one 12-vector per window position. The positions run until the windows cover the whole length; where
      the length is not a whole number of strides past the first window (or is shorter than one window),
      the last window reaches past the end and the frames there count as silent;
    - per window position, the cosine similarity of the two 12-vectors; a position where neither sounds is
      skipped, one where only one sounds counts 0;
    - the result is the mean over the positions not skipped, in [0, 1]; 0.0 if neither sounds anywhere.

onset_similarity:
    - each note-on is rounded to the nearest cell of `resolution_ticks` ticks (half up; 6 ticks = a 16th);
      an onset that rounds onto the phrase end falls in the last cell, one at or past the end is dropped;
    - A and B are the sets of cells with an onset; the result is the Dice / F1 overlap
      2|A & B| / (|A| + |B|), 1.0 when both are empty.

pitch_class_histogram: the (12,) pitch-class distribution of a phrase, each note weighted by its duration
in ticks (or counted once), normalized to sum 1; zeros if it has no notes (or no duration).
"""

from __future__ import annotations

import numpy as np

from engine.music.melody import OFF, ON, PITCH, Melody
from engine.music.vocab import DEFAULT_VOCAB, Vocab

PITCH_CLASSES = 12


def _common_length(a: Melody, b: Melody, vocab: Vocab) -> int:
    """The longer of the two phrase lengths, in ticks."""
    return max(a.length_ticks(vocab), b.length_ticks(vocab))


def chroma_frames(m: Melody, length_ticks: int, vocab: Vocab = DEFAULT_VOCAB, frames_per_beat: int = 12) -> np.ndarray:
    """(F, 12) float64 0/1 chroma of `m` over ticks [0, length_ticks), F = ceil(length * fpb / tpb):
    frame f is 1 in pitch class p when a note of class p sounds in any part of the frame."""
    if frames_per_beat < 1:
        raise ValueError("frames_per_beat must be positive")
    tpb = vocab.config.ticks_per_beat
    n_frames = -(-length_ticks * frames_per_beat // tpb)  # ceil
    chroma = np.zeros((max(n_frames, 0), PITCH_CLASSES), dtype=np.float64)  # (F, 12)
    for on, off, pitch in m.notes[:, [ON, OFF, PITCH]].tolist():
        on, off = max(on, 0), min(off, length_ticks)
        if off <= on:
            continue
        first = on * frames_per_beat // tpb  # the frame holding the onset
        stop = -(-off * frames_per_beat // tpb)  # one past the frame holding the note's last tick
        chroma[first:stop, pitch % PITCH_CLASSES] = 1.0
    return chroma


def windowed_chroma(chroma: np.ndarray, window: int, stride: int) -> np.ndarray:
    """(W, 12) moving averages of (F, 12) frames over `window` frames every `stride` frames from frame 0,
    W = max(1, ceil((F - window) / stride) + 1): the windows cover all F frames, zero-padded at the end."""
    if window < 1 or stride < 1:
        raise ValueError("window and stride must be at least one frame")
    n_frames = chroma.shape[0]
    n_windows = max(1, -(-(n_frames - window) // stride) + 1)
    starts = np.arange(n_windows) * stride  # (W,)
    padded = np.zeros(((n_windows - 1) * stride + window, PITCH_CLASSES), dtype=np.float64)  # (P, 12), P >= F
    padded[:n_frames] = chroma
    cumulative = np.concatenate([np.zeros((1, PITCH_CLASSES)), np.cumsum(padded, axis=0)])  # (P + 1, 12)
    return (cumulative[starts + window] - cumulative[starts]) / window  # (W, 12)


def chroma_similarity(
    a: Melody,
    b: Melody,
    vocab: Vocab = DEFAULT_VOCAB,
    frames_per_beat: int = 12,
    window_beats: float = 2.0,
    stride_beats: float = 1.0,
) -> float:
    """Groove2Groove's content similarity of two phrases, in [0, 1] (see the module docstring)."""
    length = _common_length(a, b, vocab)
    window = max(1, round(window_beats * frames_per_beat))
    stride = max(1, round(stride_beats * frames_per_beat))
    wa = windowed_chroma(chroma_frames(a, length, vocab, frames_per_beat), window, stride)  # (W, 12)
    wb = windowed_chroma(chroma_frames(b, length, vocab, frames_per_beat), window, stride)  # (W, 12)
    norm_a = np.linalg.norm(wa, axis=1)  # (W,)
    norm_b = np.linalg.norm(wb, axis=1)  # (W,)
    sounding = (norm_a > 0) | (norm_b > 0)  # (W,) positions where either sounds
    if not sounding.any():
        return 0.0
    both = (norm_a > 0) & (norm_b > 0)  # (W,)
    cosine = np.zeros(len(wa), dtype=np.float64)  # (W,) 0 where only one side sounds
    cosine[both] = np.sum(wa[both] * wb[both], axis=1) / (norm_a[both] * norm_b[both])
    return float(np.clip(cosine[sounding].mean(), 0.0, 1.0))


def onset_cells(m: Melody, length_ticks: int, resolution_ticks: int = 6) -> np.ndarray:
    """(C,) bool: the cells of `resolution_ticks` ticks over [0, length_ticks) holding a note-on, each onset
    rounded to the nearest cell (half up), C = ceil(length / resolution)."""
    if resolution_ticks < 1:
        raise ValueError("resolution_ticks must be positive")
    n_cells = -(-length_ticks // resolution_ticks)  # ceil
    cells = np.zeros(max(n_cells, 0), dtype=bool)  # (C,)
    onsets = m.notes[:, ON].astype(np.int64)  # (N,)
    onsets = onsets[(onsets >= 0) & (onsets < length_ticks)]
    if n_cells and len(onsets):
        index = (2 * onsets + resolution_ticks) // (2 * resolution_ticks)  # (N,) round half up
        cells[np.minimum(index, n_cells - 1)] = True
    return cells


def onset_similarity(a: Melody, b: Melody, vocab: Vocab = DEFAULT_VOCAB, resolution_ticks: int = 6) -> float:
    """Dice / F1 overlap of the two phrases' onset cells, in [0, 1]; 1.0 when neither has an onset."""
    length = _common_length(a, b, vocab)
    ca = onset_cells(a, length, resolution_ticks)  # (C,)
    cb = onset_cells(b, length, resolution_ticks)  # (C,)
    total = int(ca.sum()) + int(cb.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.sum(ca & cb)) / total


def pitch_class_histogram(m: Melody, weighted: bool = True) -> np.ndarray:
    """(12,) float64 pitch-class distribution summing to 1, by duration in ticks when `weighted`, else by
    note count; all zeros when there is nothing to count."""
    pcs = m.notes[:, PITCH].astype(np.int64) % PITCH_CLASSES  # (N,)
    if weighted:
        weights = np.maximum(m.notes[:, OFF].astype(np.float64) - m.notes[:, ON], 0.0)  # (N,) durations
    else:
        weights = np.ones(len(pcs), dtype=np.float64)  # (N,)
    hist = np.bincount(pcs, weights=weights, minlength=PITCH_CLASSES).astype(np.float64)  # (12,)
    total = hist.sum()
    return hist / total if total > 0 else np.zeros(PITCH_CLASSES, dtype=np.float64)


__all__ = [
    "chroma_frames",
    "chroma_similarity",
    "onset_cells",
    "onset_similarity",
    "pitch_class_histogram",
    "windowed_chroma",
]
