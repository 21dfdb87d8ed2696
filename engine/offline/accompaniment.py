"""Offline accompaniment: a melody (a MIDI file) in, the melody with the sideman's voices under it out.

The melody's messages go through `engine.model.accompanist.Accompanist` one by one in time order,
exactly as the live mode feeds them: before each message at tick q the plan is generated up to q (the
sideman's events at q are decided before the player's message there is known), everything up to q is
committed, then the message cuts the plan and the rest is planned again. This is the live mode with a
commit window of zero: its offline upper bound. After the melody the sideman finishes at the next bar
line and rests. The melody is written back as it was played (its own times, never quantized); voice r
of the sideman plays on MIDI channel r + 1 (channel 2, 3, 4 for alto, tenor, bass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from engine.errors import SidemanError
from engine.model.accompanist import VOICES, Accompanist, PlannedEvent, expire_after_ticks, voice_constraints
from engine.model.sampler import Sampler, SamplingConfig
from engine.music.harmony import VOICE_RANGES
from engine.music.tokens import Meter, read_midi
from engine.music.vocab import DEFAULT_VOCAB, Vocab

MAX_TOKENS_PER_EVENT = 256  # a safety stop for a model that will not move time


@dataclass(frozen=True)
class AccompanySettings:
    voices: tuple[int, ...] = VOICES
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(temperature=0.9, top_p=0.95))
    ranges: tuple[tuple[int, int], ...] = VOICE_RANGES  # of voices 1-3
    key_pitch_classes: frozenset[int] | None = None
    style: str = "none"
    predict_player: bool = True  # the plan also predicts the player's next events (see Accompanist)
    consonance_guard: bool = True  # no new voice note leaves the melody with no consonant voice (Accompanist)
    voice_leading: bool = True  # no parallel fifths/octaves with a voice moving with it, no crossing (Accompanist)
    consonance_repair: bool = True  # a melody note with no consonant voice gets one at the next 16th (Accompanist)

    def __post_init__(self) -> None:
        if not self.voices or any(v not in VOICES for v in self.voices):
            raise SidemanError(f"voices must be some of {VOICES} (alto, tenor, bass), not {self.voices}")

    def constraints(self) -> dict:
        return voice_constraints(self.voices, self.ranges, self.key_pitch_classes)


@dataclass(frozen=True)
class Melody:
    messages: list[tuple[float, tuple[int, ...]]]  # (tick on the model's grid, unquantized; message bytes)
    meter: Meter
    bpm: float
    end_tick: float


@dataclass(frozen=True)
class Accompaniment:
    melody: Melody
    events: list[PlannedEvent]  # the sideman's, every note closed, in stream order
    tokens: int  # sampled
    stats: dict


def melody_from_midi(path: str | Path, vocab: Vocab = DEFAULT_VOCAB) -> Melody:
    """Every note message of every channel is the player's melody (the first tempo and metre are used)."""
    import mido

    mid = read_midi(path)
    scale = vocab.config.ticks_per_beat / mid.ticks_per_beat
    bpm, meter = 120.0, None
    now = 0
    messages = []
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "set_tempo" and not messages:
            bpm = mido.tempo2bpm(msg.tempo)
        elif msg.type == "time_signature" and meter is None:
            meter = Meter(msg.numerator, msg.denominator)
        elif msg.type in ("note_on", "note_off"):
            messages.append((now * scale, tuple(msg.bytes())))
    if not any(m[1][0] & 0xF0 == 0x90 and m[1][2] > 0 for m in messages):
        raise SidemanError(f"{path}: no notes to accompany; play or draw a melody first")
    return Melody(messages, meter or Meter(), bpm, now * scale)


def accompany(session, melody: Melody, settings: AccompanySettings = AccompanySettings(),
              vocab: Vocab = DEFAULT_VOCAB, commit_ticks: int = 0) -> Accompaniment:
    """The sideman's voices for `melody`, planned as the live mode plans them with a commit window of
    `commit_ticks` (0: the offline upper bound): before the player's message at tick q the plan reaches
    past q + window, the events before q + window are committed, then the message revises the rest, and
    nothing new is planned within a window of it; the clock passes every tick, taking out the predictions of
    the player's it passes unplayed, as the live mode's clock does."""
    planner = Accompanist(session, vocab, Sampler(settings.sampling), melody.meter, settings.voices,
                          settings.constraints(), predict_player=settings.predict_player,
                          consonance_guard=settings.consonance_guard, voice_leading=settings.voice_leading,
                          consonance_repair=settings.consonance_repair)
    planner.begin(settings.style)
    out: list[PlannedEvent] = []
    now = 0  # the clock, in ticks: it passes every tick, as the live mode's does
    expire_ticks = expire_after_ticks(60.0 / (melody.bpm * vocab.config.ticks_per_beat))

    def clock_at(tick: int) -> None:
        """What the live mode does as its clock passes `tick`: stale predictions out, the plan past the
        window, what is inside the window committed."""
        out.extend(planner.expire_predictions(tick - expire_ticks))
        planner.floor = max(planner.floor, tick + commit_ticks)
        for _ in range(MAX_TOKENS_PER_EVENT):
            if not planner.generating() or planner.position > tick + commit_ticks:
                break
            planner.step()
        out.extend(planner.commit(tick + commit_ticks))

    for tick, data in melody.messages:
        q = int(tick + 0.5)
        while now < q:
            clock_at(now)
            now += 1
        clock_at(q)
        out += planner.player(tick, data)
        planner.floor = max(planner.floor, planner.last_player_tick + commit_ticks)
    for _ in range(MAX_TOKENS_PER_EVENT * 4):  # to the next bar line, where the sideman rests
        if not planner.generating() and planner.predicted_tick is None:
            break
        now += 1
        clock_at(now)
    out += planner.withdraw_predictions()
    out += planner.commit(float("inf"))
    out += planner.close(planner.position)
    stats = vars(planner.stats).copy()
    return Accompaniment(melody, out, planner.stats.planned_tokens, stats)


def write_midi(result: Accompaniment, path: str | Path, vocab: Vocab = DEFAULT_VOCAB,
               channel_of_role: Sequence[int] = (0, 1, 2, 3), ppq: int = 480) -> None:
    """A type-0 file: the melody as it came (channel 1), the sideman's voice r on channel r + 1."""
    import mido

    k = ppq / vocab.config.ticks_per_beat
    timed: list[tuple[float, int, mido.Message]] = []
    for tick, data in result.melody.messages:
        msg = mido.Message.from_bytes(list(data))
        is_on = msg.type == "note_on" and msg.velocity > 0
        timed.append((tick * k, int(is_on), msg.copy(channel=channel_of_role[0])))
    for e in result.events:
        ch = channel_of_role[e.role]
        msg = mido.Message("note_on", channel=ch, note=e.pitch, velocity=max(1, e.velocity)) if e.on else \
            mido.Message("note_off", channel=ch, note=e.pitch, velocity=0)
        timed.append((e.tick * k, int(e.on), msg))
    timed.sort(key=lambda x: (round(x[0]), x[1]))  # at a time, note-offs first
    track = mido.MidiTrack()
    m = result.melody
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(m.bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=m.meter.numerator, denominator=m.meter.denominator,
                                  time=0))
    last = 0
    for t, _, msg in timed:
        t = int(round(t))
        track.append(msg.copy(time=t - last))
        last = t
    track.append(mido.MetaMessage("end_of_track", time=0))
    mid = mido.MidiFile(type=0, ticks_per_beat=ppq)
    mid.tracks.append(track)
    mid.save(str(path))
