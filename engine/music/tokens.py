"""Streaming tokenizer: MIDI events <-> tokens, one event at a time, both ways.

One state machine, `StreamEncoder`, turns events into tokens the moment they arrive; the offline
encoders (`encode_events`, `encode_midi`) feed it the same way, so online and offline tokenization of
the same events give identical tokens by construction. `StreamDecoder` is the exact inverse on the
grid: tokens -> timed events, each the moment its token is known.

Rules, applied identically online and offline (see tests/test_tokens.py):
- a time in ticks (float, from the clock or a file) is rounded to the nearest tick, half up; an event
  that would land before the current position (a clock step back) is placed at the position;
- a bar line is written (BAR) when the position reaches it, before the events at that tick;
- velocity 0 note-on is a note-off; a note-off for a pitch not sounding is dropped and counted;
- a note-on for a pitch already sounding (same role) closes it first (OFF then ON) and the note then
  ends at the *last* of its note-offs (a depth count), so overlapping same-pitch notes stay legato;
- a note-off on the same tick as its note-on is moved one tick later (notes last at least one tick);
- sustain pedal (CC 64 >= 64) holds note-offs until the pedal is released, when they are written;
- CC 120 / 123 (all sound / notes off) closes every sounding note of that role;
- sysex, clock, and channel messages the vocabulary does not model are ignored and counted.
"""

from __future__ import annotations

import copy
import io
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from engine.errors import MidiFileError, TokenizerError
from engine.music.vocab import DEFAULT_VOCAB, Vocab

PEDAL_CC = 64
ALL_SOUND_OFF_CC = 120
ALL_NOTES_OFF_CC = 123


def quantize(tick: float) -> int:
    """Round a time in ticks to the grid, half up (with a tolerance for float noise)."""
    return math.floor(tick + 0.5 + 1e-7)


@dataclass(frozen=True)
class NoteEvent:
    """A note event on the grid: what the decoder yields and the offline encoder takes.

    `tick` may be a float on input (it is quantized); the decoder always yields ints.
    """

    tick: float
    on: bool
    pitch: int
    velocity: int = 64
    role: int = 0


