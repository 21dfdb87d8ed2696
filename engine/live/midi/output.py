"""The MIDI output edge: `send(bytes)` that never raises into the realtime loop.

Errors are counted and logged once per kind. In connect mode (an existing port, e.g. loopMIDI) a
small watcher thread checks about once a second that the port is still listed and reconnects
when it returns; sends while it is gone are dropped and counted.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Iterable

import rtmidi

from engine.live.midi import ports
from engine.live.midi.ports import PortSpec

log = logging.getLogger(__name__)

CC_SUSTAIN = 64
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123


@dataclass
class OutputStats:
    sent: int = 0
    errors: int = 0  # the backend refused a message (bad bytes, port error)
    dropped_disconnected: int = 0
    reconnects: int = 0


class MidiOutput:
    """Wraps an open rtmidi MidiOut (from `opener`, default `ports.open_output(spec)`)."""

    def __init__(self, spec: PortSpec, *, opener: Callable[[], object] | None = None, recheck_s: float = 1.0):
        self.spec = spec
        self.stats = OutputStats()
        self._opener = opener or (lambda: ports.open_output(spec))
        self._midi = None
        self._connected = False
        self._lock = threading.Lock()
        self._logged: set[str] = set()
        self._recheck_s = recheck_s
        self._stop_event = threading.Event()
        self._watcher: threading.Thread | None = None

    def open(self) -> "MidiOutput":
        """Open the port (raises MidiPortError); in connect mode also start the reconnect watcher."""
        self._midi = self._opener()
        self._connected = True
        if self.spec.connect:
            self._watcher = threading.Thread(target=self._watch, name=f"midi-out watch {self.spec.name}", daemon=True)
            self._watcher.start()
        return self

    def close(self) -> None:
        self._stop_event.set()
        if self._watcher is not None:
            self._watcher.join(2 * self._recheck_s)
        with self._lock:
            if self._midi is not None:
                ports.release(self._midi)
                self._midi = None
            self._connected = False

    def __enter__(self) -> "MidiOutput":
        return self.open() if self._midi is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._connected

    def send(self, data) -> bool:
        """Send one message; True when the backend took it. Never raises."""
        with self._lock:
            if not self._connected:
                self.stats.dropped_disconnected += 1
                return False
            try:
                self._midi.send_message(data)
            except (rtmidi.RtMidiError, ValueError, OverflowError, TypeError) as exc:
                self.stats.errors += 1
                self._log_once(type(exc).__name__, "MIDI output %r refused a message (%s); further ones are only counted", exc)
                return False
        self.stats.sent += 1
        return True

    def all_notes_off(self, channels: Iterable[int] = range(16), notes: Iterable[tuple[int, int]] | None = None) -> None:
        """Silence everything: explicit note-offs, then sustain off, All Notes Off (CC 123) and All Sound Off
        (CC 120) on each channel. `notes` are (channel, pitch) pairs known to sound; None means every
        pitch on every given channel (for synths that ignore CC 123)."""
        channels = list(channels)
        if notes is None:
            notes = ((ch, pitch) for ch in channels for pitch in range(128))
        for ch, pitch in notes:
            self.send((0x80 | ch, pitch, 0))
        for ch in channels:
            self.send((0xB0 | ch, CC_SUSTAIN, 0))
            self.send((0xB0 | ch, CC_ALL_NOTES_OFF, 0))
            self.send((0xB0 | ch, CC_ALL_SOUND_OFF, 0))

    # -- reconnecting (connect mode) -----------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop_event.wait(self._recheck_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must keep watching
                log.exception("MIDI output watcher failed once; still watching")

    def check(self) -> None:
        """Notice a vanished port and reconnect when it is listed again."""
        if self._midi is None:
            return
        present = ports.port_present(self._midi, self.spec)
        if self._connected and not present:
            with self._lock:
                self._connected = False
            log.warning("MIDI output %r vanished; reconnecting when it returns", self.spec.name)
        elif not self._connected and present:
            with self._lock:
                ok = ports.reconnect(self._midi, self.spec)
                self._connected = ok
            if ok:
                self.stats.reconnects += 1
                log.info("MIDI output %r is back", self.spec.name)

    def _log_once(self, key: str, fmt: str, *args) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(fmt, self.spec.name, *args)
