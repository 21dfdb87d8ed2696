"""The machinery every mode shares: a model thread that owns one session and plays one part.

A `ModelPart` is a thread with an inbox. It owns the model session (KV cache), the token stream (the
encoder), the grammar state and the sampler, and it turns generated notes into scheduler events under
its part's tag. Modes subclass it with their own commands and their own `step()`; what is written
once here:

- the inbox: `submit()`, `sync()`, `stop()`; the loop that drains it, handles each command, and calls
  the mode's `step()` while the mode has something to generate and the lookahead allows;
- the player's events into the stream (encoded as role 0 and prefilled at once, so the model is up to
  date when the mode's turn comes), a long silence shortened to SILENCE_SKIP_BARS empty bars;
- stream ticks vs clock ticks: the token stream never goes back in time, the clock may (MIDI Start),
  so stream tick = clock tick + `offset`, a whole number of bars (`rebase`);
- exact rollback of the session (re-feeding the history past the cache's reach);
- notes to the scheduler: due = clock.time_at(tick), bytes on the part's channel, under a tag;
- live configuration (sampling and constraints) and failure reporting to the supervisor.

Commands every part understands: PlayerEvent, Rebase, Configure (and the private stop and sync).
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from engine.model.grammar import GrammarState
from engine.model.sampler import Constraints, Sampler, SamplingConfig
from engine.music.tokens import Meter as TokenMeter
from engine.music.tokens import StreamEncoder
from engine.music.vocab import PLAYER, Vocab

log = logging.getLogger(__name__)

SILENCE_SKIP_BARS = 2  # a gap longer than this many empty bars is shortened in the stream
PART_NICE = 10  # a part works ahead of the music; the threads that keep time come first ...
PART_NICE_BESIDE_REALTIME = 0  # ... unless the scheduler runs SCHED_FIFO: it wins the core anyway


def part_nice(scheduler) -> int:
    """The model thread's nice value. With a SCHED_FIFO scheduler, nice 0: the realtime thread keeps time
    whatever else runs, and the part holds its own against other programs (at nice 10 beside two busy
    nice-0 programs it got a tenth of a core and the accompaniment fell apart; docs/benchmarks.md). With a
    normal-priority scheduler, nice 10, so the scheduler's last-millisecond spin wins the core."""
    return PART_NICE_BESIDE_REALTIME if getattr(scheduler, "realtime", False) else PART_NICE


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread a nice value (Linux: per thread; needs no privilege to lower priority).

    On a machine with few cores the decode steps and the scheduler's last-millisecond spin compete for
    a core; at equal priority the kernel can leave the scheduler waiting for a whole time slice
    (several ms) and a note misses its time. Best effort: ignored where unsupported.
    """
    if not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError) as exc:
        log.debug("could not lower the part thread's priority: %s", exc)


# -- configuration and the commands every part takes ---------------------------------------------------


@dataclass(frozen=True)
class PartConfig:
    channel: int = 0  # 0-based MIDI output channel
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    low: int = 21
    high: int = 108
    key_pitch_classes: frozenset[int] | None = None
    max_polyphony: int = 8
    lookahead_beats: float = 4.0
    style: str = "none"
    extra_voices: int | None = 1  # call and response: the answer at most this many voices thicker than the phrase
    longest_note_bars: int | None = 1  # call and response: no answer note longer than this or the phrase's longest

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p, self.seed)

    def constraints(self) -> Constraints:
        return Constraints(self.key_pitch_classes, self.low, self.high, self.max_polyphony)

    @classmethod
    def from_preset(cls, preset, style: str = "none") -> "PartConfig":
        c, s = preset.constraints, preset.sampling
        return cls(
            channel=preset.channels.output_index,
            temperature=s.temperature,
            top_k=s.top_k,
            top_p=s.top_p,
            seed=s.seed,
            low=c.low,
            high=c.high,
            key_pitch_classes=c.key.pitch_classes() if c.key is not None else None,
            max_polyphony=c.max_polyphony,
            style=style,
            extra_voices=preset.response.extra_voices,
            longest_note_bars=preset.response.longest_note_bars,
        )


@dataclass(frozen=True)
class PlayerEvent:
    tick: float  # clock ticks
    data: tuple


@dataclass(frozen=True)
class Rebase:
    """The clock jumped (MIDI Start, Song Position): realign stream ticks."""

    clock_tick: float


@dataclass(frozen=True)
class Configure:
    config: PartConfig


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Sync:
    done: threading.Event


def is_control(cmd) -> bool:
    """Settings and sync points: commands that change nothing in the stream."""
    return isinstance(cmd, (Configure, _Sync))


# -- what a part needs from its collaborators ------------------------------------------------------------


class Session(Protocol):
    """engine.model.session.ModelSession's interface."""

    max_rollback: int

    @property
    def position(self) -> int: ...

    @property
    def logits(self) -> torch.Tensor | None: ...

    @property
    def min_rollback_position(self) -> int: ...

    @property
    def history(self) -> list[int]: ...

    def feed(self, tokens) -> torch.Tensor | None: ...

    def append(self, token: int) -> torch.Tensor: ...

    def rollback(self, pos: int) -> None: ...

    def reset(self) -> None: ...


