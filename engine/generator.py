"""The model thread: owns the model session, the token stream (encoder), the answer's decoder, the
grammar masks and the sampler, and generates answers ahead of playback into the scheduler.

One thread owns the session; the conductor talks to it through `submit()` (a queue):
    PlayerEvent(tick, data)       the player's message: encoded as role 0 and prefilled at once, so at a
                                  phrase end the model is up to date and an answer costs decode steps only
    Prepare(start, end)           the answer that comes if the player stays silent: generated up to its
                                  first note and held; a Respond for the same window plays it at once,
                                  anything the player plays first takes it back (rollback)
    Respond(id, start, end, t)    generate role-1 tokens for [start, end) (clock ticks); t = decision time
    Cut(id, tick)                 the player cut in (or Stop/panic): tokens after `tick` are rolled back,
                                  the played part stays in the cache, the answer's notes end in the stream
    Rebase(tick)                  the clock jumped (MIDI Start, Song Position): realign stream ticks
    Configure(config)             new sampling parameters and constraints

Stream ticks vs clock ticks: the token stream never goes back in time, the clock may (MIDI Start), so
stream tick = clock tick + `offset`, a whole number of bars.

Generation runs at most `lookahead_beats` ahead of the clock; each decoded note becomes a scheduler
event (due = clock.time_at(tick)) tagged with the answer's tag, so a cut-in ends it with note-offs.
"""

from __future__ import annotations

import bisect
import copy
import logging
import math
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch

from engine.grammar import GrammarState
from engine.sampler import Constraints, Sampler, SamplingConfig, allowed_mask_np
from engine.tokens import Meter as TokenMeter
from engine.tokens import StreamDecoder, StreamEncoder, quantize
from engine.vocab import Vocab

log = logging.getLogger(__name__)

PLAYER = 0
SIDEMAN = 1
SILENCE_SKIP_BARS = 2  # a gap longer than this many empty bars is shortened in the stream


GENERATOR_NICE = 10  # the generator works ahead of the music; the threads that keep time come first


def lower_thread_priority(nice: int) -> None:
    """Give the calling thread a nice value (Linux: per thread; needs no privilege to lower priority).

    On a machine with few cores the generator's decode steps and the scheduler's last-millisecond
    spin compete for a core; at equal priority the kernel can leave the scheduler waiting for a
    whole time slice (several ms) and a note misses its time. Best effort: ignored where unsupported.
    """
    if not hasattr(os, "setpriority"):
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (OSError, AttributeError) as exc:
        log.debug("could not lower the generator thread's priority: %s", exc)


def response_tag(response_id: int) -> str:
    """The scheduler tag of an answer's events (the conductor and the generator both derive it)."""
    return f"r{response_id}"


# -- configuration and commands ----------------------------------------------------------------


@dataclass(frozen=True)
class GeneratorConfig:
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

    def sampling(self) -> SamplingConfig:
        return SamplingConfig(self.temperature, self.top_k, self.top_p, self.seed)

    def constraints(self) -> Constraints:
        return Constraints(self.key_pitch_classes, self.low, self.high, self.max_polyphony)

    @classmethod
    def from_preset(cls, preset, style: str = "none") -> "GeneratorConfig":
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
        )


@dataclass(frozen=True)
class PlayerEvent:
    tick: float
    data: tuple


@dataclass(frozen=True)
class Respond:
    id: int
    start_tick: int
    end_tick: int
    decided_time: float  # perf_counter when the phrase end was decided


@dataclass(frozen=True)
class Prepare:
    """The answer that comes if the player stays silent: generate up to its first note now, hold it."""

    start_tick: int
    end_tick: int


@dataclass(frozen=True)
class Cut:
    id: int | None  # None: whatever answer is active
    tick: float


@dataclass(frozen=True)
class Rebase:
    clock_tick: float


@dataclass(frozen=True)
class Configure:
    config: GeneratorConfig


@dataclass(frozen=True)
class _Stop:
    pass


