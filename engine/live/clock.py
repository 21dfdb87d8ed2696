"""Musical time: monotonic seconds <-> ticks (24 per quarter note, MIDI clock's own 24 ppqn).

`InternalClock` runs at a preset tempo; `ExternalClock` follows MIDI clock (0xF8 pulses, Start,
Continue, Stop, Song Position Pointer) with a tempo estimated by least squares over the last
pulses, so jitter of a millisecond or two moves the estimate by a small fraction of a percent.
Tick 0 is the downbeat of bar 1; bars are `meter.bar_ticks` long.

Both clocks are safe to read from any thread; ExternalClock is fed from the input poller thread.
Listeners hear "start", "continue", "stop" and "position" (called from the feeding thread; keep
them short). On "stop" the engine sends all notes off.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

TICKS_PER_QUARTER = 24
TICKS_PER_SIXTEENTH = 6  # Song Position Pointer counts sixteenths

MIDI_CLOCK = 0xF8
MIDI_START = 0xFA
MIDI_CONTINUE = 0xFB
MIDI_STOP = 0xFC
MIDI_SONG_POSITION = 0xF2

ALLOWED_DENOMINATORS = (1, 2, 4, 8, 16, 32)

Listener = Callable[[str, "Clock"], None]


@dataclass(frozen=True)
class Meter:
    numerator: int = 4
    denominator: int = 4

    def __post_init__(self) -> None:
        if not (isinstance(self.numerator, int) and 1 <= self.numerator <= 32):
            raise ValueError(f"meter numerator must be an integer 1..32, got {self.numerator!r}")
        if self.denominator not in ALLOWED_DENOMINATORS:
            raise ValueError(f"meter denominator must be one of {ALLOWED_DENOMINATORS}, got {self.denominator!r}")

    @property
    def beat_ticks(self) -> int:
        """One beat: the denominator's note value (a quarter in 4/4, an eighth in 6/8)."""
        return TICKS_PER_QUARTER * 4 // self.denominator

    @property
    def bar_ticks(self) -> int:
        return TICKS_PER_QUARTER * 4 * self.numerator // self.denominator

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator}"


def bpm_to_seconds_per_tick(bpm: float) -> float:
    return 60.0 / (bpm * TICKS_PER_QUARTER)


def _next_multiple(tick: float, step: int) -> int:
    """The first multiple of `step` at or after `tick` (a tick a hair past a boundary counts as on it)."""
    return int(math.ceil(tick / step - 1e-9)) * step


class Clock:
    """What both clocks share: the tick <-> time mapping around an anchor, meter and listeners."""

    def __init__(self, meter: Meter, bpm: float, time_fn: Callable[[], float] = time.perf_counter) -> None:
        if not bpm > 0:
            raise ValueError(f"tempo must be positive, got {bpm!r} BPM")
        self.meter = meter
        self._time = time_fn
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._running = False
        self._hold = False  # running but waiting for the first pulse: time does not move yet
        self._anchor_time = time_fn()
        self._anchor_tick = 0.0
        self._spt = bpm_to_seconds_per_tick(bpm)

    # -- reading -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def bpm(self) -> float:
        return 60.0 / (self._spt * TICKS_PER_QUARTER)

    @property
    def seconds_per_tick(self) -> float:
        return self._spt

    def now(self) -> float:
        return self._time()

    def tick_at(self, t: float) -> float:
        """The (fractional) tick at monotonic time t; frozen at the stop position while stopped."""
        with self._lock:
            if not self._running or self._hold:
                return self._anchor_tick
            return self._anchor_tick + (t - self._anchor_time) / self._spt

    def time_at(self, tick: float) -> float:
        """The monotonic time at which `tick` falls at the current tempo."""
        with self._lock:
            return self._anchor_time + (tick - self._anchor_tick) * self._spt

    def tick_now(self) -> float:
        return self.tick_at(self._time())

    def next_beat_tick(self, t: float | None = None) -> int:
        return _next_multiple(self.tick_at(self._time() if t is None else t), self.meter.beat_ticks)

    def next_bar_tick(self, t: float | None = None) -> int:
        return _next_multiple(self.tick_at(self._time() if t is None else t), self.meter.bar_ticks)

    # -- listeners -----------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, event: str) -> None:
        for listener in list(self._listeners):
            listener(event, self)


