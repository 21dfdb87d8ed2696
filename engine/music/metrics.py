"""Musical metrics of a continuation against its prompt (no torch: usable at runtime and in eval).

All functions take note events as decoded by `engine.music.tokens` (`DecodedEvent`: tick, on, pitch,
velocity, role). Key estimation is Krumhansl-Schmuckler (correlation of the duration-weighted
pitch-class histogram with the Krumhansl-Kessler major and minor profiles).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from engine.music.tokens import DecodedEvent

MAJOR_PROFILE = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR_PROFILE = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)
MINOR_SCALE = (0, 2, 3, 5, 7, 8, 10, 11)  # natural minor plus the raised leading tone
PITCH_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@dataclass(frozen=True)
class Note:
    start: int
    end: int
    pitch: int
    velocity: int
    role: int


@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    minor: bool

    @property
    def scale(self) -> frozenset[int]:
        steps = MINOR_SCALE if self.minor else MAJOR_SCALE
        return frozenset((self.tonic + s) % 12 for s in steps)

    def __str__(self) -> str:
        return f"{PITCH_NAMES[self.tonic]} {'minor' if self.minor else 'major'}"


def notes_of(events: Iterable[DecodedEvent], role: int | None = None) -> list[Note]:
    """Pair note-ons with their note-offs; notes still open at the end are dropped."""
    open_: dict[tuple[int, int], DecodedEvent] = {}
    out: list[Note] = []
    for e in events:
        if role is not None and e.role != role:
            continue
        key = (e.role, e.pitch)
        if e.on:
            open_[key] = e
        elif key in open_:
            on = open_.pop(key)
            out.append(Note(on.tick, e.tick, e.pitch, on.velocity, e.role))
    return sorted(out, key=lambda n: (n.start, n.pitch))


def pitch_class_histogram(notes: Sequence[Note], weighted: bool = True) -> np.ndarray:
    h = np.zeros(12)
    for n in notes:
        h[n.pitch % 12] += max(n.end - n.start, 1) if weighted else 1
    return h


def estimate_key(notes: Sequence[Note]) -> Key:
    h = pitch_class_histogram(notes)
    if h.sum() == 0:
        return Key(0, False)
    best, best_r = Key(0, False), -2.0
    for tonic in range(12):
        for minor, profile in ((False, MAJOR_PROFILE), (True, MINOR_PROFILE)):
            r = np.corrcoef(h, np.roll(profile, tonic))[0, 1]
            if np.isfinite(r) and r > best_r:
                best, best_r = Key(tonic, minor), r
    return best


def in_key_ratio(notes: Sequence[Note], key: Key) -> float:
    if not notes:
        return float("nan")
    scale = key.scale
    return sum(n.pitch % 12 in scale for n in notes) / len(notes)


def key_relative_histogram(notes: Sequence[Note], key: Key) -> np.ndarray:
    """Pitch-class histogram (note counts) rotated so the tonic is 0, normalized to sum 1."""
    h = np.roll(pitch_class_histogram(notes, weighted=False), -key.tonic)
    total = h.sum()
    return h / total if total else h


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance between two normalized histograms (0 same .. 1 disjoint)."""
    return float(0.5 * np.abs(a - b).sum())


def density(notes: Sequence[Note], ticks: int, ticks_per_beat: int = 24) -> float:
    """Notes per beat over a span of `ticks`."""
    return len(notes) / max(ticks / ticks_per_beat, 1e-9)


def pitch_range(notes: Sequence[Note]) -> int:
    return max(n.pitch for n in notes) - min(n.pitch for n in notes) if notes else 0


def repetition_rate(notes: Sequence[Note], context: Sequence[Note] = (), n: int = 4) -> float:
    """Share of the continuation's interval n-grams that already occurred (in the context or earlier)."""
    def intervals(ns: Sequence[Note]) -> list[int]:
        p = [x.pitch for x in ns]
        return [b - a for a, b in zip(p, p[1:])]

    seen: set[tuple[int, ...]] = set()
    ctx = intervals(context)
    for i in range(len(ctx) - n + 1):
        seen.add(tuple(ctx[i:i + n]))
    cont = intervals(notes)
    total = repeats = 0
    for i in range(len(cont) - n + 1):
        g = tuple(cont[i:i + n])
        repeats += g in seen
        total += 1
        seen.add(g)
    return repeats / total if total else float("nan")


@dataclass(frozen=True)
class ContinuationMetrics:
    in_key: float
    key_hist: np.ndarray  # key-relative pitch-class histogram of the continuation (sums to 1)
    density_ratio: float  # notes per beat, continuation / prompt
    range_ratio: float  # pitch range, continuation / prompt
    repetition: float
    n_notes: int


def continuation_metrics(prompt: Sequence[Note], prompt_ticks: int, continuation: Sequence[Note],
                         continuation_ticks: int) -> ContinuationMetrics:
    key = estimate_key(prompt)
    d_prompt = density(prompt, prompt_ticks)
    r_prompt = pitch_range(prompt)
    return ContinuationMetrics(
        in_key=in_key_ratio(continuation, key),
        key_hist=key_relative_histogram(continuation, key),
        density_ratio=density(continuation, continuation_ticks) / d_prompt if d_prompt else float("nan"),
        range_ratio=pitch_range(continuation) / r_prompt if r_prompt else float("nan"),
        repetition=repetition_rate(continuation, prompt),
        n_notes=len(continuation),
    )


# -- what a listener hears of an answer beside its phrase --------------------------------------------

OCTAVE = 12


def peak_polyphony(notes: Sequence[Note]) -> int:
    """The most notes sounding at once (a note ending at a tick no longer sounds there)."""
    edges = sorted([(n.start, 1) for n in notes] + [(n.end, -1) for n in notes], key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


@dataclass(frozen=True)
class ListenerMetrics:
    """An answer beside its phrase, as a listener hears it (NaN where the answer is empty)."""

    out_of_range: float  # share of the answer's notes more than an octave outside the phrase's range
    register_distance: float  # |median pitch of the answer - median pitch of the phrase|, semitones
    peak_polyphony: int  # the answer's
    phrase_polyphony: int  # the phrase's
    density_ratio: float  # notes per beat, answer / phrase
    held_over_bar: float  # share of the answer's notes held longer than a bar
    empty: bool

    @property
    def thicker(self) -> bool:
        """Thicker than the phrase plus one voice."""
        return self.peak_polyphony > self.phrase_polyphony + 1


def listener_metrics(phrase: Sequence[Note], phrase_ticks: int, answer: Sequence[Note], answer_ticks: int,
                     bar_ticks: int, ticks_per_beat: int = 24) -> ListenerMetrics:
    if not answer or not phrase:
        nan = float("nan")
        return ListenerMetrics(nan, nan, peak_polyphony(answer), peak_polyphony(phrase), nan, nan, not answer)
    low = min(n.pitch for n in phrase) - OCTAVE
    high = max(n.pitch for n in phrase) + OCTAVE
    d_phrase = density(phrase, phrase_ticks, ticks_per_beat)
    return ListenerMetrics(
        out_of_range=sum(not low <= n.pitch <= high for n in answer) / len(answer),
        register_distance=float(abs(np.median([n.pitch for n in answer]) - np.median([n.pitch for n in phrase]))),
        peak_polyphony=peak_polyphony(answer),
        phrase_polyphony=peak_polyphony(phrase),
        density_ratio=density(answer, answer_ticks, ticks_per_beat) / d_phrase if d_phrase else float("nan"),
        held_over_bar=sum(n.end - n.start > bar_ticks for n in answer) / len(answer),
        empty=False,
    )
