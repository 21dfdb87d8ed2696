"""The conductor thread: reads the player's messages, maps the preset's CCs and Program Change, and
tells every part (mode) what happened, in the order it happened (see `engine.live.modes.base`).

It knows nothing of any mode: no phrase ends, no answers. It stamps each message with its clock tick,
hands it to every part, lets every part look at the clock after each batch, and turns clock events
(Start, Stop, Song Position) and panic into the parts' cancel and clock_jump.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import TYPE_CHECKING

from engine.live.midi.input import MidiEvent

if TYPE_CHECKING:
    from engine.live.daemon import Daemon

log = logging.getLogger("sideman.daemon")

CONDUCTOR_POLL_S = 0.002
MAX_BATCH = 512  # messages handled before the parts look at the clock again


class Conductor(threading.Thread):
    """Reads the player's messages, tells the parts, handles the controls."""

    def __init__(self, daemon: "Daemon") -> None:
        super().__init__(name="conductor", daemon=True)
        self.d = daemon
        self.controls: queue.SimpleQueue = queue.SimpleQueue()  # ("clock", event) | ("cancel",) | ("panic",)
        self.error: BaseException | None = None
        self.notes_in = 0
        self.filtered = 0
        self._halt = threading.Event()

    def stop(self, timeout: float = 1.0) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout)

    def post(self, *item) -> None:
        self.controls.put(item)

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - recorded and reported
            self.error = exc
            log.exception("conductor thread failed")
            self.d.supervise(self.name, exc)

    def _loop(self) -> None:
        inbox = self.d.poller.queue
        clock = self.d.clock
        while not self._halt.is_set():
            try:
                event = inbox.get(timeout=CONDUCTOR_POLL_S)
            except queue.Empty:
                event = None
            n = 0
            while event is not None:
                self._player(event)
                n += 1
                if n >= MAX_BATCH:
                    break
                try:
                    event = inbox.get_nowait()
                except queue.Empty:
                    event = None
            tick = clock.tick_now()
            for part in self.d.parts:
                part.poll(tick)
            self._controls()

    # -- the player's messages -------------------------------------------------------------------

    def _player(self, event: MidiEvent) -> None:
        d = self.d
        channel = event.channel
        if channel is None:
            return  # system messages other than clock: nothing to play
        wanted = d.preset.channels.input_index
        if wanted is not None and channel != wanted:
            self.filtered += 1
            return
        data = event.data
        kind = data[0] & 0xF0
        if kind == 0xC0:
            d.program_change(self, data[1])
            return
        if kind == 0xB0 and self._mapped_cc(data[1], data[2]):
            return
        if kind == 0x90 and data[2] > 0:
            self.notes_in += 1
            d.monitor.note_on(0, data[1], data[2])
        elif kind in (0x80, 0x90):
            d.monitor.note_off(0, data[1])
        tick = d.clock.tick_at(event.time)
        for part in d.parts:
            part.player(tick, data)

    def _mapped_cc(self, number: int, value: int) -> bool:
        d = self.d
        cc = d.preset.cc
        if number == cc.panic:
            if value >= 64:
                self.panic()
            return True
        if number == cc.temperature:
            d.set_temperature(value)
            return True
        if number == cc.response_length:
            bars = None if value == 0 else 1 + (value - 1) * 8 // 127
            taken = [part.control("response_length", bars) for part in d.parts]
            if any(taken):
                log.info("response length: %s", "match" if bars is None else f"{bars} bars")
            return True
        if number == cc.mode:
            d.set_mode(d.mode_for_cc(value))
            return True
        for name in ("voice_alto", "voice_tenor", "voice_bass", "commit_ms", "lookahead", "style", "amount"):
            if number == getattr(cc, name):
                if not any([part.control(name, value) for part in d.parts]):
                    log.info("CC %d (%s): not used by the %s mode", number, name, d.mode)
                return True
        return False

    # -- controls ----------------------------------------------------------------------------------

    def cancel(self) -> None:
        """Every part ends what it plays now (keeping what was played)."""
        tick = self.d.clock.tick_now()
        for part in self.d.parts:
            part.cancel(tick)

    def panic(self) -> None:
        self.cancel()
        self.d.scheduler.panic(wait=0.2)
        log.info("panic: all notes off on every channel")

    def _controls(self) -> None:
        while True:
            try:
                item = self.controls.get_nowait()
            except queue.Empty:
                return
            kind = item[0]
            if kind == "clock":
                self._clock_event(item[1])
            elif kind == "cancel":
                self.cancel()
            elif kind == "panic":
                self.panic()

    def _clock_event(self, event: str) -> None:
        d = self.d
        self.cancel()
        if event == "stop":
            d.scheduler.flush(wait=0.2)
            d.output.all_notes_off(channels=d.output_channels(), notes=())
            log.info("clock stopped: all notes off")
            return
        tick = d.clock.tick_now()
        for part in d.parts:
            part.clock_jump(tick)
        log.info("clock %s at tick %.0f", event, tick)
