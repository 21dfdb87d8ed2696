"""Call and response: when the player's phrase ends, the sideman answers it; a note of the player's
during the answer cuts in. The mode (`CallResponse`, on the conductor thread) drives the turn-taking
logic (`engine.live.conversation`); its model thread (`Generator`, a `ModelPart`) generates the
answers ahead of playback into the scheduler.

The model thread's commands, besides the ones every part takes (PlayerEvent, Rebase, Configure):
    Prepare(start, end)           the answer that comes if the player stays silent: generated up to its
                                  first note and held; a Respond for the same window plays it at once,
                                  anything the player plays first takes it back (rollback)
    Respond(id, start, end, t)    generate role-1 tokens for [start, end) (clock ticks); t = decision time
    Cut(id, tick)                 the player cut in (or Stop/panic): tokens after `tick` are rolled back,
                                  the played part stays in the cache, the answer's notes end in the stream

The player's events are prefilled as they arrive, so at a phrase end the model is up to date and an
answer costs decode steps only. Generation runs at most `lookahead_beats` ahead of the clock; each
decoded note becomes a scheduler event (due = clock.time_at(tick)) under the answer's tag, so a cut-in
ends it with note-offs.
"""

from __future__ import annotations

import bisect
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engine.live.conversation import (
    Conversation,
    CutIn,
    ExpectResponse,
    ResponseDone,
    StartResponse,
    conversation_config,
)
from engine.live.modes.base import Mode, PartContext
from engine.live.part import PLAYER, Configure, ModelPart, PartConfig, PartStats, PlayerEvent, Rebase, is_control
from engine.model.grammar import GrammarState
from engine.model.sampler import Constraints, allowed_mask_np, follow_note_length, follow_texture
from engine.music.tokens import StreamDecoder, StreamEncoder

log = logging.getLogger(__name__)

SIDEMAN = 1


def response_tag(response_id: int, part: str = "") -> str:
    """The scheduler tag of an answer's events (the mode and its model thread both derive it)."""
    return f"{part}r{response_id}"


# -- the model thread's commands ---------------------------------------------------------------------


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


def kept_tokens(tokens: list[int], ticks: list[int], cut_tick: float, vocab) -> int:
    """How many of an answer's tokens a cut at `cut_tick` keeps: those up to the cut, less the note-ons
    (and the role and velocity tokens before them) at the cut tick itself. A note the player cuts in on
    was cut on the wire as it began; kept, it would have to last a tick, and the player's note would be
    encoded a tick late."""
    keep = bisect.bisect_right(ticks, cut_tick)
    while keep > 0 and ticks[keep - 1] >= cut_tick and (
            vocab.is_note_on(tokens[keep - 1]) or vocab.is_role(tokens[keep - 1]) or vocab.is_velocity(tokens[keep - 1])):
        keep -= 1
    return keep


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
    phrase_voices: int = 1  # the voices of the phrase it answers (engine.music.texture)
    phrase_longest: int = 0  # ticks: the longest note of the phrase it answers
    constraints: Constraints | None = None  # the part's constraints as this answer's texture allows ...
    constraints_of: Constraints | None = None  # ... derived from these (the part's, until a Configure)


@dataclass
class GeneratorStats(PartStats):
    responses: int = 0
    response_tokens: int = 0  # also of answers prepared ahead and never asked for
    cut_ins: int = 0
    empty_responses: int = 0
    prepared: int = 0  # answers prepared ahead (Prepare) ...
    prepared_used: int = 0  # ... that the phrase end then asked for
    answers: deque = field(default_factory=lambda: deque(maxlen=1000))  # (id, start, end) in clock ticks
    # decision -> first note handed to the scheduler, per answer: (ms, how the answer began: "prepared"
    # (its first note was ready), "preparing" (promoted before its first note), "cold"; tokens generated
    # after the decision, ms waited for the clock). A model that rests a bar before its first note waits
    # for the clock: that is music, not latency, and is left out of the ms
    ready_detail: deque = field(default_factory=lambda: deque(maxlen=10_000))
    first_token_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))  # decision -> first token sampled
    step_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))  # sample + decode per token

    @property
    def ready_ms(self) -> list[float]:
        """Decision -> first note handed to the scheduler, ms, per answer."""
        return [d[0] for d in self.ready_detail]