class InternalClock(Clock):
    """A clock at a set tempo; `start()` puts tick 0 (or `tick`) at time t."""

    def __init__(self, bpm: float, meter: Meter = Meter(), time_fn: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(meter, bpm, time_fn)

    def start(self, t: float | None = None, tick: float = 0.0) -> None:
        with self._lock:
            self._anchor_time = self._time() if t is None else t
            self._anchor_tick = float(tick)
            self._running = True
        self._notify("start")

    def stop(self, t: float | None = None) -> None:
        t = self._time() if t is None else t
        with self._lock:
            if self._running:
                self._anchor_tick += (t - self._anchor_time) / self._spt
                self._anchor_time = t
            self._running = False
        self._notify("stop")

    def set_bpm(self, bpm: float, t: float | None = None) -> None:
        """Change tempo at time t without moving the tick at t."""
        if not bpm > 0:
            raise ValueError(f"tempo must be positive, got {bpm!r} BPM")
        t = self._time() if t is None else t
        with self._lock:
            if self._running:
                self._anchor_tick += (t - self._anchor_time) / self._spt
            self._anchor_time = t
            self._spt = bpm_to_seconds_per_tick(bpm)


class ExternalClock(Clock):
    """Follows MIDI clock. Feed it with `handle_message(t, data)` (the input poller's clock sink).

    The tempo is the least-squares slope of pulse time against pulse number over the last
    `window` pulses (48 = two beats); the mapping is anchored on the fitted line, not on the last
    (jittery) pulse. A gap longer than `gap_factor` times the current interval restarts the fit.
    Until two pulses have arrived the tempo is `fallback_bpm`.
    """

    def __init__(
        self,
        meter: Meter = Meter(),
        fallback_bpm: float = 120.0,
        window: int = 48,
        gap_factor: float = 4.0,
        time_fn: Callable[[], float] = time.perf_counter,
    ) -> None:
        super().__init__(meter, fallback_bpm, time_fn)
        if window < 2:
            raise ValueError("the tempo window needs at least 2 pulses")
        self._pulses: deque[tuple[int, float]] = deque(maxlen=window)  # (tick, time)
        self._next_tick = 0
        self._gap_factor = gap_factor
        self.pulses_received = 0

    @property
    def position_ticks(self) -> int:
        """The tick the next clock pulse will mark."""
        return self._next_tick

    def handle_message(self, t: float, data) -> None:
        status = data[0]
        if status == MIDI_CLOCK:
            self.pulse(t)
        elif status == MIDI_START:
            self.start(t)
        elif status == MIDI_CONTINUE:
            self.continue_(t)
        elif status == MIDI_STOP:
            self.stop(t)
        elif status == MIDI_SONG_POSITION and len(data) == 3:
            self.song_position((data[2] << 7) | data[1])

    def pulse(self, t: float) -> None:
        self.pulses_received += 1
        with self._lock:
            if not self._running:
                return  # clock while stopped keeps a DAW's tempo visible but does not move us
            tick = self._next_tick
            self._next_tick += 1
            if self._pulses and t - self._pulses[-1][1] > self._gap_factor * self._spt:
                self._pulses.clear()  # a dropout or a jump: the old line no longer holds
            self._pulses.append((tick, t))
            self._hold = False
            self._fit()

    def _fit(self) -> None:
        n = len(self._pulses)
        last_tick, last_time = self._pulses[-1]
        if n >= 2:
            # Least squares of time on tick, ticks centred for numerical stability.
            mean_k = sum(k for k, _ in self._pulses) / n
            mean_t = sum(s for _, s in self._pulses) / n
            sxx = sum((k - mean_k) ** 2 for k, _ in self._pulses)
            sxy = sum((k - mean_k) * (s - mean_t) for k, s in self._pulses)
            if sxx > 0 and sxy > 0:
                self._spt = sxy / sxx
            self._anchor_tick = float(last_tick)
            self._anchor_time = mean_t + (last_tick - mean_k) * self._spt
        else:
            self._anchor_tick = float(last_tick)
            self._anchor_time = last_time

    def start(self, t: float) -> None:
        with self._lock:
            self._next_tick = 0
            self._pulses.clear()
            self._anchor_tick = 0.0
            self._anchor_time = t
            self._running = True
            self._hold = True  # the first pulse after Start is tick 0
        self._notify("start")

    def continue_(self, t: float) -> None:
        with self._lock:
            self._pulses.clear()
            self._anchor_tick = float(self._next_tick)
            self._anchor_time = t
            self._running = True
            self._hold = True
        self._notify("continue")

    def stop(self, t: float) -> None:
        with self._lock:
            if self._running and not self._hold:
                line = self._anchor_tick + (t - self._anchor_time) / self._spt
                self._anchor_tick = min(max(line, 0.0), float(self._next_tick))
            self._anchor_time = t
            self._running = False
            self._hold = False
        self._notify("stop")

    def song_position(self, sixteenths: int) -> None:
        with self._lock:
            self._next_tick = sixteenths * TICKS_PER_SIXTEENTH
            self._anchor_tick = float(self._next_tick)
            self._pulses.clear()
        self._notify("position")
