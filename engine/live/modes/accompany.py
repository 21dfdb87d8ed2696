"""Accompaniment: while the player plays the melody, the sideman plays the lower voices with it.

The mode (`Accompany`, on the conductor thread) hands every message of the player's to its model thread
(`AccompanyPart`, a `ModelPart`), which keeps the plan (`engine.model.accompanist.Accompanist`): the
sideman's events sampled up to `lookahead_beats` ahead of the clock. Only the events inside the commit
window (at most `commit_ms` in front of the clock; `engine.live.commit_window`) are in the scheduler; they
are never changed. Each player event rolls the uncommitted plan back in the KV cache (exact rollback),
feeds the player's event and the committed events in stream order, and plans the rest again. New events are planned only past the commit
window, so the sideman answers what the player just played one window later at the earliest: that is
the mode's whole latency (at most 50 ms by default, as little as 15 where the machine keeps up), where
ReaLJam commits 4 beats ahead.

Each voice plays on its own MIDI channel (voice r on `channels[r - 1]`), so a DAW can give each voice a
track. When the player stops, the sideman finishes at the next bar line and rests; the player's next note
starts it again. Stop, panic and a preset switch close every note (`cancel`).

The model thread's commands, besides the ones every part takes (PlayerEvent, Rebase, Configure):
    Played(tick, data, arrived)   a PlayerEvent with the perf_counter time it reached the daemon
    SetVoices(config)             new accompaniment settings (voices, window, lookahead, ranges)
    Close(tick)                   end what is planned and sounding at `tick` (Stop, panic, preset switch)
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace

from engine.live.commit_window import FLOOR_MS, CommitWindow
from engine.live.modes.base import Mode, PartContext
from engine.live.part import Configure, ModelPart, PartConfig, PartStats, PlayerEvent, Rebase
from engine.model.accompanist import VOICES, Accompanist, PlannedEvent, expire_after_ticks, voice_constraints
from engine.model.sampler import Constraints
from engine.music.harmony import VOICE_RANGES

log = logging.getLogger(__name__)

VOICE_NAMES = {1: "alto", 2: "tenor", 3: "bass"}


@dataclass(frozen=True)
class AccompanyConfig:
    """The accompaniment's own settings (the preset's [accompany] table; some also by CC)."""

    voices: tuple[int, ...] = VOICES  # the sideman's roles that play: 1 alto, 2 tenor, 3 bass
    channels: tuple[int, int, int] = (1, 2, 3)  # 0-based MIDI channel of each voice (alto, tenor, bass)
    commit_ms: float = 50.0  # the window in front of the clock: fixed, or the longest the adaptive one may be
    adaptive_commit: bool = True  # the window follows the model thread's measured lag (engine.live.commit_window)
    commit_min_ms: float = FLOOR_MS  # ... and is never shorter than this
    lookahead_beats: float = 2.0  # how far ahead of the clock the plan reaches
    rest_after_beats: float = 1.0  # the player silent this long: finish at the next bar line, then rest
    ranges: tuple[tuple[int, int], ...] = VOICE_RANGES  # each voice's lowest, highest pitch
    predict_player: bool = True  # the plan also predicts the player's next events (never played)
    consonance_guard: bool = True  # no new voice note leaves the melody without a consonant voice
    voice_leading: bool = True  # no parallel fifths/octaves with a voice moving with it, no crossed voices
    consonance_repair: bool = True  # a melody note with no consonant voice for an eighth gets one (next 16th)

    def constraints(self, key_pitch_classes=None) -> dict[int, Constraints]:
        return voice_constraints(self.voices, self.ranges, key_pitch_classes)

    @classmethod
    def from_preset(cls, preset) -> "AccompanyConfig":
        a = preset.accompany
        return cls(voices=a.voices, channels=tuple(c - 1 for c in a.channels), commit_ms=a.commit_ms,
                   adaptive_commit=a.adaptive_commit, commit_min_ms=a.commit_min_ms,
                   lookahead_beats=a.lookahead_beats, rest_after_beats=a.rest_after_beats, ranges=a.ranges,
                   predict_player=a.predict_player, consonance_guard=a.consonance_guard,
                   voice_leading=a.voice_leading, consonance_repair=a.consonance_repair)


# -- the model thread's commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Played(PlayerEvent):
    arrived: float = 0.0  # perf_counter when the message reached the conductor


@dataclass(frozen=True)
class SetVoices:
    config: AccompanyConfig


@dataclass(frozen=True)
class Close:
    tick: float  # clock ticks


@dataclass
class AccompanyStats(PartStats):
    revisions: int = 0
    committed_notes: int = 0  # note-ons handed to the scheduler
    late_notes: int = 0  # ... of which were due before they were committed
    # player event reached the daemon -> the revised plan reaches past the commit window (ms): every event
    # the scheduler gets next is decided with the player's event known
    revision_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    # ... of which: waiting for the model thread (arrival -> the thread takes the message), and the
    # thread's own work from there (cut, feed, the plan's tokens up to the window)
    revision_wait_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    revision_work_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    # ... and the CPU time the thread spent on that work (time.thread_time): the work itself, where the wall
    # time above also holds the thread's waits for a core and for the GIL
    revision_cpu_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    # how long before it sounds each note-on was committed (ms), and the commit window then
    commit_lead_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    commit_window_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    step_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))  # sample + decode per token
    closes: int = 0


class AccompanyPart(ModelPart):
    """The accompaniment's model thread (see the module docstring)."""

    task = "ACCOMPANY"

    def __init__(self, session, vocab, clock, scheduler, config: PartConfig, accompany: AccompanyConfig,
                 supervisor=None, name: str = "accompany", tag_prefix: str = "") -> None:
        super().__init__(session, vocab, clock, scheduler, config, AccompanyStats(), name, supervisor)
        self.accompany = accompany
        self.window = CommitWindow(accompany.commit_ms, accompany.adaptive_commit, accompany.commit_min_ms)
        self._last_window = accompany.commit_ms  # the window at the last commit (ms)
        self.tag_prefix = tag_prefix
        self._generation = 0  # a Close starts a new tag, so a cut ends exactly what was played before
        tpb = vocab.config.ticks_per_beat
        self.planner = Accompanist(session, vocab, self._sampler, self._meter, accompany.voices,
                                   accompany.constraints(config.key_pitch_classes),
                                   rest_after_ticks=int(round(accompany.rest_after_beats * tpb)),
                                   rollback=self.rollback, predict_player=accompany.predict_player,
                                   consonance_guard=accompany.consonance_guard,
                                   voice_leading=accompany.voice_leading,
                                   consonance_repair=accompany.consonance_repair)
        self._revision_from: float | None = None  # arrival of the player event whose revision is pending
        self._revision_taken = 0.0  # perf_counter when the model thread took that event
        self._revision_cpu = 0.0  # the model thread's CPU time (time.thread_time) then
        self.state = "waiting"  # playing, resting (after the player stopped) or waiting (for the first note)
        self.last_due = 0.0  # perf_counter due time of the last event handed to the scheduler
        self.uncommitted = 0  # planned events not handed to the scheduler yet

    @property
    def tag(self) -> str:
        return f"{self.tag_prefix}a{self._generation}"

    # -- ModelPart's hooks -------------------------------------------------------------------------

    def begin_stream(self) -> None:
        self.planner.begin(self.config.style)

    def stream_position(self) -> int:
        return self.planner.encoder.position

    def generating(self) -> bool:
        p = self.planner
        playing = p.generating()
        # for other threads (status, tests): a plain attribute, never the planner's state mid-change
        self.state = "playing" if playing else "resting" if p.resting else "waiting"
        self.uncommitted = len(p.uncommitted())
        # a prediction of the player's still in the stream (at the rest bar too) is taken out when stale
        return playing or self.uncommitted > 0 or p.predicted_tick is not None

    def _ticks(self) -> tuple[float, float, float]:
        """(now, the commit horizon, the plan's horizon) in stream ticks."""
        clock = self.clock
        now = self.stream_tick(clock.tick_now())
        spt = clock.seconds_per_tick
        return (now, now + self.window.ms(time.perf_counter()) / 1000.0 / spt,
                now + self.accompany.lookahead_beats * self.vocab.config.ticks_per_beat)

    def lookahead_wait(self) -> float:
        if not self.clock.running:
            return 0.05
        now, commit, plan = self._ticks()
        pending = self.planner.uncommitted()
        if pending and pending[0].tick < commit:
            return 0.0
        predicted = self.planner.predicted_tick
        expire = expire_after_ticks(self.clock.seconds_per_tick)
        if predicted is not None and predicted < now - expire:
            return 0.0
        if self.planner.generating() and self.planner.position < plan:
            return 0.0
        next_commit = pending[0].tick - commit if pending else math.inf
        next_plan = self.planner.position - plan if self.planner.generating() else math.inf
        next_expiry = predicted + expire - now if predicted is not None else math.inf
        wait_ticks = min(next_commit, next_plan, next_expiry)
        return 0.05 if wait_ticks == math.inf else max(0.0005, wait_ticks * self.clock.seconds_per_tick)

    def step(self) -> None:
        now, commit, plan = self._ticks()
        p = self.planner
        self._send(p.expire_predictions(now - expire_after_ticks(self.clock.seconds_per_tick)))
        self._commit(commit)
        if p.generating() and p.position < plan:
            p.sampler = self._sampler
            p.floor = max(p.floor, math.ceil(commit))
            t0 = time.perf_counter()
            p.step()
            done = time.perf_counter()
            self.stats.step_ms.append((done - t0) * 1000.0)
            self.window.observe((done - t0) * 1000.0, done)  # a commit due meanwhile waited this long
            self._commit(commit)
        if self._revision_from is not None and (p.position >= commit or not p.generating()):
            # the revised plan reaches past the commit window: whatever is committed next is decided
            done = time.perf_counter()
            self.stats.revision_ms.append((done - self._revision_from) * 1000.0)
            self.stats.revision_wait_ms.append((self._revision_taken - self._revision_from) * 1000.0)
            self.stats.revision_work_ms.append((done - self._revision_taken) * 1000.0)
            self.stats.revision_cpu_ms.append((time.thread_time() - self._revision_cpu) * 1000.0)
            self._revision_from = None

    def handle(self, cmd) -> None:
        if isinstance(cmd, SetVoices):
            self._set_voices(cmd.config)
        elif isinstance(cmd, Close):
            self._close(self.stream_tick(cmd.tick))
        else:
            super().handle(cmd)

    def on_configure(self, config: PartConfig) -> None:
        self.planner.constraints = self.accompany.constraints(config.key_pitch_classes)

    def on_rebase(self, clock_tick: float) -> None:
        self._close(self.stream_tick(clock_tick))

    def on_failure(self) -> None:
        self.scheduler.cut(self.tag, wait=None)

    # -- the player --------------------------------------------------------------------------------

    def on_player(self, cmd: PlayerEvent) -> None:
        taken, cpu = time.perf_counter(), time.thread_time()
        tick = self.stream_tick(cmd.tick)
        # the floor where the commit window stands now (what the next step would set): the planner knows
        # which of the player's notes came too late for the voices to answer on the next tick
        if self.clock.running:
            self.planner.floor = max(self.planner.floor, math.ceil(self._ticks()[1]))
        n = self.planner.stats.rolled_back_tokens
        due_now = self.planner.player(tick, cmd.data)
        self.stats.revisions += 1
        self.stats.rolled_back_tokens += self.planner.stats.rolled_back_tokens - n
        self._send(due_now)
        if isinstance(cmd, Played) and self.planner.generating():
            if self._revision_from is None:  # a revision still pending keeps its first event's times
                self._revision_from, self._revision_taken = cmd.arrived, taken
                self._revision_cpu = cpu

    # -- out ---------------------------------------------------------------------------------------

    def _commit(self, before_tick: float) -> None:
        events = self.planner.commit(before_tick)
        now = time.perf_counter()
        window = self.window.ms(now)
        if events:
            # the thread's lag: the first (earliest: stream order) was due for committing a window before it
            # sounds (the shorter of this window and the last, so a window that just widened is not a lag)
            lead = (self.due(events[0].tick) - now) * 1000.0
            self.window.observe(max(0.0, min(window, self._last_window) - lead), now)
        self._last_window = window
        self._send(events, window)

    def _send(self, events: list[PlannedEvent], window: float | None = None) -> None:
        now = time.perf_counter()
        window = self.window.ms(now) if window is None else window
        for e in events:
            ch = self.accompany.channels[e.role - 1]
            data = (0x90 | ch, e.pitch, max(1, e.velocity)) if e.on else (0x80 | ch, e.pitch, 0)
            due = self.due(e.tick)
            self.scheduler.schedule(due, data, self.tag)
            self.last_due = max(self.last_due, due)
            if e.on:
                self.stats.notes_scheduled += 1
                self.stats.committed_notes += 1
                self.stats.commit_lead_ms.append((due - now) * 1000.0)
                self.stats.commit_window_ms.append(window)
                if due < now:
                    self.stats.late_notes += 1

    def _close(self, tick: float) -> None:
        """End the plan and the sideman's notes at `tick` (stream ticks): cut on the wire, closed in the stream."""
        self.scheduler.cut(self.tag, wait=None)
        self.planner.close(tick)
        self._generation += 1
        self._revision_from = None
        self.stats.closes += 1

    def _set_voices(self, config: AccompanyConfig) -> None:
        """New settings: a voice switched off ends its notes now; the plan is made again."""
        now = self.stream_tick(self.clock.tick_now())
        if set(config.voices) != set(self.accompany.voices) or config.channels != self.accompany.channels:
            self._close(now)
        self.window.configure(config.commit_ms, config.adaptive_commit, config.commit_min_ms)
        self.accompany = config
        p = self.planner
        p.voices = config.voices
        p.constraints = config.constraints(self.config.key_pitch_classes)
        p.rest_after = int(round(config.rest_after_beats * self.vocab.config.ticks_per_beat))
        p.predict_player = config.predict_player
        p.consonance_guard = config.consonance_guard
        p.voice_leading = config.voice_leading
        p.consonance_repair = config.consonance_repair


