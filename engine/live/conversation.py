"""Call and response: when the player's phrase ends, when the answer starts and ends, when the player
cuts in. Pure logic on clock ticks (no threads, no clock of its own, no torch).

States:
    listening   the player plays (or nobody does); the phrase detector watches
    waiting     a phrase ended; the answer is being generated and starts at `start_tick`
    responding  the answer plays until `end_tick`

Feed the player's messages with `player(tick, data)` and call `poll(tick)` every few milliseconds;
both return actions for the engine:
    StartResponse   generate an answer for [start_tick, end_tick) (decided at `decided_tick`)
    ExpectResponse  every key is up: if the silence lasts, this answer comes (prepare it ahead)
    CutIn           the player played a note during an answer: stop it now, keep what was played
    ResponseDone    the answer reached its end; listening again
`cancel(tick)` ends an answer for reasons outside the conversation (Stop, panic, preset switch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from engine.live.clock import Meter
from engine.live.phrase import PhraseConfig, PhraseDetector, PhraseEnd

LISTENING = "listening"
WAITING = "waiting"
RESPONDING = "responding"

MATCH_MAX_BARS = 16  # a "match" answer is never longer than this
MIN_LEAD_S = 0.03  # an answer starts at least this long after the phrase-end decision


@dataclass(frozen=True)
class ConversationConfig:
    phrase: PhraseConfig = PhraseConfig()
    meter: Meter = Meter()
    start: str = "bar"  # the answer starts on the next "beat" or "bar"
    length_bars: int | None = 4  # None: as long as the phrase (rounded up to beats or bars)
    min_lead_ticks: float = 1.0  # the answer starts at least this long after the decision
    span: bool = False  # the answer lasts the bars the phrase touched (`phrase_bars`), whatever length_bars says

    def __post_init__(self) -> None:
        if self.start not in ("beat", "bar"):
            raise ValueError(f"response start must be 'beat' or 'bar', got {self.start!r}")
        if self.length_bars is not None and self.length_bars < 1:
            raise ValueError(f"response length must be >= 1 bar, got {self.length_bars!r}")
        if self.min_lead_ticks < 0:
            raise ValueError("min_lead_ticks must be >= 0")

    @classmethod
    def from_preset(cls, preset, min_lead_ticks: float = 1.0) -> "ConversationConfig":
        p = preset.phrase
        return cls(
            phrase=PhraseConfig(p.silence_beats, p.end_cc, p.max_bars),
            meter=Meter(*preset.clock.meter),
            start=preset.response.start,
            length_bars=preset.response.length_bars,
            min_lead_ticks=min_lead_ticks,
        )


def conversation_config(preset, span: bool = False) -> ConversationConfig:
    """The preset's conversation, the answer at least MIN_LEAD_S after the decision (in the preset's ticks)."""
    spt = 60.0 / (preset.clock.bpm * 24)
    lead_ticks = max(1.0, math.ceil(MIN_LEAD_S / spt))
    return replace(ConversationConfig.from_preset(preset, min_lead_ticks=lead_ticks), span=span)


@dataclass(frozen=True)
class StartResponse:
    id: int
    phrase: PhraseEnd
    start_tick: int
    end_tick: int

    @property
    def decided_tick(self) -> float:
        return self.phrase.decided_tick


@dataclass(frozen=True)
class ExpectResponse:
    """The player let go of every key: if nothing else is played, the phrase ends at `decided_tick` and
    the answer will be [start_tick, end_tick). The engine may prepare that answer now, speculatively."""

    decided_tick: float
    start_tick: int
    end_tick: int
    phrase_start: float = 0.0  # the phrase's first note-on


@dataclass(frozen=True)
class CutIn:
    id: int
    tick: float


@dataclass(frozen=True)
class ResponseDone:
    id: int
    tick: float


Action = StartResponse | ExpectResponse | CutIn | ResponseDone


EARLY_TICKS = 3  # a phrase whose first note comes this little before a bar line starts on that bar line


def phrase_bars(first_onset: float, last_tick: float, bar_ticks: int, early: float = EARLY_TICKS) -> tuple[int, int]:
    """(the tick of the phrase's first bar line, how many bars it touches): from the bar line at or before
    its first note (or just after it: a note played a little early), to the bar line after its end."""
    first = int(math.floor((first_onset + early) / bar_ticks)) * bar_ticks
    last = max(last_tick, first + 1)
    return first, max(1, int(math.ceil((last - first) / bar_ticks - 1e-9)))


def _ceil_to(tick: float, step: int) -> int:
    return int(math.ceil(tick / step - 1e-9)) * step


def is_note_on(data) -> bool:
    return len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0


class Conversation:
    """The call-and-response state machine. Not thread-safe: one owner (the conductor) drives it."""

    def __init__(self, config: ConversationConfig = ConversationConfig()) -> None:
        self.config = config
        self.detector = PhraseDetector(config.phrase, config.meter)
        self.state = LISTENING
        self.current: StartResponse | None = None
        self._next_id = 1
        self._phrase_start = 0.0
        self.phrases = 0
        self.cut_ins = 0

    # -- configuration -----------------------------------------------------------------------------

    def configure(self, config: ConversationConfig) -> None:
        """A new configuration (preset switch): a fresh phrase detector; an answer in progress goes on."""
        self.config = config
        self.detector = PhraseDetector(config.phrase, config.meter)

    def set_length_bars(self, bars: int | None) -> None:
        self.config = replace(self.config, length_bars=bars)

    def response_ticks(self, phrase: PhraseEnd) -> int:
        """The answer's length in ticks: `length_bars`, or the phrase's length rounded up."""
        meter = self.config.meter
        if self.config.span:
            return min(MATCH_MAX_BARS, phrase_bars(phrase.start_tick, phrase.end_tick, meter.bar_ticks)[1]) \
                * meter.bar_ticks
        if self.config.length_bars is not None:
            return self.config.length_bars * meter.bar_ticks
        unit = meter.bar_ticks if self.config.start == "bar" else meter.beat_ticks
        length = max(unit, _ceil_to(phrase.length_ticks, unit))
        return min(length, MATCH_MAX_BARS * meter.bar_ticks)

    def start_tick(self, decided_tick: float) -> int:
        meter = self.config.meter
        unit = meter.bar_ticks if self.config.start == "bar" else meter.beat_ticks
        return _ceil_to(decided_tick + self.config.min_lead_ticks, unit)

    # -- events ----------------------------------------------------------------------------------

    def player(self, tick: float, data) -> list[Action]:
        """One message of the player's (already filtered to the input channel)."""
        actions: list[Action] = []
        if is_note_on(data) and self.state != LISTENING:
            actions.append(CutIn(self.current.id, tick))
            self.cut_ins += 1
            self._listen()
        detector = self.detector
        if not detector.in_phrase and is_note_on(data):
            self._phrase_start = tick
        holding = detector.holding
        end = detector.feed(tick, data)
        if end is not None and self.state == LISTENING:
            actions.append(self._respond(end))
        elif self.state == LISTENING and detector.in_phrase and holding and not detector.holding:
            actions.append(self._expect(tick))
        return actions

    def poll(self, tick: float) -> list[Action]:
        if self.state == LISTENING:
            end = self.detector.poll(tick)
            return [self._respond(end)] if end is not None else []
        current = self.current
        if self.state == WAITING and tick >= current.start_tick:
            self.state = RESPONDING
        if tick >= current.end_tick:
            self._listen()
            return [ResponseDone(current.id, tick)]
        return []

    def cancel(self, tick: float) -> CutIn | None:
        """End the current answer now (Stop, panic, preset switch); None if there is none."""
        if self.state == LISTENING:
            return None
        action = CutIn(self.current.id, tick)
        self._listen()
        return action

    def reset(self) -> None:
        """Forget the phrase in progress (the clock jumped); keys held stay held."""
        self.detector.reset()

    # -- internals -------------------------------------------------------------------------------

    def _expect(self, released: float) -> ExpectResponse:
        decided = released + self.detector.silence_ticks
        phrase = PhraseEnd("silence", self._phrase_start, released, decided)
        start = self.start_tick(decided)
        return ExpectResponse(decided, start, start + self.response_ticks(phrase), self._phrase_start)

    def _respond(self, end: PhraseEnd) -> StartResponse:
        start = self.start_tick(end.decided_tick)
        action = StartResponse(self._next_id, end, start, start + self.response_ticks(end))
        self._next_id += 1
        self.phrases += 1
        self.current = action
        self.state = WAITING
        return action

    def _listen(self) -> None:
        self.state = LISTENING
        self.current = None
