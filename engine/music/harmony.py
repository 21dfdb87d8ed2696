"""What a listener hears of an accompaniment: how it sounds with the melody, and how its voices move.

All on notes (`engine.music.metrics.Note`: start and end ticks, pitch, role); the melody is role 0, the
sideman's voices roles 1-3.

- consonance, per unit of melody duration (StreamMUSE's definition): UR, the share with no sideman note
  sounding; CR, the share where at least one sideman note forms a consonant interval with the melody
  (unison or octave, m3, M3, P5, m6, M6, mod 12); the dissonant rest is 1 - CR - UR;
- parallel fifths and octaves between any two voices (the melody included), per bar: both voices move,
  in the same direction, from a fifth to a fifth or an octave (or unison) to an octave;
- crossings: the share of the time sounding where a voice is above a voice written above it (the
  melody above all, then alto, tenor, bass); and the share of melody time with a sideman voice above it;
- onsets together: the share of melody onsets with a sideman onset within `tolerance` ticks;
- each voice's range (lowest, highest pitch);
- presence: inside the melody, each voice's longest silence and longest note, in beats (a voice that sits out
  bars, or holds one note through them, is heard as missing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from engine.music.metrics import Note

CONSONANT = frozenset({0, 3, 4, 7, 8, 9})  # interval classes: unison/octave, m3, M3, P5, m6, M6
IMPERFECT = frozenset({3, 4, 8, 9})  # ... the imperfect ones: thirds and sixths
# (lowest, highest) pitch of the sideman's voices 1-3 (alto, tenor, bass): where they sing in the chorales
VOICE_RANGES: tuple[tuple[int, int], ...] = ((53, 77), (45, 69), (34, 62))


@dataclass(frozen=True)
class AccompanimentMetrics:
    cr: float  # consonant share of melody time
    ur: float  # unaccompanied share of melody time
    dissonant: float  # 1 - cr - ur
    parallels_per_bar: float  # parallel fifths and octaves, any two voices
    crossing_share: float  # share of sounding time with two voices out of order
    above_melody_share: float  # share of melody time with a sideman note above the melody
    onsets_together: float  # share of melody onsets with a sideman onset within the tolerance
    ranges: dict  # role -> [lowest, highest]
    notes: int  # the sideman's notes
    longest_silence_beats: float  # inside the melody, the longest any of the sideman's voices is silent
    longest_note_beats: float  # ... and the longest note any of them holds

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _segments(notes: Sequence[Note]) -> tuple[np.ndarray, list[dict[int, list[int]]]]:
    """Elementary time segments (boundaries at every onset and offset) and, per segment, role -> pitches."""
    bounds = sorted({n.start for n in notes} | {n.end for n in notes})
    segs: list[dict[int, list[int]]] = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        sounding: dict[int, list[int]] = {}
        for n in notes:
            if n.start <= a and n.end >= b:
                sounding.setdefault(n.role, []).append(n.pitch)
        segs.append(sounding)
    return np.asarray(bounds, dtype=np.int64), segs


def consonance(notes: Sequence[Note]) -> tuple[float, float]:
    """(CR, UR) per unit of melody (role 0) duration."""
    bounds, segs = _segments(notes)
    total = cons = unacc = 0.0
    for (a, b), s in zip(zip(bounds[:-1], bounds[1:]), segs):
        melody = s.get(0)
        if not melody:
            continue
        d = float(b - a)
        total += d
        side = [p for r, ps in s.items() if r != 0 for p in ps]
        if not side:
            unacc += d
        elif any((m - p) % 12 in CONSONANT for m in melody for p in side):
            cons += d
    if total == 0:
        return 0.0, 1.0
    return cons / total, unacc / total


def _voice_line(notes: Sequence[Note], role: int, times: np.ndarray) -> np.ndarray:
    """The voice's pitch sounding at each time (its top pitch; -1 when silent)."""
    out = np.full(len(times), -1, dtype=np.int64)
    for n in notes:
        if n.role == role:
            hit = (times >= n.start) & (times < n.end)
            out[hit] = np.maximum(out[hit], n.pitch)
    return out