@dataclass(frozen=True)
class Meter:
    numerator: int = 4
    denominator: int = 4

    def bar_ticks(self, ticks_per_beat: int) -> int:
        return max(1, ticks_per_beat * 4 * self.numerator // self.denominator)


@dataclass
class EncoderStats:
    """What the encoder dropped or ignored, by reason: nothing is dropped silently."""

    counts: Counter = field(default_factory=Counter)

    def count(self, reason: str) -> None:
        self.counts[reason] += 1


class StreamEncoder:
    """Events in, tokens out, one event at a time. Not thread-safe: one owner feeds it."""

    def __init__(
        self,
        vocab: Vocab = DEFAULT_VOCAB,
        meter: Meter = Meter(),
        bar_origin: int = 0,
        sustain_pedal: bool = True,
    ) -> None:
        self.vocab = vocab
        self.tpb = vocab.config.ticks_per_beat
        self.sustain_pedal = sustain_pedal
        self.position = 0  # the tick the token stream has reached
        self.bar_ticks = meter.bar_ticks(self.tpb)
        self.next_bar = bar_origin  # the next bar line not yet written
        self.last_bar: int | None = None  # the last bar line written
        self.role: int | None = None  # the role last written
        self.vel_bin: int | None = None  # the velocity bin last written
        self.depth: dict[tuple[int, int], int] = {}  # (role, pitch) -> note-ons awaiting note-off
        self.on_tick: dict[tuple[int, int], int] = {}  # (role, pitch) -> tick of its note-on
        self.pedal_down: set[int] = set()  # roles with the sustain pedal down
        self.pedal_held: set[tuple[int, int]] = set()  # notes released while the pedal was down
        self.stats = EncoderStats()

    def copy(self) -> "StreamEncoder":
        """An independent copy sharing the vocabulary (deepcopy costs ~10x as much: it copies the vocabulary;
        a live revision copies the encoder twice)."""
        out = copy.copy(self)
        out.depth, out.on_tick = dict(self.depth), dict(self.on_tick)
        out.pedal_down, out.pedal_held = set(self.pedal_down), set(self.pedal_held)
        out.stats = EncoderStats(Counter(self.stats.counts))
        return out

    # ---- stream framing -----------------------------------------------------------------
    def begin(self, style: str = "none", task: str = "CONTINUE") -> list[int]:
        v = self.vocab
        return [v.bos, v.task(task), v.style(style)]

    def turn(self) -> list[int]:
        return [self.vocab.turn]

    def finish(self, tick: float | None = None, eos: bool = True) -> list[int]:
        """Close every sounding note (at `tick`, default the position) and optionally end the stream."""
        out = self.advance_to(tick) if tick is not None else []
        for role, pitch in sorted(self.depth):
            out += self._release(self.position, role, pitch)
        self.pedal_held.clear()
        self.pedal_down.clear()
        if eos:
            out.append(self.vocab.eos)
        return out

    @property
    def sounding(self) -> set[tuple[int, int]]:
        """(role, pitch) of the notes sounding in the token stream."""
        return set(self.depth)

    # ---- time ---------------------------------------------------------------------------
    def advance_to(self, tick: float) -> list[int]:
        """Move the position to `tick` (quantized), writing shifts and bar lines on the way."""
        target = max(quantize(tick), self.position)
        v = self.vocab
        out: list[int] = []
        while self.position < target or self.next_bar == self.position:
            if self.next_bar == self.position:
                out.append(v.bar)
                self.last_bar = self.position
                self.next_bar += self.bar_ticks
                continue
            stop = min(target, self.next_bar) if self.next_bar > self.position else target
            step = min(stop - self.position, v.config.max_shift)
            out.append(v.shift(step))
            self.position += step
        return out

    def set_meter(self, tick: float, meter: Meter) -> list[int]:
        """A new meter from `tick` on, with a bar line there."""
        out = self.advance_to(tick)
        self.bar_ticks = meter.bar_ticks(self.tpb)
        if self.last_bar == self.position:  # the bar line here is written already
            self.next_bar = self.position + self.bar_ticks
        else:
            self.next_bar = self.position
            out += self.advance_to(self.position)
        return out

    def skip_silence(self, tick: float, keep_bars: int) -> int:
        """Before an event at `tick` after a long silence (nothing sounding): move the position on by
        whole bars, so that at most `keep_bars` empty bars are written (a model never saw minutes of
        rests). Returns the ticks skipped; the bar phase is kept."""
        bar = self.bar_ticks
        if self.depth or quantize(tick) - self.position <= (keep_bars + 1) * bar:
            return 0
        target_bar = (quantize(tick) // bar) * bar - keep_bars * bar
        jump = target_bar - self.next_bar
        if jump > 0 and jump % bar == 0:
            self.position += jump
            self.next_bar += jump
            return jump
        return 0

    # ---- events -------------------------------------------------------------------------
    def note_on(self, tick: float, pitch: int, velocity: int, role: int = 0) -> list[int]:
        if not 0 <= pitch <= 127 or not 0 <= velocity <= 127:
            self.stats.count("note_out_of_range")
            return []
        if velocity == 0:
            return self.note_off(tick, pitch, role)
        if not 0 <= role < self.vocab.config.n_roles:
            raise TokenizerError(f"role {role} out of range 0..{self.vocab.config.n_roles - 1}")
        out = self.advance_to(tick)
        key = (role, pitch)
        if key in self.depth:
            if key in self.pedal_held:  # re-struck while the pedal holds it: close, strike anew
                self.pedal_held.discard(key)
                self.depth[key] = 0
            else:  # overlapping same-pitch note: retrigger, end at the last note-off
                self.stats.count("overlapping_note_on")
            if self.position <= self.on_tick[key]:  # a note lasts at least one tick
                out += self.advance_to(self.on_tick[key] + 1)
            out += self._write_off(role, pitch)
        out += self._write_role(role)
        vel_bin = self.vocab.velocity_bin(velocity)
        if vel_bin != self.vel_bin:
            out.append(self.vocab.velocity(vel_bin))
            self.vel_bin = vel_bin
        out.append(self.vocab.note_on(pitch))
        self.depth[key] = self.depth.get(key, 0) + 1
        self.on_tick[key] = self.position
        return out

    def note_off(self, tick: float, pitch: int, role: int = 0) -> list[int]:
        key = (role, pitch)
        if key not in self.depth or key in self.pedal_held:
            self.stats.count("note_off_without_note_on")
            return []
        if self.depth[key] > 1:  # an earlier overlapping note-on: the note goes on
            self.depth[key] -= 1
            return []
        if role in self.pedal_down:
            self.pedal_held.add(key)
            return []
        return self._release(tick, role, pitch)

    def control(self, tick: float, number: int, value: int, role: int = 0) -> list[int]:
        if number == PEDAL_CC and self.sustain_pedal:
            if value >= 64:
                self.pedal_down.add(role)
                return []
            self.pedal_down.discard(role)
            out: list[int] = []
            for key in sorted(k for k in self.pedal_held if k[0] == role):
                self.pedal_held.discard(key)
                out += self._release(tick, *key)
            return out
        if number in (ALL_SOUND_OFF_CC, ALL_NOTES_OFF_CC):
            out = []
            self.pedal_held -= {k for k in self.pedal_held if k[0] == role}
            for key in sorted(k for k in self.depth if k[0] == role):
                out += self._release(tick, *key)
            return out
        self.stats.count("control_change_ignored")
        return []

    def message(self, tick: float, data: Sequence[int], role: int = 0) -> list[int]:
        """One complete MIDI message as bytes (a live port's message). Odd input is counted, not raised."""
        if not data:
            self.stats.count("empty_message")
            return []
        status = data[0]
        if status >= 0xF0:
            self.stats.count("sysex" if status == 0xF0 else "system_message")
            return []
        if status < 0x80 or any(b > 0x7F for b in data[1:]):
            self.stats.count("malformed_message")
            return []
        kind = status & 0xF0
        expected = 2 if kind in (0xC0, 0xD0) else 3
        if len(data) != expected:
            self.stats.count("malformed_message")
            return []
        if kind == 0x90:
            return self.note_on(tick, data[1], data[2], role)
        if kind == 0x80:
            return self.note_off(tick, data[1], role)
        if kind == 0xB0:
            return self.control(tick, data[1], data[2], role)
        self.stats.count("channel_message_ignored")
        return []

    def observe(self, token: int) -> None:
        """Follow a token written by someone else into the same stream (a generated response), so
        that the next event is encoded from the right position, role, velocity and bar grid."""
        v = self.vocab
        t = int(token)
        if v.is_shift(t):
            self.position += v.shift_ticks(t)
        elif t == v.bar:
            self.last_bar = self.position
            self.next_bar = self.position + self.bar_ticks
        elif v.is_role(t):
            self.role = t - v.role_base
        elif v.is_velocity(t):
            self.vel_bin = t - v.vel_base
        elif v.is_note_on(t) and self.role is not None:
            key = (self.role, v.pitch_of(t))
            self.depth[key] = 1
            self.on_tick[key] = self.position
        elif v.is_note_off(t) and self.role is not None:
            key = (self.role, v.pitch_of(t))
            self.depth.pop(key, None)
            self.on_tick.pop(key, None)
            self.pedal_held.discard(key)

    # ---- internals ----------------------------------------------------------------------
    def _release(self, tick: float, role: int, pitch: int) -> list[int]:
        key = (role, pitch)
        target = quantize(tick)
        if target <= self.on_tick[key]:  # a note lasts at least one tick
            target = self.on_tick[key] + 1
        out = self.advance_to(target)
        out += self._write_off(role, pitch)
        del self.depth[key]
        del self.on_tick[key]
        return out

    def _write_role(self, role: int) -> list[int]:
        if role == self.role:
            return []
        self.role = role
        return [self.vocab.role(role)]

    def _write_off(self, role: int, pitch: int) -> list[int]:
        return self._write_role(role) + [self.vocab.note_off(pitch)]


@dataclass(frozen=True)
class DecodedEvent:
    tick: int
    on: bool
    pitch: int
    velocity: int
    role: int


class StreamDecoder:
    """Tokens in, timed note events out, one token at a time: the inverse of `StreamEncoder`.

    Tokens that make no sense in the current state (a note-off for a silent pitch) are counted in
    `invalid` and produce nothing, so a sampled stream can never leave a note hanging or doubled.
    """

    def __init__(self, vocab: Vocab = DEFAULT_VOCAB) -> None:
        self.vocab = vocab
        self.position = 0
        self.role = 0
        self.velocity = vocab.bin_velocity(vocab.config.velocity_bins // 2)
        self.sounding: set[tuple[int, int]] = set()
        self.style: str | None = None
        self.task: str | None = None
        self.bars: list[int] = []  # ticks of the bar lines seen
        self.ended = False
        self.invalid = 0

    def copy(self) -> "StreamDecoder":
        """An independent copy sharing the vocabulary."""
        out = copy.copy(self)
        out.sounding, out.bars = set(self.sounding), list(self.bars)
        return out

    def feed(self, token: int) -> list[DecodedEvent]:
        v = self.vocab
        t = int(token)
        if v.is_shift(t):
            self.position += v.shift_ticks(t)
        elif v.is_note_on(t):
            pitch = v.pitch_of(t)
            out = []
            if (self.role, pitch) in self.sounding:  # retrigger: close it first
                out.append(DecodedEvent(self.position, False, pitch, 0, self.role))
            self.sounding.add((self.role, pitch))
            out.append(DecodedEvent(self.position, True, pitch, self.velocity, self.role))
            return out
        elif v.is_note_off(t):
            pitch = v.pitch_of(t)
            if (self.role, pitch) not in self.sounding:
                self.invalid += 1
                return []
            self.sounding.discard((self.role, pitch))
            return [DecodedEvent(self.position, False, pitch, 0, self.role)]
        elif v.is_role(t):
            self.role = t - v.role_base
        elif v.is_velocity(t):
            self.velocity = v.bin_velocity(t - v.vel_base)
        elif t == v.bar:
            self.bars.append(self.position)
        elif v.is_style(t):
            self.style = v.config.styles[t - v.style_base]
        elif v.is_task(t):
            self.task = v.name(t)
        elif t == v.eos:
            self.ended = True
        elif not 0 <= t < v.size:
            raise TokenizerError(f"token {t} out of range 0..{v.size - 1}")
        return []

    def feed_all(self, tokens: Iterable[int]) -> list[DecodedEvent]:
        out: list[DecodedEvent] = []
        for t in tokens:
            out += self.feed(t)
        return out

    def finish(self) -> list[DecodedEvent]:
        """Note-offs at the current position for every note still sounding."""
        out = [DecodedEvent(self.position, False, p, 0, r) for r, p in sorted(self.sounding)]
        self.sounding.clear()
        return out


# ---- offline: event lists ----------------------------------------------------------------


def encode_events(
    events: Iterable[NoteEvent],
    vocab: Vocab = DEFAULT_VOCAB,
    style: str = "none",
    task: str = "CONTINUE",
    meter: Meter = Meter(),
    bar_origin: int = 0,
    end_tick: float | None = None,
) -> list[int]:
    """Tokens of a whole list of events, in the order given (a file's order, or a live order)."""
    enc = StreamEncoder(vocab, meter, bar_origin)
    out = enc.begin(style, task)
    for e in events:
        out += enc.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else enc.note_off(e.tick, e.pitch, e.role)
    return out + enc.finish(end_tick)


def decode_events(tokens: Iterable[int], vocab: Vocab = DEFAULT_VOCAB, close: bool = True) -> list[DecodedEvent]:
    dec = StreamDecoder(vocab)
    out = dec.feed_all(tokens)
    return out + dec.finish() if close else out


def canonical_order(events: Iterable[NoteEvent]) -> list[NoteEvent]:
    """Sort events of a score (no arrival order): by tick, note-offs first, then role and pitch."""
    return sorted(events, key=lambda e: (quantize(e.tick), e.on, e.role, e.pitch))


def accompaniment_order(events: Iterable[NoteEvent]) -> list[NoteEvent]:
    """Sort events of a score for accompaniment: at each tick the sideman's events (roles 1..) come
    before the player's (role 0), so the sideman's notes at a tick are decided before the player's notes
    there are known, as a live sideman must decide them (zero logical latency). Within a tick, role by
    role (the fewest role tokens), note-offs first, then by pitch."""
    return sorted(events, key=lambda e: (quantize(e.tick), e.role == 0, e.role, e.on, e.pitch))


def event_order(task: str):
    """The order a task's stream puts a score's events in."""
    return accompaniment_order if task.upper() == "ACCOMPANY" else canonical_order


# ---- offline: MIDI files -----------------------------------------------------------------


def read_midi(source: str | Path | bytes) -> "mido.MidiFile":  # noqa: F821
    import mido

    try:
        if isinstance(source, (bytes, bytearray)):
            return mido.MidiFile(file=io.BytesIO(source))
        return mido.MidiFile(str(source))
    except FileNotFoundError:
        raise MidiFileError(f"{source}: no such MIDI file") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise MidiFileError(f"{source if not isinstance(source, (bytes, bytearray)) else 'MIDI data'}: "
                            f"not a valid MIDI file ({exc}); export it again as a Standard MIDI File") from None


def encode_midi(
    source: "str | Path | bytes | mido.MidiFile",  # noqa: F821
    vocab: Vocab = DEFAULT_VOCAB,
    style: str = "none",
    task: str = "CONTINUE",
    role_of_channel: dict[int, int] | None = None,
    eos: bool = True,
) -> tuple[list[int], StreamEncoder]:
    """Tokens of a Standard MIDI File, events in the file's order (tracks merged by time).

    `role_of_channel` maps MIDI channel -> role; by default every channel is the player's (role 0).
    Returns the tokens and the encoder (its `stats` say what was ignored).
    """
    import mido

    mid = source if isinstance(source, mido.MidiFile) else read_midi(source)
    if mid.type == 2:
        raise MidiFileError("type 2 MIDI files (independent sequences) are not supported; save as type 0 or 1")
    scale = vocab.config.ticks_per_beat / mid.ticks_per_beat
    enc = StreamEncoder(vocab)
    out = enc.begin(style, task)
    now = 0
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        tick = now * scale
        if msg.is_meta:
            if msg.type == "time_signature":
                out += enc.set_meter(tick, Meter(msg.numerator, msg.denominator))
            continue
        role = 0 if role_of_channel is None else role_of_channel.get(getattr(msg, "channel", 0), None)
        if role is None:
            enc.stats.count("channel_not_mapped")
            continue
        out += enc.message(tick, msg.bytes(), role)
    return out + enc.finish(now * scale, eos=eos), enc


def events_to_midi(
    events: Sequence[DecodedEvent],
    vocab: Vocab = DEFAULT_VOCAB,
    bpm: float = 120.0,
    meter: Meter = Meter(),
    channel_of_role: Sequence[int] = (0, 1, 2, 3),
    end_tick: int | None = None,
    ppq: int = 480,
) -> "mido.MidiFile":  # noqa: F821
    """A type-0 MIDI file (one track keeps the exact event order); role r plays on channel_of_role[r]."""
    import mido

    if ppq % vocab.config.ticks_per_beat:
        raise ValueError(f"ppq {ppq} must be a multiple of {vocab.config.ticks_per_beat}")
    k = ppq // vocab.config.ticks_per_beat
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=meter.numerator, denominator=meter.denominator, time=0))
    last = 0
    for e in events:
        ch = channel_of_role[e.role]
        kind = "note_on" if e.on else "note_off"
        track.append(mido.Message(kind, channel=ch, note=e.pitch, velocity=e.velocity if e.on else 0,
                                  time=(e.tick - last) * k))
        last = e.tick
    end = max(last, end_tick if end_tick is not None else last)
    track.append(mido.MetaMessage("end_of_track", time=(end - last) * k))
    mid = mido.MidiFile(type=0, ticks_per_beat=ppq)
    mid.tracks.append(track)
    return mid


def tokens_to_midi(tokens: Sequence[int], vocab: Vocab = DEFAULT_VOCAB, bpm: float = 120.0,
                   meter: Meter = Meter()) -> "mido.MidiFile":  # noqa: F821
    dec = StreamDecoder(vocab)
    events = dec.feed_all(tokens) + dec.finish()
    return events_to_midi(events, vocab, bpm, meter, end_tick=dec.position)
