"""Offline restyling: a MIDI file's melody in, the same idea in another style out.

The file's notes (every channel) are read as one line (of notes struck together, the highest), from its
first bar line, in its first meter and tempo. It is restyled in phrases of up to 4 bars (the model's
phrase length), each as the live mode would restyle it, and written as the live mode plays it: the source
on channel 1, then from the bar after it the restyled line on channel 2 (more styles: one after the other,
on channels 3, 4, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.errors import SidemanError
from engine.model.restyler import Restyler, RestyleSettings
from engine.music.melody import Melody, one_line
from engine.music.tokens import Meter, read_midi
from engine.music.vocab import DEFAULT_VOCAB, Vocab

PHRASE_BARS = 4


@dataclass(frozen=True)
class SourceMelody:
    melody: Melody  # the whole file's line, from its first bar line
    bpm: float


@dataclass(frozen=True)
class Restyled:
    source: Melody
    results: tuple[tuple[str, Melody], ...]  # (style, the phrase restyled: as long as the source, in its meter)
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
                   seed: int | None = None, styles: tuple[str, ...] | None = None) -> Restyled:
    """The source restyled into each of `styles` (default: the settings' one), phrase by phrase."""
    results = []
    for style in styles or (settings.style,):
        s = replace(settings, style=style)
        parts = []
        for k, phrase in enumerate(phrases_of(source.melody, restyler.vocab)):
            if len(phrase.notes) == 0:
                parts.append(phrase)  # a silent phrase stays silent
                continue
            parts.append(restyler.restyle(phrase, s, seed=None if seed is None else seed + 101 * k))
        results.append((style, join(parts, restyler.vocab)))
    return Restyled(source.melody, tuple(results), source.bpm)


def write_midi(r: Restyled, path: str | Path, vocab: Vocab = DEFAULT_VOCAB, ppq: int = 480) -> None:
    """A type-1 file: track "player" (channel 1) with the source, then one track "sideman as STYLE" per style
    (channels 2, 3, ...), each from the bar after the one before, as the live mode plays them."""
    import mido

    k = ppq // vocab.config.ticks_per_beat
    length = r.source.length_ticks(vocab)
    mid = mido.MidiFile(type=1, ticks_per_beat=ppq)
    head = mido.MidiTrack()
    head.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(r.bpm), time=0))
    head.append(mido.MetaMessage("time_signature", numerator=r.source.meter.numerator,
                                 denominator=r.source.meter.denominator, time=0))
    mid.tracks.append(head)
    for i, (name, m) in enumerate((("player", r.source),) + tuple((f"sideman as {s}", x) for s, x in r.results)):
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("track_name", name=name, time=0))
        events = sorted([(on + i * length, 1, p, v) for on, _, p, v in m.notes.tolist()]
                        + [(off + i * length, 0, p, 0) for _, off, p, _ in m.notes.tolist()])
        last = 0
        for tick, on, pitch, vel in events:
            track.append(mido.Message("note_on" if on else "note_off", channel=i, note=pitch,
                                      velocity=max(1, vel) if on else 0, time=(tick - last) * k))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=((i + 1) * length - last) * k))
        mid.tracks.append(track)
    mid.save(str(path))


__all__ = ["Restyled", "SourceMelody", "join", "melody_from_midi", "phrases_of", "restyle_melody", "write_midi"]