def parallels(notes: Sequence[Note], roles: Sequence[int]) -> int:
    """Parallel fifths and octaves between any two of `roles`, from onset to onset."""
    times = np.asarray(sorted({n.start for n in notes}), dtype=np.int64)
    if len(times) < 2:
        return 0
    lines = {r: _voice_line(notes, r, times) for r in roles}
    count = 0
    rs = sorted(roles)
    for i, a in enumerate(rs):
        for b in rs[i + 1:]:
            x, y = lines[a], lines[b]
            both = (x[:-1] >= 0) & (x[1:] >= 0) & (y[:-1] >= 0) & (y[1:] >= 0)
            dx, dy = np.diff(x), np.diff(y)
            moving = both & (dx != 0) & (dy != 0) & (np.sign(dx) == np.sign(dy))
            iv0, iv1 = (x[:-1] - y[:-1]) % 12, (x[1:] - y[1:]) % 12
            perfect = ((iv0 == 7) & (iv1 == 7)) | ((iv0 == 0) & (iv1 == 0))
            count += int((moving & perfect).sum())
    return count


def crossing_shares(notes: Sequence[Note]) -> tuple[float, float]:
    """(share of sounding time with two voices out of order, share of melody time with a sideman note above
    the melody)."""
    bounds, segs = _segments(notes)
    sounding = crossed = melody_time = above = 0.0
    for (a, b), s in zip(zip(bounds[:-1], bounds[1:]), segs):
        if not s:
            continue
        d = float(b - a)
        sounding += d
        tops = {r: max(ps) for r, ps in s.items()}
        lows = {r: min(ps) for r, ps in s.items()}
        rs = sorted(tops)
        if any(lows[r] < tops[q] for i, r in enumerate(rs) for q in rs[i + 1:]):
            crossed += d
        if 0 in s:
            melody_time += d
            if any(tops[r] > max(s[0]) for r in rs if r != 0):
                above += d
    return crossed / sounding if sounding else 0.0, above / melody_time if melody_time else 0.0


def voice_presence(notes, spans: list[tuple[float, float]], beat: float,
                   roles=(1, 2, 3)) -> dict[int, dict[str, float]]:
    """Per voice, inside the melodies (`spans`: each melody's first note-on to its last note-off): how many
    notes it struck, its longest silence and its longest note there, in beats (a voice that drops out for bars,
    or holds one note through them, is heard as missing)."""
    out = {}
    for r in roles:
        mine = sorted((n.start, n.end) for n in notes if n.role == r)
        count, longest, held = 0, 0.0, 0.0
        for lo, hi in spans:
            inside = [(max(s, lo), min(e, hi)) for s, e in mine if e > lo and s < hi]
            count += sum(1 for s, _ in mine if lo <= s < hi)
            held = max([held] + [e - s for s, e in mine if lo <= s < hi])
            last = lo
            for s, e in inside:
                longest = max(longest, s - last)
                last = max(last, e)
            longest = max(longest, hi - last)
        out[r] = {"notes": count, "longest_silence_beats": round(longest / beat, 2),
                  "longest_note_beats": round(held / beat, 2)}
    return out


def accompaniment_metrics(notes: Sequence[Note], bar_ticks: int, tolerance: int = 2,
                          beat_ticks: int = 24) -> AccompanimentMetrics:
    """The metrics of a melody (role 0) with its accompaniment (roles >= 1)."""
    cr, ur = consonance(notes)
    roles = sorted({n.role for n in notes})
    end = max((n.end for n in notes), default=0)
    start = min((n.start for n in notes), default=0)
    bars = max(1.0, (end - start) / bar_ticks)
    crossed, above = crossing_shares(notes)
    melody_onsets = [n.start for n in notes if n.role == 0]
    side_onsets = np.asarray(sorted(n.start for n in notes if n.role != 0), dtype=np.int64)
    together = 0
    for t in melody_onsets:
        i = np.searchsorted(side_onsets, t - tolerance)
        together += int(i < len(side_onsets) and side_onsets[i] <= t + tolerance)
    ranges = {str(r): [min(n.pitch for n in notes if n.role == r), max(n.pitch for n in notes if n.role == r)]
              for r in roles if r != 0}
    melody = [n for n in notes if n.role == 0]
    span = [(min(n.start for n in melody), max(n.end for n in melody))] if melody else []
    presence = voice_presence(notes, span, beat_ticks, roles=[r for r in roles if r != 0]).values()
    return AccompanimentMetrics(
        cr=cr, ur=ur, dissonant=max(0.0, 1.0 - cr - ur), parallels_per_bar=parallels(notes, roles) / bars,
        crossing_share=crossed, above_melody_share=above,
        onsets_together=together / len(melody_onsets) if melody_onsets else 0.0, ranges=ranges,
        notes=sum(1 for n in notes if n.role != 0),
        longest_silence_beats=max((p["longest_silence_beats"] for p in presence), default=0.0),
        longest_note_beats=max((p["longest_note_beats"] for p in presence), default=0.0))