# -- the mode, on the conductor thread ------------------------------------------------------------------


class Accompany(Mode):
    """Every message of the player's to the model thread, at once; Stop and switches close the plan."""

    name = "accompany"
    task = "ACCOMPANY"

    def __init__(self, context: PartContext, preset) -> None:
        super().__init__(context, preset)
        self.accompany = AccompanyConfig.from_preset(preset)
        self.part = self._new_part()

    def _new_part(self) -> AccompanyPart:
        c = self.context
        return AccompanyPart(c.session, c.vocab, c.clock, c.scheduler, self.config, self.accompany,
                             supervisor=c.supervisor, name=f"{c.name} accompany", tag_prefix=f"{c.name}:")

    @property
    def thread(self) -> AccompanyPart:
        return self.part

    def start(self) -> None:
        self.part.start()

    def stop(self, timeout: float = 0.5) -> None:
        self.part.stop(timeout)

    def restart(self) -> None:
        self.part = self._new_part()
        self.part.start()

    def player(self, tick: float, data: tuple) -> None:
        self.part.submit(Played(tick, data, time.perf_counter()))

    def cancel(self, tick: float) -> None:
        self.context.scheduler.cut(self.part.tag, wait=None)
        self.part.submit(Close(tick))

    def clock_jump(self, tick: float) -> None:
        self.part.submit(Rebase(tick))

    def configure(self, preset, config: PartConfig) -> None:
        self.config = config
        self.part.submit(Configure(config))
        if preset is not None:
            self.set_accompany(AccompanyConfig.from_preset(preset))

    def set_accompany(self, accompany: AccompanyConfig) -> None:
        self.accompany = accompany
        self.part.submit(SetVoices(accompany))

    def control(self, name: str, value) -> bool:
        """The accompaniment's CCs: a voice on/off (value >= 64: on), the commit window, the lookahead."""
        a = self.accompany
        if name in ("voice_alto", "voice_tenor", "voice_bass"):
            role = {"voice_alto": 1, "voice_tenor": 2, "voice_bass": 3}[name]
            voices = set(a.voices) | {role} if value >= 64 else set(a.voices) - {role}
            self.set_accompany(replace(a, voices=tuple(sorted(voices))))
            return True
        if name == "commit_ms":  # CC 0-127 -> 10-200 ms (the adaptive window's longest)
            self.set_accompany(replace(a, commit_ms=10.0 + 190.0 * value / 127.0))
            return True
        if name == "lookahead":  # CC 0-127 -> 0.5-4 beats
            self.set_accompany(replace(a, lookahead_beats=0.5 + 3.5 * value / 127.0))
            return True
        return False

    def channels(self) -> list[int]:
        return sorted(set(self.accompany.channels))

    def status(self) -> dict:
        s = self.part.stats
        return {"state": self.part.state, "answers": 0, "cut_ins": 0, "ready_ms": list(s.revision_ms),
                "player_events": s.player_events, "revisions": s.revisions, "voices": list(self.accompany.voices),
                "committed_notes": s.committed_notes, "late_notes": s.late_notes,
                "commit_ms": round(s.commit_window_ms[-1], 1) if s.commit_window_ms else self.accompany.commit_ms}
