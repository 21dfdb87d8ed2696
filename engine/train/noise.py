"""Live-input noise on token windows: what a human at a keyboard does to a clean score.

- timing jitter: a time shift is lengthened by 1-2 ticks and the next one shortened by as much
  (events leave the grid, bar lines stay where they are);
- wrong notes: a note-on and its note-off move a semitone;
- extra notes: a one-tick neighbour note is slipped in after a note-on (the window keeps its length);
- velocity noise: a velocity token moves one bin.

Works on a window that may start mid-piece, so it needs no decoder state; each change keeps note-ons
paired with their note-offs.
"""

from __future__ import annotations

import numpy as np

from engine.music.vocab import DEFAULT_VOCAB, Vocab


def add_live_noise(tokens: np.ndarray, rng: np.random.Generator, vocab: Vocab = DEFAULT_VOCAB,
                   jitter: float = 0.3, wrong: float = 0.03, extra: float = 0.02, velocity: float = 0.3) -> np.ndarray:
    t = np.array(tokens, dtype=np.int64)
    n = len(t)
    v = vocab
    shifts = np.flatnonzero((t >= v.shift_base) & (t < v.note_on_base))
    for a, b in zip(shifts[:-1], shifts[1:]):
        if rng.random() < jitter:
            d = int(rng.integers(1, 3)) * (1 if rng.random() < 0.5 else -1)
            sa, sb = v.shift_ticks(t[a]) + d, v.shift_ticks(t[b]) - d
            if 1 <= sa <= v.config.max_shift and 1 <= sb <= v.config.max_shift:
                t[a], t[b] = v.shift(sa), v.shift(sb)
    for i in np.flatnonzero((t >= v.vel_base) & (t < v.shift_base)):
        if rng.random() < velocity:
            t[i] = v.velocity(int(np.clip(t[i] - v.vel_base + rng.choice((-1, 1)), 0, v.config.velocity_bins - 1)))
    ons = np.flatnonzero((t >= v.note_on_base) & (t < v.note_off_base))
    for i in ons:
        if rng.random() >= wrong:
            continue
        pitch = v.pitch_of(int(t[i]))
        new = pitch + (1 if rng.random() < 0.5 else -1)
        offs = np.flatnonzero(t[i + 1:] == v.note_off(pitch))
        if not 0 <= new <= 127 or not len(offs) or (t[i + 1:i + 1 + offs[0]] == v.note_on(new)).any():
            continue
        t[i], t[i + 1 + offs[0]] = v.note_on(new), v.note_off(new)
    out = list(t)
    inserted = 0
    for i in ons:
        if rng.random() >= extra:
            continue
        j = i + inserted
        pitch = v.pitch_of(int(out[j]))
        if not v.is_note_on(int(out[j])):
            continue
        neighbour = pitch + int(rng.choice((-2, -1, 1, 2)))
        if 0 <= neighbour <= 127:
            out[j + 1:j + 1] = [v.note_on(neighbour), v.shift(1), v.note_off(neighbour)]
            inserted += 3
    return np.asarray(out[:n], dtype=np.int64)