@dataclass(frozen=True)
class _Sync:
    done: threading.Event


# -- what the generator needs from its collaborators ---------------------------------------------


class Session(Protocol):
    """engine.session.ModelSession's interface."""

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


# -- masks --------------------------------------------------------------------------------------------


def answer_mask(grammar: GrammarState, constraints: Constraints, remaining_ticks: int,
                last_token: int | None) -> np.ndarray:
    """What an answer may take next: the grammar's mask for the sideman's role and the musical
    constraints, without TURN or EOS (the preset sets the answer's length), with no shift past the
    answer's end, and no velocity change right after another one (the encoder never writes two)."""
    v = grammar.vocab
    mask = allowed_mask_np(grammar, SIDEMAN, constraints)
    mask[v.turn] = False
    mask[v.eos] = False
    if remaining_ticks < v.config.max_shift:
        mask[v.shift_base + max(0, remaining_ticks) : v.note_on_base] = False
    if last_token is not None and v.is_velocity(last_token):
        mask[v.vel_base : v.shift_base] = False
    return mask


# -- the answer in progress ------------------------------------------------------------------------


@dataclass
class _Answer:
    id: int
    tag: str
    start: int  # stream ticks
    end: int
    start_pos: int  # session position of its first token
    decided_time: float
    # the stream before the answer (restored on a cut, then `prefix` and the kept tokens are replayed)
    pre_pos: int
    encoder: StreamEncoder
    grammar: GrammarState
    pre_last: int | None
    prefix: list[int]  # shifts and bar lines to the start, TURN
    tokens: list[int] = field(default_factory=list)
    ticks: list[int] = field(default_factory=list)  # stream tick of each token (after a shift: its end)
    generating: bool = True
    first_note: bool = False
    waited: float = 0.0  # seconds spent waiting for the lookahead before the first note
    began: str = "cold"  # how it met the phrase-end decision: cold, preparing or prepared (see ready_detail)
    tokens_at_decision: int = 0
    speculative: bool = False  # prepared before the phrase end was decided: events held, not scheduled
    window: tuple[int, int] = (0, 0)  # (start, end) in clock ticks, as asked for
    held: list[tuple[int, bool, int, int]] = field(default_factory=list)  # (tick, on, pitch, velocity)


@dataclass
class GeneratorStats:
    player_events: int = 0  # the player's messages handed to the encoder
    player_tokens: int = 0
    responses: int = 0
    response_tokens: int = 0
    notes_scheduled: int = 0
    cut_ins: int = 0
    rolled_back_tokens: int = 0
    refeeds: int = 0  # rollbacks past the cache's reach, done by re-feeding the history
    empty_responses: int = 0
    prepared: int = 0  # answers prepared ahead (Prepare) ...
    prepared_used: int = 0  # ... that the phrase end then asked for
    answers: deque = field(default_factory=lambda: deque(maxlen=1000))  # (id, start, end) in clock ticks
    # decision -> first note-on handed to the scheduler, less any wait for the lookahead (a model that
    # rests a bar before its first note waits for the clock; that is music, not latency)
    # decision -> first note handed to the scheduler, per answer: (ms, how the answer began: "prepared"
    # (its first note was ready), "preparing" (promoted before its first note), "cold"; tokens generated
    # after the decision, ms waited for the clock)
    ready_detail: deque = field(default_factory=lambda: deque(maxlen=10_000))
    first_token_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))  # decision -> first token sampled
    step_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))  # sample + decode per token

    @property
    def ready_ms(self) -> list[float]:
        """Decision -> first note handed to the scheduler, ms, per answer."""
        return [d[0] for d in self.ready_detail]