class Generator(ModelPart):
    """Call and response's model thread (see the module docstring)."""

    def __init__(self, session, vocab, clock, scheduler, config: PartConfig = PartConfig(), supervisor=None,
                 name: str = "generator", tag_prefix: str = "") -> None:
        super().__init__(session, vocab, clock, scheduler, config, GeneratorStats(), name, supervisor)
        self.tag_prefix = tag_prefix
        self._answer: _Answer | None = None
        self._waiting_for: _Answer | None = None
        self._deferred: list[tuple[int, tuple]] = []  # the player's non-note-on messages during an answer
        self._turn_pending = False
        self._decoder: StreamDecoder | None = None

    def tag(self, answer_id: int) -> str:
        return response_tag(answer_id, self.tag_prefix)

    @property
    def busy(self) -> bool:
        """Whether an answer is being generated."""
        return self._generating(self._answer)

    @staticmethod
    def _generating(answer: _Answer | None) -> bool:
        """An answer to generate now: a prepared one pauses at its first note until it is asked for."""
        return answer is not None and answer.generating and not (answer.speculative and answer.first_note)

    # -- ModelPart's hooks -------------------------------------------------------------------------------

    def generating(self) -> bool:
        return self._generating(self._answer)

    def lookahead_wait(self) -> float:
        self._waiting_for = self._answer
        return self._lookahead_wait(self._answer)

    def waited(self, t0: float) -> None:
        answer = self._waiting_for
        if answer is not None and not answer.first_note and not answer.speculative:
            answer.waited += time.perf_counter() - max(t0, answer.decided_time)  # promoted during the wait: from then

    def step(self) -> None:
        self._step(self._answer)

    def superseded(self, cmd, later: list) -> bool:
        # a Prepare that anything but settings came after was superseded before it could help
        return isinstance(cmd, Prepare) and any(not is_control(c) for c in later)

    def handle(self, cmd) -> None:
        if isinstance(cmd, Respond):
            self._respond(cmd)
        elif isinstance(cmd, Prepare):
            self._prepare(cmd)
        elif isinstance(cmd, Cut):
            self._cut(cmd)
        else:
            super().handle(cmd)

    def on_configure(self, config: PartConfig) -> None:
        if self._answer is not None and self._answer.speculative:
            self._cut(Cut(None, 0))  # prepared with the old settings

    def on_rebase(self, clock_tick: float) -> None:
        self._end_answer_now(clock_tick)

    def on_failure(self) -> None:
        if self._answer is not None and not self._answer.speculative:
            self.scheduler.cut(self._answer.tag, wait=None)

    # -- the player's events ------------------------------------------------------------------------

    def on_player(self, cmd: PlayerEvent) -> None:
        tick = self.stream_tick(cmd.tick)
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
        self.encode_player(tick, cmd.data, self._deferred, turn=self._turn_pending)
        self._turn_pending = False
        self._deferred.clear()

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
        answer.id, answer.tag, answer.decided_time = cmd.id, self.tag(cmd.id), cmd.decided_time
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
        behind = enc.position - self.stream_tick(start_tick)
        if behind > 0:  # the stream ran ahead of the clock (notes last at least a tick): skip whole bars
            self._offset += int(math.ceil(behind / self._bar_ticks)) * self._bar_ticks
        start, end = int(self.stream_tick(start_tick)), int(self.stream_tick(end_tick))
        self._flush()
        del self._grammar.decoder.bars[:-8]  # a record of every bar line: keep it from growing for hours
        pre_pos, pre_enc, pre_grammar, pre_last = (self.session.position, enc.copy(),
                                                   self._grammar.copy(), self._last_token)
        prefix = enc.advance_to(start) + enc.turn()
        self._turn_pending = False
        self.feed(prefix)
        self._decoder = self._new_decoder(enc)
        self._answer = _Answer(
            id=answer_id if answer_id is not None else -1,
            tag=self.tag(answer_id) if answer_id is not None else "", start=start, end=end,
            start_pos=self.session.position, decided_time=decided_time, pre_pos=pre_pos, encoder=pre_enc,
            grammar=pre_grammar, pre_last=pre_last, prefix=prefix, speculative=speculative,
            window=(start_tick, end_tick), phrase_voices=self._grammar.player_voices,
            phrase_longest=self._grammar.player_longest_note(),
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
        now_tick = self.stream_tick(clock.tick_now())
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
        if answer.constraints_of is not self._constraints:
            answer.constraints_of = self._constraints
            answer.constraints = follow_note_length(
                follow_texture(self._constraints, answer.phrase_voices, self.config.extra_voices),
                answer.phrase_longest, self._bar_ticks, self.config.longest_note_bars)
        mask = answer_mask(self._grammar, answer.constraints, answer.end - dec.position, self._last_token)
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
        self.send_note(answer.tag, tick, on, pitch, velocity)
        if on:
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
            self.feed(tokens)
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
        tick = self.stream_tick(cmd.tick)
        started = tick >= answer.start and not answer.speculative
        keep = kept_tokens(answer.tokens, answer.ticks, tick, self.vocab) if started else 0
        if started and keep == len(answer.tokens) and not answer.generating:
            self._turn_pending = True
            return  # the answer had played out
        if not answer.speculative:
            self.stats.cut_ins += 1
        self.stats.rolled_back_tokens += len(answer.tokens) - keep + (0 if started else len(answer.prefix))
        kept = answer.tokens[:keep]
        self.rollback(answer.start_pos + keep if started else answer.pre_pos)
        enc, grammar = answer.encoder.copy(), answer.grammar.copy()
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


# -- the mode, on the conductor thread ------------------------------------------------------------------


class CallResponse(Mode):
    """The conversation's turn-taking on the conductor thread; the answers on its Generator thread."""

    name = "call_response"

    def __init__(self, context: PartContext, preset) -> None:
        super().__init__(context, preset)
        self.conversation = Conversation(conversation_config(preset))
        self._expect: ExpectResponse | None = None
        self.generator = self._new_generator()

    def _new_generator(self) -> Generator:
        c = self.context
        return Generator(c.session, c.vocab, c.clock, c.scheduler, self.config, supervisor=c.supervisor,
                         name=f"{c.name} generator", tag_prefix=f"{c.name}:")

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def thread(self) -> Generator:
        return self.generator

    def start(self) -> None:
        self.generator.start()

    def stop(self, timeout: float = 0.5) -> None:
        self.generator.stop(timeout)

    def restart(self) -> None:
        self.generator = self._new_generator()
        self.generator.start()

    # -- in ----------------------------------------------------------------------------------------

    def player(self, tick: float, data: tuple) -> None:
        self._expect = None  # superseded: the player played on
        actions = self.conversation.player(tick, data)
        for action in actions:  # a cut-in ends the answer before the note that cut in is encoded
            if isinstance(action, CutIn):
                self._act(action)
        self.generator.submit(PlayerEvent(tick, data))
        for action in actions:
            if not isinstance(action, CutIn):
                self._act(action)

    def poll(self, tick: float) -> None:
        if self._expect is not None:  # only the last release of a burst matters
            self.generator.submit(Prepare(self._expect.start_tick, self._expect.end_tick))
            self._expect = None
        for action in self.conversation.poll(tick):
            self._act(action)

    def cancel(self, tick: float) -> None:
        action = self.conversation.cancel(tick)
        if action is not None:
            self._act(action)

    def clock_jump(self, tick: float) -> None:
        self.conversation.reset()
        self.generator.submit(Rebase(tick))

    def configure(self, preset, config: PartConfig) -> None:
        if preset is not None:
            self.conversation.configure(conversation_config(preset))
        self.config = config
        self.generator.submit(Configure(config))

    def control(self, name: str, value) -> bool:
        if name == "response_length":  # bars, or None: as long as the phrase
            self.conversation.set_length_bars(value)
            return True
        return False

    def _act(self, action) -> None:
        if isinstance(action, ExpectResponse):
            if self.context.prepare:
                self._expect = action  # sent once the messages waiting now are handled
        elif isinstance(action, StartResponse):
            self.generator.submit(Respond(action.id, action.start_tick, action.end_tick, time.perf_counter()))
            log.debug("phrase ended (%s); answer %d from tick %d to %d", action.phrase.reason, action.id,
                      action.start_tick, action.end_tick)
        elif isinstance(action, CutIn):
            self.context.scheduler.cut(self.generator.tag(action.id), wait=None)
            self.generator.submit(Cut(action.id, action.tick))
            log.debug("cut-in at tick %.1f: answer %d stopped", action.tick, action.id)
        elif isinstance(action, ResponseDone):
            log.debug("answer %d done", action.id)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict:
        stats = self.generator.stats
        return {"state": self.conversation.state, "answers": stats.responses, "cut_ins": stats.cut_ins,
                "ready_ms": stats.ready_ms, "player_events": stats.player_events}
