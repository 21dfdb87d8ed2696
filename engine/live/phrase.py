"""The phrase detector: decides when the player's phrase has ended. Pure logic on tick times.

A phrase starts with the first note-on. It ends
- after `silence_beats` beats with no key held and the sustain pedal (CC 64) up ("silence"),
- when the end-of-phrase controller `end_cc` goes to 64 or more ("cc"), or
- when it has lasted `max_bars` bars ("max_length"), keys held or not.
Feed events with `note_on`/`note_off`/`control_change` (or raw bytes with `feed`) and call
`poll(tick)` regularly (e.g. every few milliseconds, at the current clock tick).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.live.clock import Meter

CC_SUSTAIN = 64
PEDAL_DOWN = 64  # controller values >= 64 mean "on"


@dataclass(frozen=True)
class PhraseConfig:
    silence_beats: float = 2.0
    end_cc: int | None = None
    max_bars: int | None = 8

    def __post_init__(self) -> None:
        if not self.silence_beats > 0:
            raise ValueError(f"silence_beats must be > 0, got {self.silence_beats!r}")
        if self.end_cc is not None and not 0 <= self.end_cc <= 127:
            raise ValueError(f"end_cc must be 0..127 or None, got {self.end_cc!r}")
        if self.max_bars is not None and self.max_bars < 1:
            raise ValueError(f"max_bars must be >= 1 or None, got {self.max_bars!r}")


@dataclass(frozen=True)
class PhraseEnd:
    reason: str  # "silence" | "cc" | "max_length"
    start_tick: float  # first note-on
    end_tick: float  # when the last key/pedal was released (or the cc / length limit, if later)
    decided_tick: float  # when the detector decided

    @property
    def length_ticks(self) -> float:
        return self.end_tick - self.start_tick


class PhraseDetector:
    def __init__(self, config: PhraseConfig = PhraseConfig(), meter: Meter = Meter()) -> None:
        self.config = config
        self.meter = meter
        self.silence_ticks = config.silence_beats * meter.beat_ticks
        self.max_ticks = None if config.max_bars is None else config.max_bars * meter.bar_ticks
        self._held: dict[tuple[int, int], int] = {}
        self._pedal: set[int] = set()  # channels with the sustain pedal down
        self._start: float | None = None
        self._released: float | None = None  # when the last key/pedal went up (None while held)

    @property
    def in_phrase(self) -> bool:
        return self._start is not None

    @property
    def holding(self) -> bool:
        return bool(self._held) or bool(self._pedal)

    def reset(self) -> None:
        """Forget the current phrase (keys still held stay held)."""
        self._start = None
        self._released = None

    def note_on(self, tick: float, channel: int, pitch: int) -> None:
        key = (channel, pitch)
        self._held[key] = self._held.get(key, 0) + 1
        if self._start is None:
            self._start = tick
        self._released = None

    def note_off(self, tick: float, channel: int, pitch: int) -> None:
        key = (channel, pitch)
        count = self._held.get(key, 0)
        if count <= 1:
            self._held.pop(key, None)
        else:
            self._held[key] = count - 1
        self._mark_release(tick)

    def control_change(self, tick: float, channel: int, control: int, value: int) -> PhraseEnd | None:
        if control == CC_SUSTAIN:
            if value >= PEDAL_DOWN:
                self._pedal.add(channel)
                self._released = None
            else:
                self._pedal.discard(channel)
                self._mark_release(tick)
        if control == self.config.end_cc and value >= PEDAL_DOWN and self._start is not None:
            end = max(tick, self._released if self._released is not None else tick)
            return self._end("cc", end, tick)
        return None

    def feed(self, tick: float, data) -> PhraseEnd | None:
        """Raw MIDI bytes (note on/off, CC); other messages are ignored."""
        if len(data) != 3:
            return None
        kind, channel = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0x90 and data[2] > 0:
            self.note_on(tick, channel, data[1])
        elif kind == 0x80 or kind == 0x90:
            self.note_off(tick, channel, data[1])
        elif kind == 0xB0:
            return self.control_change(tick, channel, data[1], data[2])
        return None

    def poll(self, tick: float) -> PhraseEnd | None:
        """Whether the phrase has ended by `tick`; a phrase ends once (then the detector resets)."""
        if self._start is None:
            return None
        if self.max_ticks is not None and tick - self._start >= self.max_ticks:
            end = self._start + self.max_ticks
            return self._end("max_length", end, tick)
        if not self.holding and self._released is not None and tick - self._released >= self.silence_ticks:
            return self._end("silence", self._released, tick)
        return None

    def _mark_release(self, tick: float) -> None:
        if not self.holding and self._start is not None:
            self._released = tick

    def _end(self, reason: str, end_tick: float, decided: float) -> PhraseEnd:
        result = PhraseEnd(reason, self._start, end_tick, decided)
        self.reset()
        return result