class ClockLike(Protocol):
    running: bool
    meter: object

    def tick_now(self) -> float: ...

    def time_at(self, tick: float) -> float: ...

    @property
    def seconds_per_tick(self) -> float: ...


class SchedulerLike(Protocol):
    def schedule(self, due: float, data, tag: str = "") -> None: ...

    def cut(self, tag: str, wait: float | None = 1.0) -> None: ...


@dataclass
class PartStats:
    """What every part counts; a mode's stats add its own fields."""

    player_events: int = 0  # the player's messages handed to the encoder
    player_tokens: int = 0
    rolled_back_tokens: int = 0
    refeeds: int = 0  # rollbacks past the cache's reach, done by re-feeding the history
    notes_scheduled: int = 0


# -- the thread ------------------------------------------------------------------------------------------


class ModelPart(threading.Thread):
    """A model thread (see the module docstring). Subclasses implement `handle`, `generating`,
    `lookahead_wait` and `step`; `supervisor(name, exc)` hears if the thread dies."""

    def __init__(self, session: Session, vocab: Vocab, clock: ClockLike, scheduler: SchedulerLike,
                 config: PartConfig, stats: PartStats, name: str,
                 supervisor: Callable[[str, BaseException], None] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self.session = session
        self.vocab = vocab
        self.clock = clock
        self.scheduler = scheduler
        self.config = config
        self.stats = stats
        self.error: BaseException | None = None
        self._supervisor = supervisor
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._halted = False
        meter = clock.meter
        self._meter = TokenMeter(meter.numerator, meter.denominator)
        self._bar_ticks = self._meter.bar_ticks(vocab.config.ticks_per_beat)
        self._encoder = StreamEncoder(vocab, self._meter)
        self._offset = 0  # stream tick - clock tick
        self._pending: list[int] = []  # tokens encoded but not yet fed
        self._last_token: int | None = None
        self._grammar = GrammarState(vocab, self._meter, allow_eos=False)
        self._constraints = config.constraints()
        self._sampler = Sampler(config.sampling())

    # -- any thread ------------------------------------------------------------------------------

    def submit(self, command) -> None:
        self._inbox.put(command)

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until every command submitted before this one has been handled (tests, benchmarks)."""
        done = threading.Event()
        self._inbox.put(_Sync(done))
        return done.wait(timeout)

    def stop(self, timeout: float = 1.0) -> None:
        self._inbox.put(_Stop())
        if self.is_alive():
            self.join(timeout)

    # -- what a mode implements --------------------------------------------------------------------

    def handle(self, cmd) -> None:
        """A command of the mode's own (the ones every part takes are handled before)."""
        raise TypeError(f"{type(self).__name__} does not take {type(cmd).__name__}")

    def generating(self) -> bool:
        """Whether there is something to generate now."""
        return False

    def lookahead_wait(self) -> float:
        """Seconds to wait before the next step (0: go on)."""
        return 0.0

    def waited(self, t0: float) -> None:
        """Called after a wait for the lookahead that began at perf_counter `t0`."""

    def step(self) -> None:
        """Sample and play one token."""

    def begin_stream(self) -> None:
        """A fresh session and the stream's header (BOS, task, style)."""
        self.session.reset()
        self._pending = self._encoder.begin(self.config.style)
        self._flush()

    def stream_position(self) -> int:
        """The tick the token stream has reached."""
        return self._encoder.position

    def on_configure(self, config: PartConfig) -> None:
        """New settings arrived (before they take effect)."""

    def on_rebase(self, clock_tick: float) -> None:
        """The clock jumped (before the stream is realigned)."""

    def on_failure(self) -> None:
        """The thread is dying of an exception: close what the mode has scheduled."""

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> None:
        lower_thread_priority(part_nice(self.scheduler))
        try:
            self.begin_stream()
            while not self._halted:
                if not self.generating():
                    self._wait(0.1)
                    continue
                self._drain()
                if self._halted or not self.generating():
                    continue
                wait = self.lookahead_wait()
                if wait > 0:
                    t0 = time.perf_counter()
                    self._wait(min(wait, 0.05))
                    self.waited(t0)
                    continue
                self.step()
        except BaseException as exc:  # noqa: BLE001 - recorded, notes closed, supervisor told
            self.error = exc
            log.exception("%s thread failed", self.name)
            self.on_failure()
            if self._supervisor is not None:
                self._supervisor(self.name, exc)

    def _wait(self, timeout: float) -> None:
        try:
            self._dispatch(self._inbox.get(timeout=timeout))
        except queue.Empty:
            pass
        self._drain()

    def _drain(self) -> None:
        batch = []
        while True:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        for i, cmd in enumerate(batch):
            if self.superseded(cmd, batch[i + 1:]):
                continue
            self._dispatch(cmd)
        self._flush()

    def superseded(self, cmd, later: list) -> bool:
        """Whether `cmd` can be skipped because of the commands that came after it in one batch."""
        return False

    def _dispatch(self, cmd) -> None:
        if isinstance(cmd, PlayerEvent):
            self.stats.player_events += 1
            self.on_player(cmd)
        elif isinstance(cmd, Rebase):
            self.on_rebase(cmd.clock_tick)
            bar = self._bar_ticks
            self._offset = int(math.ceil((self.stream_position() - cmd.clock_tick) / bar - 1e-9)) * bar
        elif isinstance(cmd, Configure):
            self.on_configure(cmd.config)
            self.config = cmd.config
            self._constraints = cmd.config.constraints()
            self._sampler = Sampler(cmd.config.sampling())
        elif isinstance(cmd, _Stop):
            self._halted = True
        elif isinstance(cmd, _Sync):
            self._flush()
            cmd.done.set()
        else:
            self.handle(cmd)

    # -- the stream ----------------------------------------------------------------------------------

    def on_player(self, cmd: PlayerEvent) -> None:
        """The player's message into the stream (a mode may first end what it plays)."""
        self.encode_player(self.stream_tick(cmd.tick), cmd.data)

    def encode_player(self, tick: float, data: tuple, deferred: list[tuple[float, tuple]] = (),
                      turn: bool = False) -> None:
        """The player's message `data` at stream `tick` into the pending tokens (fed at the end of the
        batch): after a TURN back to the player when `turn`, and after the `deferred` messages."""
        enc = self._encoder
        out = self._pending
        n = len(out)
        self._skip_silence(tick)
        if turn:
            out += enc.advance_to(tick) + enc.turn()
        for t, d in deferred:
            out += enc.message(t, d, PLAYER)
        out += enc.message(tick, data, PLAYER)
        self.stats.player_tokens += len(out) - n

    def _skip_silence(self, tick: float) -> None:
        """Shorten a long silence to SILENCE_SKIP_BARS empty bars (the model never saw minutes of rests)."""
        self._encoder.skip_silence(tick, SILENCE_SKIP_BARS)

    def _flush(self) -> None:
        if self._pending:
            tokens, self._pending = self._pending, []
            self.feed(tokens)

    def feed(self, tokens: list[int]) -> None:
        """Tokens into the session (incremental prefill) and the grammar state."""
        self.session.feed(tokens)
        self._grammar.feed_all(tokens)
        self._last_token = tokens[-1]

    def stream_tick(self, clock_tick: float) -> float:
        return clock_tick + self._offset

    def due(self, stream_tick: float) -> float:
        return self.clock.time_at(stream_tick - self._offset)

    # -- out -------------------------------------------------------------------------------------------

    def send_note(self, tag: str, tick: int, on: bool, pitch: int, velocity: int) -> None:
        """A note-on or note-off at stream `tick`, on this part's channel, to the scheduler under `tag`."""
        ch = self.config.channel
        data = (0x90 | ch, pitch, max(1, velocity)) if on else (0x80 | ch, pitch, 0)
        self.scheduler.schedule(self.due(tick), data, tag)
        if on:
            self.stats.notes_scheduled += 1

    # -- rollback --------------------------------------------------------------------------------------

    def rollback(self, pos: int) -> None:
        """The session back to `pos` exactly; past the cache's reach, by re-feeding the history."""
        session = self.session
        if pos >= session.position:
            return
        if pos >= session.min_rollback_position:
            session.rollback(pos)
            return
        history = session.history
        drop = session.position - pos
        keep = history[: max(0, len(history) - drop)]
        self.stats.refeeds += 1
        log.warning("rollback of %d tokens is beyond the cache's reach; re-feeding %d tokens", drop, len(keep))
        session.reset()
        if keep:
            session.feed(keep)
        self._last_token = keep[-1] if keep else None
