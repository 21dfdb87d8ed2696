"""Offline restyling: a MIDI file's melody in, the same idea in another style out.

The file's notes (every channel) are read as one line (of notes struck together, the highest), from its
first bar line, in its first meter and tempo. It is restyled in phrases of up to 4 bars (the model's
phrase length), each as the live mode would restyle it, and written as the live mode plays it: the source
on channel 1, then from the bar after it the restyled line on channel 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import SidemanError
from engine.model.restyler import Restyler, RestyleSettings
from engine.music.melody import Melody, one_line
from engine.music.tokens import DecodedEvent, Meter, events_to_midi, read_midi
from engine.music.vocab import DEFAULT_VOCAB, Vocab

PHRASE_BARS = 4


@dataclass(frozen=True)
class SourceMelody:
    melody: Melody  # the whole file's line, from its first bar line
    bpm: float


@dataclass(frozen=True)
class Restyled:
    source: Melody
    result: Melody  # as long as the source, in its meter
    bpm: float


def melody_from_midi(path: str | Path, vocab: Vocab = DEFAULT_VOCAB) -> SourceMelody:
    """Every note of every channel as one line; the first tempo and meter; whole bars from tick 0."""
    import mido

    mid = read_midi(path)
    scale = vocab.config.ticks_per_beat / mid.ticks_per_beat
    bpm, meter = 120.0, None
    now = 0
    open_: dict[tuple[int, int], tuple[int, int]] = {}
    rows: list[tuple[int, int, int, int]] = []
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        tick = int(round(now * scale))
        if msg.type == "set_tempo" and not rows and not open_:
            bpm = mido.tempo2bpm(msg.tempo)
        elif msg.type == "time_signature" and meter is None:
            meter = Meter(msg.numerator, msg.denominator)
        elif msg.type == "note_on" and msg.velocity > 0:
            key = (msg.channel, msg.note)
            if key in open_:
                start, vel = open_.pop(key)
                rows.append((start, max(start + 1, tick), msg.note, vel))
            open_[key] = (tick, msg.velocity)
        elif msg.type in ("note_on", "note_off") and (msg.channel, msg.note) in open_:
            start, vel = open_.pop((msg.channel, msg.note))
            rows.append((start, max(start + 1, tick), msg.note, vel))
    end = int(round(now * scale))
    for (_, pitch), (start, vel) in open_.items():
        rows.append((start, max(start + 1, end), pitch, vel))
    if not rows:
        raise SidemanError(f"{path}: no notes to restyle; play or draw a melody first")
    meter = meter or Meter()
    notes = one_line(np.asarray(sorted(rows), dtype=np.int32))
    bar = meter.bar_ticks(vocab.config.ticks_per_beat)
    bars = int(notes[-1, 0]) // bar + 1  # through the bar of the last onset
    return SourceMelody(Melody(notes, meter, bars), bpm)


def phrases_of(m: Melody, vocab: Vocab = DEFAULT_VOCAB, bars: int = PHRASE_BARS) -> list[Melody]:
    """The melody in phrases of up to `bars` bars (the last may be shorter), each from its own bar line."""
    bar = m.bar_ticks(vocab)
    out = []
    for first in range(0, m.bars, bars):
        n = min(bars, m.bars - first)
        lo, hi = first * bar, (first + n) * bar
        inside = m.notes[(m.notes[:, 0] >= lo) & (m.notes[:, 0] < hi)].copy()
        inside[:, 0] -= lo
        inside[:, 1] = np.minimum(inside[:, 1], hi) - lo
        out.append(Melody(inside, m.meter, n))
    return out


def join(phrases: list[Melody], vocab: Vocab = DEFAULT_VOCAB) -> Melody:
    bar = phrases[0].bar_ticks(vocab)
    rows, at = [], 0
    for p in phrases:
        n = p.notes.copy()
        n[:, :2] += at * bar
        rows.append(n)
        at += p.bars
    return Melody(np.concatenate(rows).astype(np.int32), phrases[0].meter, at)


def restyle_melody(restyler: Restyler, source: SourceMelody, settings: RestyleSettings,
                   seed: int | None = None) -> Restyled:
    parts = []
    for k, phrase in enumerate(phrases_of(source.melody, restyler.vocab)):
        if len(phrase.notes) == 0:
            parts.append(phrase)  # a silent phrase stays silent
            continue
        parts.append(restyler.restyle(phrase, settings, seed=None if seed is None else seed + 101 * k))
    return Restyled(source.melody, join(parts, restyler.vocab), source.bpm)


def events(r: Restyled, vocab: Vocab = DEFAULT_VOCAB) -> list[DecodedEvent]:
    """The source (role 0) then, from the bar after it, the result (role 1), in time order."""
    offset = r.source.length_ticks(vocab)
    out: list[DecodedEvent] = []
    for role, m, at in ((0, r.source, 0), (1, r.result, offset)):
        for on, off, pitch, vel in m.notes.tolist():
            out.append(DecodedEvent(on + at, True, pitch, max(1, vel), role))
            out.append(DecodedEvent(off + at, False, pitch, 0, role))
    return sorted(out, key=lambda e: (e.tick, e.on))


def write_midi(r: Restyled, path: str | Path, vocab: Vocab = DEFAULT_VOCAB) -> None:
    mid = events_to_midi(events(r, vocab), vocab, r.bpm, r.source.meter,
                         end_tick=r.source.length_ticks(vocab) + r.result.length_ticks(vocab))
    mid.save(str(path))


__all__ = ["Restyled", "SourceMelody", "join", "melody_from_midi", "phrases_of", "restyle_melody", "write_midi"]
