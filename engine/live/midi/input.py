"""The MIDI input edge: a thread that polls the port, timestamps, validates and routes messages.

Realtime rules of this thread (measured here, see DESIGN.md):
- It polls `get_message()`; it never installs an rtmidi callback. A Python callback runs in the
  backend's realtime thread waiting for the GIL, and JACK then lost 9-49 % of a 1000-message burst.
- Each message is stamped with `time.perf_counter()` the moment it is taken from the port.
- It only validates and enqueues: malformed messages and sysex are dropped and counted, clock
  messages (0xF8 0xFA 0xFB 0xFC 0xF2) go to the clock sink, everything else goes on `queue`.
- It sleeps (`idle_sleep_s`) only when the port had nothing; a burst is drained without sleeping.
- A port that vanishes is logged once and reopened when it returns (checked about once a second);
  an unexpected exception is recorded in `error` and reported to the supervisor, never swallowed.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable

import rtmidi

from engine.errors import MidiPortError
from engine.live.midi import ports
from engine.live.midi.ports import PortSpec

log = logging.getLogger(__name__)

CLOCK_STATUSES = frozenset((0xF8, 0xFA, 0xFB, 0xFC, 0xF2))
SYSEX = 0xF0
SYSEX_END = 0xF7

# Length of each status's message; None for undefined statuses (0xF4 0xF5 0xF9 0xFD).
_SYSTEM_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1, 0xFE: 1, 0xFF: 1}


def message_length(status: int) -> int | None:
    """Expected length in bytes of a non-sysex message with this status byte, or None if undefined."""
    if 0x80 <= status < 0xF0:
        return 2 if 0xC0 <= status < 0xE0 else 3
    return _SYSTEM_LENGTH.get(status)


def is_valid(data) -> bool:
    """A complete, well-formed MIDI message (sysex: F0 ... F7 with 7-bit data in between)."""
    if not data:
        return False
    status = data[0]
    if status == SYSEX:
        return len(data) >= 2 and data[-1] == SYSEX_END and all(0 <= b < 0x80 for b in data[1:-1])
    if len(data) != message_length(status):
        return False
    return all(0 <= b < 0x80 for b in data[1:])


@dataclass(frozen=True, slots=True)
class MidiEvent:
    """One incoming message: `time` is time.perf_counter() at arrival, `data` its bytes."""

    time: float
    data: tuple[int, ...]

    @property
    def status(self) -> int:
        return self.data[0] & 0xF0 if self.data[0] < 0xF0 else self.data[0]

    @property
    def channel(self) -> int | None:
        """0-based channel of a channel message, None for system messages."""
        return self.data[0] & 0x0F if self.data[0] < 0xF0 else None


ClockSink = Callable[[float, tuple], None]
Supervisor = Callable[[str, BaseException], None]


@dataclass
class InputStats:
    received: int = 0  # everything taken from the port
    queued: int = 0
    clock: int = 0  # routed to the clock sink
    sysex: int = 0  # dropped
    malformed: int = 0  # dropped
    sink_errors: int = 0  # the clock sink raised
    port_errors: int = 0
    reconnects: int = 0


class InputPoller(threading.Thread):
    """Polls one MIDI input port from its own thread; events for the engine appear on `queue`.

    `opener` builds the open rtmidi MidiIn (default: `ports.open_input(spec)`); tests may pass a fake.
    `clock_sink(t, data)` receives clock messages (called from this thread; keep it short).
    `supervisor(thread_name, exc)` hears about failures (port errors and unexpected exceptions).
    """

    def __init__(
        self,
        spec: PortSpec,
        *,
        clock_sink: ClockSink | None = None,
        supervisor: Supervisor | None = None,
        opener: Callable[[], object] | None = None,
        idle_sleep_s: float = 0.0003,
        recheck_s: float = 1.0,
    ) -> None:
        super().__init__(name=f"midi-in {spec.name}", daemon=True)
        self.spec = spec
        self.queue: queue.SimpleQueue[MidiEvent] = queue.SimpleQueue()
        self.stats = InputStats()
        self.error: BaseException | None = None
        self._clock_sink = clock_sink
        self._supervisor = supervisor
        self._opener = opener or (lambda: ports.open_input(spec))
        self._idle_sleep_s = idle_sleep_s
        self._recheck_s = recheck_s
        self._stop_event = threading.Event()
        self._midi = None
        self._connected = False
        self._started = threading.Event()

    # -- control (any thread) ------------------------------------------------------------------

    def open(self) -> None:
        """Open the port now (raises MidiPortError), so a bad port fails at startup, not later."""
        self._midi = self._opener()
        self._connected = True

    def stop(self, timeout: float = 1.0) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout)

    @property
    def connected(self) -> bool:
        return self._connected

    # -- the thread ----------------------------------------------------------------------------

    def run(self) -> None:
        try:
            if self._midi is None:
                self._open_or_wait()
            self._poll_loop()
        except BaseException as exc:  # noqa: BLE001 - recorded and reported, never silent
            self.error = exc
            log.exception("MIDI input thread failed")
            self._report(exc)
        finally:
            if self._midi is not None:
                ports.release(self._midi)
                self._midi = None

    def _poll_loop(self) -> None:
        stop = self._stop_event
        sleep = time.sleep
        now = time.perf_counter
        idle = self._idle_sleep_s
        next_check = now() + self._recheck_s
        while not stop.is_set():
            if not self._connected:
                self._try_reopen()
                if not self._connected:
                    stop.wait(self._recheck_s)
                    continue
            try:
                msg = self._midi.get_message()
            except rtmidi.RtMidiError as exc:
                self._lost(exc)
                continue
            if msg is None:
                if now() >= next_check:
                    next_check = now() + self._recheck_s
                    self._check_present()
                sleep(idle)
                continue
            self.handle(now(), msg[0])

    def handle(self, t: float, data) -> None:
        """Route one message taken from the port at time `t` (public so tests can drive it)."""
        stats = self.stats
        stats.received += 1
        if not is_valid(data):
            if data and data[0] == SYSEX:
                stats.sysex += 1  # truncated sysex: still sysex
            else:
                stats.malformed += 1
            return
        status = data[0]
        if status == SYSEX:
            stats.sysex += 1
            return
        if status in CLOCK_STATUSES:
            stats.clock += 1
            if self._clock_sink is not None:
                try:
                    self._clock_sink(t, tuple(data))
                except Exception as exc:  # noqa: BLE001 - the sink's bug must not stop input
                    stats.sink_errors += 1
                    if stats.sink_errors == 1:
                        log.exception("the clock sink raised; further errors are only counted")
                        self._report(exc)
            return
        self.queue.put(MidiEvent(t, tuple(data)))
        stats.queued += 1

    # -- vanishing and returning ports ---------------------------------------------------------

    def _check_present(self) -> None:
        if self.spec.connect and not ports.port_present(self._midi, self.spec):
            self._lost(MidiPortError(f"MIDI input port {self.spec.name!r} vanished"))

    def _lost(self, exc: BaseException) -> None:
        self.stats.port_errors += 1
        self._connected = False
        log.warning("MIDI input %r lost (%s); reopening it when it returns", self.spec.name, exc)
        self._report(exc)

    def _try_reopen(self) -> None:
        if self.spec.connect and self._midi is not None:
            ok = ports.reconnect(self._midi, self.spec)
        else:
            if self._midi is not None:
                ports.close(self._midi)
                self._midi = None
            try:
                self._midi = self._opener()
                ok = True
            except MidiPortError as exc:
                log.debug("reopening MIDI input failed: %s", exc)
                ok = False
        if ok:
            self._connected = True
            self.stats.reconnects += 1
            log.info("MIDI input %r is back", self.spec.name)

    def _open_or_wait(self) -> None:
        try:
            self.open()
        except MidiPortError as exc:
            self._lost(exc)

    def _report(self, exc: BaseException) -> None:
        if self._supervisor is not None:
            try:
                self._supervisor(self.name, exc)
            except Exception:  # noqa: BLE001
                log.exception("the supervisor callback raised")
