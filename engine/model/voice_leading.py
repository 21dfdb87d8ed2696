"""Voice leading as a mask: the note-ons of a sideman voice that would break the rules a chorale keeps.

`voice_leading_ons(state, role)` is a pure function of the grammar state giving, over the
vocabulary, False for the note-ons of `role` (the voice generating now) that would

- move in parallel fifths or octaves with another voice that moved at this tick: both voices move in the
  same direction from the previous onset to this one, from a fifth to a fifth or an octave (or unison) to
  an octave, exactly as `engine.music.harmony.parallels` counts them. At a tick the sideman's voices are
  decided in role order before the player's note there is known, so a voice is checked against the voices
  decided before it at the tick, and the later ones against it; the melody's move at the tick is unknown;
- cross a neighbour: sound above the lowest note of a voice written above it (the melody above all: its note
  sounding, else the last it played) or below the highest note of a voice written below it that sounds now,
  as `engine.music.harmony.crossing_shares` counts them (a unison is no crossing).

Every other token stays True. The accompanist applies it only when some note-on stays allowed, so a voice
boxed in by its neighbours may still enter.
"""

from __future__ import annotations

import numpy as np

from engine.model.grammar import GrammarState
from engine.music.vocab import PLAYER

PERFECT = (0, 7)  # interval classes of parallels: unison/octave, fifth (lower role's pitch minus the higher's)


def _tops(notes) -> dict[int, int]:
    """role -> its highest pitch among (role, pitch) pairs (a voice line's pitch: its top note)."""
    out: dict[int, int] = {}
    for r, p in notes:
        out[r] = max(out.get(r, p), p)
    return out


def voice_leading_ons(state: GrammarState, role: int) -> np.ndarray:
    """Bool (V,): False for the note-ons of `role` that move in parallel perfect intervals with a voice that
    moved at this tick, or cross a neighbouring voice (see the module docstring)."""
    v = state.vocab
    pitches = np.arange(v.config.n_pitches)
    ok = np.ones(v.config.n_pitches, dtype=bool)
    before = _tops(state.onset_sounding)
    prev = before.get(role)
    if prev is not None:
        moved = _tops((r, p) for (r, p), tick in state.on_tick.items() if tick == state.position and r != role)
        for other, now in moved.items():
            was = before.get(other)
            if was is None or was == now:
                continue
            # the interval as harmony.parallels takes it: the lower-numbered role's pitch minus the other's
            was_iv = (was - prev) % 12 if other < role else (prev - was) % 12
            if was_iv not in PERFECT:
                continue
            now_iv = (now - pitches) % 12 if other < role else (pitches - now) % 12
            ok &= ~((now_iv == was_iv) & (np.sign(pitches - prev) == np.sign(now - was)) & (pitches != prev))
    sounding = state.sounding
    above = [p for r, p in sounding if r < role]
    if not any(r == PLAYER for r, _ in sounding) and PLAYER in state.last_pitch:
        above.append(state.last_pitch[PLAYER])  # between the melody's notes: its last note stands for it
    below = [p for r, p in sounding if r > role]
    if above:
        ok &= pitches <= min(above)
    if below:
        ok &= pitches >= max(below)
    out = np.ones(v.size, dtype=bool)
    out[v.note_on_base:v.note_on_base + v.config.n_pitches] = ok
    return out