class Generator(threading.Thread):
    """The model thread. See the module docstring. `supervisor(name, exc)` hears if it dies."""

    def __init__(
        self,
        session: Session,
        vocab: Vocab,
        clock: ClockLike,
        scheduler: SchedulerLike,
        config: GeneratorConfig = GeneratorConfig(),
        supervisor: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        super().__init__(name="generator", daemon=True)
        self.session = session
        self.vocab = vocab
        self.clock = clock
        self.scheduler = scheduler
        self.config = config
        self.stats = GeneratorStats()
        self.error: BaseException | None = None
        self._supervisor = supervisor
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._halted = False
        meter = clock.meter
        self._meter = TokenMeter(meter.numerator, meter.denominator)
        self._bar_ticks = self._meter.bar_ticks(vocab.config.ticks_per_beat)
        self._encoder = StreamEncoder(vocab, self._meter)
        self._offset = 0  # stream tick - clock tick
        self._answer: _Answer | None = None
        self._deferred: list[tuple[int, tuple]] = []  # the player's non-note-on messages during an answer
        self._turn_pending = False
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

    @property
    def busy(self) -> bool:
        """Whether an answer is being generated."""
        return self._generating(self._answer)

    @staticmethod
    def _generating(answer: _Answer | None) -> bool:
        """An answer to generate now: a prepared one pauses at its first note until it is asked for."""
        return answer is not None and answer.generating and not (answer.speculative and answer.first_note)

    # -- the thread ------------------------------------------------------------------------------

    def run(self) -> None:
        lower_thread_priority(GENERATOR_NICE)
        try:
            self.session.reset()
            self._pending = self._encoder.begin(self.config.style)
            self._flush()
            while not self._halted:
                if not self._generating(self._answer):
                    self._wait(0.1)
                    continue
                self._drain()
                if self._halted or not self._generating(self._answer):
                    continue
                answer = self._answer
                wait = self._lookahead_wait(answer)
                if wait > 0:
                    t0 = time.perf_counter()
                    self._wait(min(wait, 0.05))
                    if not answer.first_note and not answer.speculative:  # promoted during the wait: from then
                        answer.waited += time.perf_counter() - max(t0, answer.decided_time)
                    continue
                self._step(self._answer)
        except BaseException as exc:  # noqa: BLE001 - recorded, notes closed, supervisor told
            self.error = exc
            log.exception("generator thread failed")
            if self._answer is not None and not self._answer.speculative:
                self.scheduler.cut(self._answer.tag, wait=None)
            if self._supervisor is not None:
                self._supervisor(self.name, exc)

    def _wait(self, timeout: float) -> None:
        try:
            self._handle(self._inbox.get(timeout=timeout))
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
            if isinstance(cmd, Prepare) and any(not isinstance(c, (Configure, _Sync)) for c in batch[i + 1:]):
                continue  # superseded before it could help: something came after it
            self._handle(cmd)
        self._flush()

    def _handle(self, cmd) -> None:
        if isinstance(cmd, PlayerEvent):
            self._player(cmd)
        elif isinstance(cmd, Respond):
            self._respond(cmd)
        elif isinstance(cmd, Prepare):
            self._prepare(cmd)
        elif isinstance(cmd, Cut):
            self._cut(cmd)
        elif isinstance(cmd, Rebase):
            self._rebase(cmd)
        elif isinstance(cmd, Configure):
            if self._answer is not None and self._answer.speculative:
                self._cut(Cut(None, 0))  # prepared with the old settings
            self.config = cmd.config
            self._constraints = cmd.config.constraints()
            self._sampler = Sampler(cmd.config.sampling())
        elif isinstance(cmd, _Stop):
            self._halted = True
        elif isinstance(cmd, _Sync):
            self._flush()
            cmd.done.set()

    def _flush(self) -> None:
        if self._pending:
            tokens, self._pending = self._pending, []
            self._feed(tokens)

    def _feed(self, tokens: list[int]) -> None:
        """Tokens into the session (incremental prefill) and the grammar state."""
        self.session.feed(tokens)
        self._grammar.feed_all(tokens)
        self._last_token = tokens[-1]

    # -- ticks -----------------------------------------------------------------------------------

    def _stream_tick(self, clock_tick: float) -> float:
        return clock_tick + self._offset

    def _due(self, stream_tick: float) -> float:
        return self.clock.time_at(stream_tick - self._offset)

    def _rebase(self, cmd: Rebase) -> None:
        self._end_answer_now(cmd.clock_tick)
        bar = self._bar_ticks
        self._offset = int(math.ceil((self._encoder.position - cmd.clock_tick) / bar - 1e-9)) * bar

    # -- the player's events ------------------------------------------------------------------------

    def _player(self, cmd: PlayerEvent) -> None:
        self.stats.player_events += 1
        tick = self._stream_tick(cmd.tick)
        answer = self._answer
        if answer is not None and answer.speculative:
            self._cut(Cut(None, cmd.tick))  # the player went on: the prepared answer goes back
            answer = None
        if answer is not None:
            if tick < answer.end:
                if len(cmd.data) == 3 and cmd.data[0] & 0xF0 == 0x90 and cmd.data[2] > 0:
                    self._cut(Cut(answer.id, cmd.tick))  # a note-on always cuts in
                else:
                    self._deferred.append((tick, cmd.data))
                    return
            else:
                self._answer = None
        enc = self._encoder
        out = self._pending
        n = len(out)
        self._skip_silence(tick)
        if self._turn_pending:
            out += enc.advance_to(tick) + enc.turn()
            self._turn_pending = False
        for t, data in self._deferred:
            out += enc.message(t, data, PLAYER)
        self._deferred.clear()
        out += enc.message(tick, cmd.data, PLAYER)
        self.stats.player_tokens += len(out) - n

    def _skip_silence(self, tick: float) -> None:
        """Shorten a long silence to SILENCE_SKIP_BARS empty bars (the model never saw minutes of rests)."""
        enc = self._encoder
        if enc.depth or quantize(tick) - enc.position <= (SILENCE_SKIP_BARS + 1) * self._bar_ticks:
            return
        bar = self._bar_ticks
        target_bar = (quantize(tick) // bar) * bar - SILENCE_SKIP_BARS * bar
        jump = target_bar - enc.next_bar
        if jump > 0 and jump % bar == 0:
            enc.position += jump
            enc.next_bar += jump

    # -- answers -------------------------------------------------------------------------------------

    def _prepare(self, cmd: Prepare) -> None:
        answer = self._answer
        if answer is not None and answer.speculative:
            self._cut(Cut(None, 0))
        elif answer is not None and answer.generating:
            return  # an answer is playing: nothing to prepare
        self._begin(None, cmd.start_tick, cmd.end_tick, 0.0, speculative=True)
        self.stats.prepared += 1

    def _respond(self, cmd: Respond) -> None:
        answer = self._answer
        if answer is not None and answer.speculative:
            if answer.window == (cmd.start_tick, cmd.end_tick):
                self._promote(answer, cmd)
                return
            self._cut(Cut(None, 0))  # prepared for another window
        if self._answer is not None and self._answer.generating:
            self._end_answer_now(self.clock.tick_now())
        self._begin(cmd.id, cmd.start_tick, cmd.end_tick, cmd.decided_time)

    def _promote(self, answer: _Answer, cmd: Respond) -> None:
        """The prepared answer is asked for: its held events go to the scheduler now."""
        answer.id, answer.tag, answer.decided_time = cmd.id, response_tag(cmd.id), cmd.decided_time
        answer.began = "prepared" if answer.first_note else "preparing"
        answer.tokens_at_decision = len(answer.tokens)
        answer.speculative, answer.first_note, answer.waited = False, False, 0.0
        for tick, on, pitch, velocity in answer.held:
            self._schedule(answer, tick, on, pitch, velocity)
        answer.held = []
        self.stats.prepared_used += 1
        self.stats.responses += 1
        self.stats.answers.append((cmd.id, cmd.start_tick, cmd.end_tick))

    def _begin(self, answer_id: int | None, start_tick: int, end_tick: int, decided_time: float,
               speculative: bool = False) -> None:
        self._answer = None
        enc = self._encoder
        out = self._pending
        for t, data in self._deferred:
            out += enc.message(t, data, PLAYER)
        self._deferred.clear()
        behind = enc.position - self._stream_tick(start_tick)
        if behind > 0:  # the stream ran ahead of the clock (notes last at least a tick): skip whole bars
            self._offset += int(math.ceil(behind / self._bar_ticks)) * self._bar_ticks
        start, end = int(self._stream_tick(start_tick)), int(self._stream_tick(end_tick))
        self._flush()
        del self._grammar.decoder.bars[:-8]  # a record of every bar line: keep it from growing for hours
        pre_pos, pre_enc, pre_grammar, pre_last = (self.session.position, copy.deepcopy(enc),
                                                   self._grammar.copy(), self._last_token)
        prefix = enc.advance_to(start) + enc.turn()
        self._turn_pending = False
        self._feed(prefix)
        self._decoder = self._new_decoder(enc)
        self._answer = _Answer(
            id=answer_id if answer_id is not None else -1,
            tag=response_tag(answer_id) if answer_id is not None else "", start=start, end=end,
            start_pos=self.session.position, decided_time=decided_time, pre_pos=pre_pos, encoder=pre_enc,
            grammar=pre_grammar, pre_last=pre_last, prefix=prefix, speculative=speculative,
            window=(start_tick, end_tick),
        )
        if not speculative:
            self.stats.responses += 1
            self.stats.answers.append((answer_id, start_tick, end_tick))

    def _new_decoder(self, enc: StreamEncoder) -> StreamDecoder:
        """A decoder for the answer's tokens, in the stream's state (position, role, velocity)."""
        dec = StreamDecoder(self.vocab)
        dec.position = enc.position
        dec.role = enc.role if enc.role is not None else PLAYER
        if enc.vel_bin is not None:
            dec.velocity = self.vocab.bin_velocity(enc.vel_bin)
        return dec

    def _lookahead_wait(self, answer: _Answer) -> float:
        """Seconds to wait before the next token (0: go on)."""
        clock = self.clock
        if answer.speculative and not answer.first_note:
            return 0.0  # a prepared answer goes on to its first note whatever the clock: it is only held
        if not clock.running:
            return 0.05
        now_tick = self._stream_tick(clock.tick_now())
        ahead_ticks = self._decoder.position - max(now_tick, answer.start)  # the first bar is always free
        lookahead = self.config.lookahead_beats * self.vocab.config.ticks_per_beat
        if ahead_ticks > lookahead:
            return max(0.0005, (ahead_ticks - lookahead) * clock.seconds_per_tick)
        unplayed = len(answer.ticks) - bisect.bisect_right(answer.ticks, now_tick)
        if unplayed >= self.session.max_rollback - 16:
            return 0.002  # keep every unplayed token within the cache's rollback reach
        return 0.0

    def _step(self, answer: _Answer) -> None:
        t0 = time.perf_counter()
        enc, dec = self._encoder, self._decoder
        logits = self.session.logits
        mask = answer_mask(self._grammar, self._constraints, answer.end - dec.position, self._last_token)
        token = self._sampler.sample(logits, mask)
        if not answer.tokens and not answer.speculative:
            self.stats.first_token_ms.append((time.perf_counter() - answer.decided_time) * 1000.0)
        events = dec.feed(token)
        enc.observe(token)
        self._grammar.feed(token)
        for ev in events:
            self._schedule(answer, ev.tick, ev.on, ev.pitch, ev.velocity)
        self.session.append(token)
        self._last_token = token
        answer.tokens.append(token)
        answer.ticks.append(dec.position)
        self.stats.response_tokens += 1
        self.stats.step_ms.append((time.perf_counter() - t0) * 1000.0)
        if dec.position >= answer.end:
            self._finish(answer)

    def _schedule(self, answer: _Answer, tick: int, on: bool, pitch: int, velocity: int) -> None:
        if answer.speculative:
            answer.held.append((tick, on, pitch, velocity))
            answer.first_note = answer.first_note or on
            return
        ch = self.config.channel
        data = (0x90 | ch, pitch, max(1, velocity)) if on else (0x80 | ch, pitch, 0)
        self.scheduler.schedule(self._due(tick), data, answer.tag)
        if on:
            self.stats.notes_scheduled += 1
            if not answer.first_note:
                answer.first_note = True
                ready = time.perf_counter() - answer.decided_time - answer.waited
                self.stats.ready_detail.append((round(ready * 1000.0, 3), answer.began,
                                                len(answer.tokens) - answer.tokens_at_decision,
                                                round(answer.waited * 1000.0, 3)))

    def _finish(self, answer: _Answer) -> None:
        """The answer reached its end: close its sounding notes there, in the stream and on the wire."""
        enc, dec = self._encoder, self._decoder
        tokens: list[int] = []
        for role, pitch in sorted(dec.sounding):
            if role == SIDEMAN:
                self._schedule(answer, answer.end, False, pitch, 0)
                tokens += enc.note_off(answer.end, pitch, SIDEMAN)
        dec.sounding.clear()
        if tokens:
            self._feed(tokens)
            answer.tokens += tokens
            answer.ticks += [answer.end] * len(tokens)
        if not answer.first_note and not answer.speculative:
            self.stats.empty_responses += 1
        answer.generating = False
        self._turn_pending = True

    def _end_answer_now(self, clock_tick: float) -> None:
        answer = self._answer
        if answer is not None:
            self._cut(Cut(answer.id, clock_tick))

    def _cut(self, cmd: Cut) -> None:
        """Roll back the answer's tokens after `tick`; its played part stays; its notes end at `tick`.

        A cut before the answer's start takes the whole answer back, TURN included: the player simply
        went on with the phrase."""
        answer = self._answer
        if answer is None or (cmd.id is not None and cmd.id != answer.id):
            return
        self._answer = None
        if not answer.speculative:
            self.scheduler.cut(answer.tag, wait=None)  # again: events scheduled since the conductor's cut
        self._flush()
        tick = self._stream_tick(cmd.tick)
        started = tick >= answer.start and not answer.speculative
        keep = bisect.bisect_right(answer.ticks, tick) if started else 0
        if started and keep == len(answer.tokens) and not answer.generating:
            self._turn_pending = True
            return  # the answer had played out
        if not answer.speculative:
            self.stats.cut_ins += 1
        self.stats.rolled_back_tokens += len(answer.tokens) - keep + (0 if started else len(answer.prefix))
        kept = answer.tokens[:keep]
        self._rollback(answer.start_pos + keep if started else answer.pre_pos)
        enc, grammar = copy.deepcopy(answer.encoder), answer.grammar.copy()
        self._last_token = answer.pre_last
        if started:
            for t in answer.prefix:
                enc.observe(t)
            dec = self._new_decoder(enc)
            for t in kept:
                enc.observe(t)
                dec.feed(t)
            grammar.feed_all(answer.prefix + kept)
            self._last_token = (answer.prefix + kept)[-1]
        self._encoder, self._grammar = enc, grammar
        if started:
            out = self._pending
            for role, pitch in sorted(dec.sounding):
                if role == SIDEMAN and (role, pitch) in enc.depth:
                    out += enc.note_off(tick, pitch, SIDEMAN)
        self._turn_pending = started

    def _rollback(self, pos: int) -> None:
        session = self.session
        if pos >= session.position:
            return
        if pos >= session.min_rollback_position:
            session.rollback(pos)
            return
        # beyond the cache's reach (should not happen: generation waits): re-feed the window's history
        history = session.history
        drop = session.position - pos
        keep = history[: max(0, len(history) - drop)]
        self.stats.refeeds += 1
        log.warning("rollback of %d tokens is beyond the cache's reach; re-feeding %d tokens", drop, len(keep))
        session.reset()
        if keep:
            session.feed(keep)
        self._last_token = keep[-1] if keep else None
