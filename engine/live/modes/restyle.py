"""Restyle: when the player's phrase ends, the sideman plays it back in another style from the next bar.

The turn-taking is call and response's (`engine.live.conversation`, with `span`: the answer lasts the bars
the phrase touched); a note of the player's during the answer cuts in. The mode (`Restyle`, on the
conductor thread) drives the conversation; its model thread (`RestylePart`, a `ModelPart`) keeps the
player's notes since the last answer and, at a phrase end, restyles them (`engine.model.restyler`): the
phrase as played is encoded to z, the decoder writes the restyled line one token at a time, at most
`lookahead_beats` ahead of the clock, each note a scheduler event under the answer's tag. A phrase longer
than 4 bars is restyled in 4-bar pieces, one after the other.

The model's session holds no running stream in this mode: each restyled phrase is its own stream, with
its own condition vector ([z, style]).

The model thread's commands, besides the ones every part takes (PlayerEvent, Rebase, Configure):
    Play(id, phrase_start, start, end, t)   restyle the phrase that began at `phrase_start` into [start, end)
    Prepare(phrase_start, start, end)       the answer that comes if the player stays silent: encoded and
                                            written up to its first note now, held until a Play asks for it;
                                            with `candidates` > 1, whole restyled phrases (the first piece)
                                            one after another while the silence lasts, up to `candidates`,
                                            and the Play takes the best by the critic and chroma
                                            (`Restyler.score`, the offline pick's); with none whole yet, the
                                            one being written, as with one candidate
    Cut(id, tick)                           the player cut in (or Stop, panic): the answer ends at `tick`
    SetRestyle(settings)                    a new style, amount or keep (CC, Program Change)
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field, replace

import numpy as np

from engine.live.conversation import (
    Conversation,
    CutIn,
    ExpectResponse,
    ResponseDone,
    StartResponse,
    conversation_config,
    phrase_bars,
)
from engine.live.modes.base import Mode, PartContext
from engine.live.part import Configure, ModelPart, PartConfig, PartStats, PlayerEvent, Rebase, is_control
from engine.model.restyler import RestyleDecode, Restyler, RestyleSettings, candidate_seed
from engine.music.melody import Melody, one_line
from engine.music.styles import STYLE_NAMES
from engine.music.tokens import Meter as TokenMeter

log = logging.getLogger(__name__)

MAX_PHRASE_BARS = 4  # the model's phrase length: longer phrases are restyled in pieces of this many bars
KEEP_BARS = 16  # the player's notes are kept this far back


def restyle_tag(answer_id: int, part: str = "") -> str:
    return f"{part}s{answer_id}"


# -- the model thread's commands ---------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    id: int
    phrase_start: float  # clock tick of the phrase's first note
    start_tick: int
    end_tick: int
    decided_time: float  # perf_counter when the phrase end was decided


@dataclass(frozen=True)
class Prepare:
    phrase_start: float
    start_tick: int
    end_tick: int


@dataclass(frozen=True)
class Cut:
    id: int | None  # None: whatever answer is active
    tick: float


@dataclass(frozen=True)
class SetRestyle:
    style: str
    amount: float
    keep: str


# -- the answer in progress ------------------------------------------------------------------------


@dataclass
class _Answer:
    id: int
    tag: str
    start: int  # clock ticks
    end: int
    decided_time: float
    pieces: list[Melody]  # the phrase in pieces of up to 4 bars
    window: tuple[float, int, int]  # (phrase_start, start, end) as asked for
    piece: int = 0
    piece_start: int = 0  # clock tick of the current piece's first bar line
    decode: RestyleDecode | None = None
    sounding: set[int] = field(default_factory=set)
    first_note: bool = False
    speculative: bool = False
    held: list[tuple[int, bool, int, int]] = field(default_factory=list)  # (tick, on, pitch, velocity)
    began: str = "cold"
    # prepared with candidates > 1: the whole first pieces written so far, and the best (score, its held notes)
    complete: int = 0
    best: tuple[float, list[tuple[int, bool, int, int]]] | None = None
    next_candidate: bool = False  # the next candidate is begun on the next step (a Play may come between)


@dataclass
class RestyleStats(PartStats):
    answers: int = 0
    cut_ins: int = 0
    empty_answers: int = 0
    prepared: int = 0
    prepared_used: int = 0
    tokens: int = 0
    ready_detail: deque = field(default_factory=lambda: deque(maxlen=10_000))  # (ms, began)
    encode_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))  # encode + critic + first feed
    step_ms: deque = field(default_factory=lambda: deque(maxlen=10_000))
    windows: deque = field(default_factory=lambda: deque(maxlen=1000))  # (id, start, end, bars, notes in)
    candidates: deque = field(default_factory=lambda: deque(maxlen=10_000))  # whole candidates an answer chose among

    @property
    def ready_ms(self) -> list[float]:
        return [d[0] for d in self.ready_detail]


def settings_from(preset, config: PartConfig) -> RestyleSettings:
    r = preset.restyle
    return RestyleSettings(style=r.style, amount=r.amount, keep=r.keep, guidance=r.guidance, register=r.register,
                           candidates=r.candidates, sampling=config.sampling(),
                           constraints=config.constraints())


class RestylePart(ModelPart):
    """Restyle's model thread (see the module docstring)."""

    def __init__(self, session, vocab, clock, scheduler, config: PartConfig, settings: RestyleSettings,
                 supervisor=None, name: str = "restyle", tag_prefix: str = "") -> None:
        super().__init__(session, vocab, clock, scheduler, config, RestyleStats(), name, supervisor)
        self.restyler = Restyler(session, vocab)
        self.settings = settings
        self.tag_prefix = tag_prefix
        self._notes: list[list[float]] = []  # [on tick, off tick (inf: held), pitch, velocity], clock ticks
        self._answer: _Answer | None = None
        meter = clock.meter
        self._token_meter = TokenMeter(meter.numerator, meter.denominator)

    def tag(self, answer_id: int) -> str:
        return restyle_tag(answer_id, self.tag_prefix)

    # -- ModelPart's hooks -------------------------------------------------------------------------------

    def begin_stream(self) -> None:
        """No running stream: every restyled phrase is a stream of its own."""

    def generating(self) -> bool:
        a = self._answer
        return a is not None and (a.decode is not None or a.next_candidate) and not (
            a.speculative and a.first_note and self.settings.candidates == 1)

    def lookahead_wait(self) -> float:
        a = self._answer
        if a.speculative:
            return 0.0
        if not self.clock.running:
            return 0.05
        now = self.clock.tick_now()
        ahead = a.piece_start + a.decode.position - max(now, a.start)  # the first bar is always free
        lookahead = self.config.lookahead_beats * self.vocab.config.ticks_per_beat
        if ahead > lookahead:
            return max(0.0005, (ahead - lookahead) * self.clock.seconds_per_tick)
        return 0.0

    def step(self) -> None:
        a = self._answer
        if a.next_candidate:  # a step of its own: the commands that came meanwhile are handled first
            a.decode = self._begin_piece(a.pieces[a.piece], a.complete)
            a.next_candidate = False  # (after: never seen idle between two candidates)
            return
        t0 = time.perf_counter()
        for e in a.decode.step():
            self._note(a, a.piece_start + e.tick, e.on, e.pitch, e.velocity)
        self.stats.tokens += 1
        self.stats.step_ms.append((time.perf_counter() - t0) * 1000.0)
        if a.decode.done:
            if a.speculative:
                self._candidate_done(a)
            else:
                self._next_piece(a)

    def _candidate_done(self, a: _Answer) -> None:
        """A prepared answer's first piece written whole: kept if the best so far; the next candidate begun
        while fewer than `candidates` are done."""
        score = self.restyler.score(a.pieces[a.piece], a.decode)
        if a.best is None or score > a.best[0]:
            a.best = (score, a.held)
        a.complete += 1
        a.held, a.first_note = [], False
        a.next_candidate = a.complete < self.settings.candidates  # (before the decode goes: never idle between)
        a.decode = None

    def superseded(self, cmd, later: list) -> bool:
        # a Prepare that anything but settings came after was superseded before it could help
        return isinstance(cmd, Prepare) and any(not is_control(c) for c in later)

    def handle(self, cmd) -> None:
        if isinstance(cmd, Play):
            self._play(cmd)
        elif isinstance(cmd, Prepare):
            self._prepare(cmd)
        elif isinstance(cmd, Cut):
            self._cut(cmd)
        elif isinstance(cmd, SetRestyle):
            self.settings = replace(self.settings, style=cmd.style, amount=cmd.amount, keep=cmd.keep)
            if self._answer is not None and self._answer.speculative:
                self._answer = None  # prepared with the old settings
        else:
            super().handle(cmd)

    def on_configure(self, config: PartConfig) -> None:
        self.settings = replace(self.settings, sampling=config.sampling(), constraints=config.constraints())
        if self._answer is not None and self._answer.speculative:
            self._answer = None

    def on_rebase(self, clock_tick: float) -> None:
        self._end_now(clock_tick)
        self._notes.clear()

    def on_failure(self) -> None:
        if self._answer is not None and not self._answer.speculative:
            self.scheduler.cut(self._answer.tag, wait=None)

    # -- the player ---------------------------------------------------------------------------------------

    def on_player(self, cmd: PlayerEvent) -> None:
        data = cmd.data
        if len(data) != 3 or data[0] & 0xF0 not in (0x80, 0x90):
            return
        a = self._answer
        on = data[0] & 0xF0 == 0x90 and data[2] > 0
        if on and a is not None and a.speculative:
            self._answer = None  # the player went on: the prepared answer goes
        if on:
            self._notes.append([cmd.tick, math.inf, data[1], data[2]])
        else:
            for n in reversed(self._notes):
                if n[2] == data[1] and n[1] == math.inf:
                    n[1] = max(cmd.tick, n[0] + 1)
                    break
        bar = self._token_meter.bar_ticks(self.vocab.config.ticks_per_beat)
        horizon = cmd.tick - KEEP_BARS * bar
        if self._notes and self._notes[0][1] < horizon:
            self._notes = [n for n in self._notes if n[1] >= horizon]

    def phrase(self, phrase_start: float, start_tick: int, end_tick: int) -> tuple[list[Melody], int]:
        """The player's phrase from its first note as pieces of up to 4 bars, and the tick of its first bar line."""
        tpb = self.vocab.config.ticks_per_beat
        bar = self._token_meter.bar_ticks(tpb)
        first, _ = phrase_bars(phrase_start, phrase_start + 1, bar)
        bars = max(1, (end_tick - start_tick) // bar)
        end = first + bars * bar
        rows = []
        for on, off, pitch, vel in self._notes:
            if on + 3 < phrase_start or on >= end:  # (a chord rolled a little before the first note: in)
                continue
            on_t = max(0, int(round(on - first)))
            off_t = int(round(min(off, end) - first))
            rows.append((on_t, max(on_t + 1, off_t), int(pitch), int(vel)))
        notes = one_line(np.asarray(sorted(rows), dtype=np.int32).reshape(-1, 4))
        pieces = []
        for k in range(0, bars, MAX_PHRASE_BARS):
            n = min(MAX_PHRASE_BARS, bars - k)
            lo, hi = k * bar, (k + n) * bar
            inside = notes[(notes[:, 0] >= lo) & (notes[:, 0] < hi)].copy()
            inside[:, 0] -= lo
            inside[:, 1] = np.minimum(inside[:, 1], hi) - lo
            pieces.append(Melody(inside, self._token_meter, n))
        return pieces, first

    # -- answers ---------------------------------------------------------------------------------------------

    def _prepare(self, cmd: Prepare) -> None:
        a = self._answer
        if a is not None and not a.speculative and a.decode is not None:
            return  # an answer is playing
        self._answer = self._begin(-1, cmd.phrase_start, cmd.start_tick, cmd.end_tick, 0.0, speculative=True)
        self.stats.prepared += 1

    def _play(self, cmd: Play) -> None:
        a = self._answer
        if a is not None and a.speculative:
            if a.window == (cmd.phrase_start, cmd.start_tick, cmd.end_tick):
                self._promote(a, cmd)
                return
            self._answer = None
        if self._answer is not None:
            self._end_now(self.clock.tick_now())
        self._answer = self._begin(cmd.id, cmd.phrase_start, cmd.start_tick, cmd.end_tick, cmd.decided_time)
        self._asked(self._answer)

    def _promote(self, a: _Answer, cmd: Play) -> None:
        a.id, a.tag, a.decided_time, a.speculative = cmd.id, self.tag(cmd.id), cmd.decided_time, False
        whole = a.best is not None
        a.began = "prepared" if a.first_note or whole else "preparing"
        a.first_note = False
        held, a.held = (a.best[1] if whole else a.held), []
        a.next_candidate = False
        self.stats.candidates.append(max(1, a.complete))
        for tick, on, pitch, velocity in held:
            self._note(a, tick, on, pitch, velocity)
        self.stats.prepared_used += 1
        self._asked(a)
        if whole:  # the best whole candidate is all scheduled: its piece closes, the next begins
            self._next_piece(a)

    def _asked(self, a: _Answer) -> None:
        """An answer the phrase end asked for (not one prepared and dropped)."""
        self.stats.answers += 1
        self.stats.windows.append((a.id, a.start, a.end, sum(p.bars for p in a.pieces),
                                   sum(len(p.notes) for p in a.pieces)))

    def _begin(self, answer_id: int, phrase_start: float, start: int, end: int, decided: float,
               speculative: bool = False) -> _Answer:
        pieces, _ = self.phrase(phrase_start, start, end)
        a = _Answer(answer_id, self.tag(answer_id) if answer_id >= 0 else "", start, end, decided, pieces,
                    (phrase_start, start, end), speculative=speculative)
        a.piece, a.piece_start = -1, start
        self._next_piece(a, first=True)
        return a

    def _next_piece(self, a: _Answer, first: bool = False) -> None:
        """Close the piece that ended (its notes end at its last bar line); begin the next, if any."""
        bar = self._token_meter.bar_ticks(self.vocab.config.ticks_per_beat)
        if not first:
            end = a.piece_start + a.pieces[a.piece].bars * bar
            for pitch in sorted(a.sounding):
                self._note(a, end, False, pitch, 0)
            a.piece_start = end
        a.piece += 1
        while a.piece < len(a.pieces) and len(a.pieces[a.piece].notes) == 0:
            a.piece_start += a.pieces[a.piece].bars * bar  # a silent piece stays silent
            a.piece += 1
        if a.piece >= len(a.pieces):
            a.decode = None
            if not a.first_note and not a.speculative:
                self.stats.empty_answers += 1
            return
        a.decode = self._begin_piece(a.pieces[a.piece])

    def _begin_piece(self, piece: Melody, k: int = 0) -> RestyleDecode:
        """Candidate k of a piece (k > 0 only for a prepared answer's first piece: each its own seed)."""
        t0 = time.perf_counter()
        seed = self.settings.sampling.seed
        decode = self.restyler.begin(piece, self.settings,
                                     seed=candidate_seed(seed, self.settings.candidates, k) if k else None)
        self.stats.encode_ms.append((time.perf_counter() - t0) * 1000.0)
        return decode

    def _note(self, a: _Answer, tick: int, on: bool, pitch: int, velocity: int) -> None:
        if a.speculative:
            a.held.append((tick, on, pitch, velocity))
            a.first_note = a.first_note or on
            return
        if on:
            if pitch in a.sounding:
                self.send_clock_note(a.tag, tick, False, pitch, 0)
            a.sounding.add(pitch)
        elif pitch in a.sounding:
            a.sounding.discard(pitch)
        else:
            return
        self.send_clock_note(a.tag, tick, on, pitch, velocity)
        if on and not a.first_note:
            a.first_note = True
            self.stats.ready_detail.append((round((time.perf_counter() - a.decided_time) * 1000.0, 3), a.began))

    def send_clock_note(self, tag: str, tick: int, on: bool, pitch: int, velocity: int) -> None:
        """A note at clock `tick` (this mode has no stream offset: its streams are per phrase)."""
        ch = self.config.channel
        data = (0x90 | ch, pitch, max(1, velocity)) if on else (0x80 | ch, pitch, 0)
        self.scheduler.schedule(self.clock.time_at(tick), data, tag)
        if on:
            self.stats.notes_scheduled += 1

    def _cut(self, cmd: Cut) -> None:
        a = self._answer
        if a is None or (cmd.id is not None and cmd.id != a.id):
            return
        self._answer = None
        if a.speculative:
            return
        self.scheduler.cut(a.tag, wait=None)  # its sounding notes end now, on the wire; its later ones never come
        if a.decode is not None or cmd.tick < a.end:  # still being written, or written whole and still playing
            self.stats.cut_ins += 1

    def _end_now(self, clock_tick: float) -> None:
        if self._answer is not None:
            self._cut(Cut(self._answer.id, clock_tick))


# -- the mode, on the conductor thread ------------------------------------------------------------------


class Restyle(Mode):
    """The conversation's turn-taking on the conductor thread; the restyled phrases on its RestylePart."""

    name = "restyle"
    task = "RESTYLE"

    def __init__(self, context: PartContext, preset) -> None:
        super().__init__(context, preset)
        self.conversation = Conversation(conversation_config(preset, span=True))
        self.preset = preset
        self.settings = settings_from(preset, self.config)
        self._expect: ExpectResponse | None = None
        self._phrase_start: float | None = None
        self.part = self._new_part()

    def _new_part(self) -> RestylePart:
        c = self.context
        return RestylePart(c.session, c.vocab, c.clock, c.scheduler, self.config, self.settings,
                           supervisor=c.supervisor, name=f"{c.name} restyle", tag_prefix=f"{c.name}:")

    @property
    def thread(self) -> RestylePart:
        return self.part

    def start(self) -> None:
        self.part.start()

    def stop(self, timeout: float = 0.5) -> None:
        self.part.stop(timeout)

    def restart(self) -> None:
        self.part = self._new_part()
        self.part.start()

    # -- in ----------------------------------------------------------------------------------------

    def player(self, tick: float, data: tuple) -> None:
        self._expect = None
        actions = self.conversation.player(tick, data)
        for action in actions:
            if isinstance(action, CutIn):
                self._act(action)
        self.part.submit(PlayerEvent(tick, data))
        for action in actions:
            if not isinstance(action, CutIn):
                self._act(action)

    def poll(self, tick: float) -> None:
        if self._expect is not None:
            e = self._expect
            self.part.submit(Prepare(e.phrase_start, e.start_tick, e.end_tick))
            self._expect = None
        for action in self.conversation.poll(tick):
            self._act(action)

    def cancel(self, tick: float) -> None:
        action = self.conversation.cancel(tick)
        if action is not None:
            self._act(action)

    def clock_jump(self, tick: float) -> None:
        self.conversation.reset()
        self.part.submit(Rebase(tick))

    def configure(self, preset, config: PartConfig) -> None:
        if preset is not None:
            self.preset = preset
            self.conversation.configure(conversation_config(preset, span=True))
            r = preset.restyle
            self._set(r.style, r.amount, r.keep)
        self.config = config
        self.part.submit(Configure(config))

    def control(self, name: str, value) -> bool:
        s = self.settings
        if name == "style":
            self._set(STYLE_NAMES[min(len(STYLE_NAMES) - 1, int(value) * len(STYLE_NAMES) // 128)], s.amount, s.keep)
            return True
        if name == "amount":
            self._set(s.style, round(int(value) / 127.0, 3), s.keep)
            return True
        if name == "program" and self.preset.restyle.style_programs and 0 <= int(value) < len(STYLE_NAMES):
            self._set(STYLE_NAMES[int(value)], s.amount, s.keep)
            return True
        return False

    def _set(self, style: str, amount: float, keep: str) -> None:
        self.settings = replace(self.settings, style=style, amount=amount, keep=keep)
        self.part.submit(SetRestyle(style, amount, keep))
        log.info("restyle: as %s, amount %.2f, keep %s", style, amount, keep)

    def _act(self, action) -> None:
        if isinstance(action, ExpectResponse):
            if self.context.prepare:
                self._expect = action
        elif isinstance(action, StartResponse):
            self.part.submit(Play(action.id, action.phrase.start_tick, action.start_tick, action.end_tick,
                                  time.perf_counter()))
            log.debug("phrase ended (%s); restyled %d from tick %d to %d", action.phrase.reason, action.id,
                      action.start_tick, action.end_tick)
        elif isinstance(action, CutIn):
            self.context.scheduler.cut(self.part.tag(action.id), wait=None)
            self.part.submit(Cut(action.id, action.tick))
        elif isinstance(action, ResponseDone):
            log.debug("restyled %d done", action.id)

    # -- status ------------------------------------------------------------------------------------

    def status(self) -> dict:
        stats = self.part.stats
        return {"state": self.conversation.state, "answers": stats.answers, "cut_ins": stats.cut_ins,
                "ready_ms": stats.ready_ms, "player_events": stats.player_events}


__all__ = ["Restyle", "RestylePart", "restyle_tag"]
