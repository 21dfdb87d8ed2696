"""The realtime daemon: builds everything from a preset, runs the threads, supervises them.

Threads (each owns one thing; they talk through queues):
    midi-in     InputPoller: polls the input port, stamps, routes clock messages to the clock
    conductor   filters the player's messages, maps CCs and Program Change, drives the Conversation
                (phrase ends, cut-ins) and forwards every message to the generator
    generator   owns the model session: prefills the player's events, generates answers ahead
    scheduler   sends timed events on time, closes every note on every path
    main        this object's `run()`: the status line, signals, and the supervisor

Every failure of a thread reaches `supervise()`: it closes all notes, then restarts the generator (up
to MAX_GENERATOR_RESTARTS times) or stops the daemon with exit code 1. Exit codes: 0 normal (also
SIGTERM), 1 error, 130 interrupted (SIGINT).
"""

from __future__ import annotations

import gc
import logging
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engine.clock import ExternalClock, InternalClock, Meter
from engine.conversation import (
    Conversation,
    ConversationConfig,
    CutIn,
    ExpectResponse,
    ResponseDone,
    StartResponse,
)
from engine.errors import ModelError, PresetError
from engine.generator import (
    Configure,
    Cut,
    Generator,
    GeneratorConfig,
    PlayerEvent,
    Prepare,
    Rebase,
    Respond,
    response_tag,
)
from engine.midi.input import InputPoller, MidiEvent
from engine.midi.output import MidiOutput
from engine.midi.ports import PortSpec
from engine.presets import MODES, PRESET_DIR, Preset, load_preset
from engine.scheduler import Scheduler, SchedulerConfig
from engine.vocab import DEFAULT_VOCAB

log = logging.getLogger("sideman.daemon")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

SWITCH_INTERVAL_S = 0.0005  # measured: with Python's 5 ms default the scheduler drops most notes
MAX_GENERATOR_RESTARTS = 3
MIN_LEAD_S = 0.03  # an answer starts at least this long after the phrase-end decision
CONDUCTOR_POLL_S = 0.002
PREFERRED_STYLES = ("essen", "oneill", "ryan", "aird", "bach")
REPO_ROOT = PRESET_DIR.parent


@dataclass(frozen=True)
class DaemonOptions:
    """Command-line overrides of the preset (None: the preset's value)."""

    midi_api: str | None = None
    input_name: str | None = None
    output_name: str | None = None
    connect: bool | None = None
    model: str | None = None
    bpm: float | None = None
    monitor: bool = False
    soundfont: str | None = None
    status_every: float = 10.0
    device: str = "auto"
    threads: int = 1  # torch threads for the decode step; 1 leaves the other cores to the scheduler and JACK
    prepare: bool = True  # generate the likely answer up to its first note while the player is silent
    realtime_priority: int | None = None  # SCHED_FIFO priority for the scheduler thread (e.g. 3: below JACK clients at 5)


def apply_options(preset: Preset, options: DaemonOptions) -> Preset:
    ports = preset.ports
    ports = replace(
        ports,
        api=options.midi_api or ports.api,
        input=options.input_name or ports.input,
        output=options.output_name or ports.output,
        connect=ports.connect if options.connect is None else options.connect,
    )
    clock = preset.clock if options.bpm is None else replace(preset.clock, bpm=float(options.bpm))
    return replace(preset, ports=ports, clock=clock, model=options.model or preset.model)


def resolve_model_path(model: str) -> Path:
    """A preset's model path: as given, else relative to the repository (presets say "models/x.pt")."""
    path = Path(model)
    if path.is_absolute() or path.exists():
        return path
    candidate = REPO_ROOT / path
    return candidate if candidate.exists() else path


def style_for(card: dict) -> str:
    """The style token to condition on: a collection the model was trained on (folk tunes first)."""
    training = card.get("training") or {}
    config = training.get("config") or {}
    collections = tuple(config.get("collections") or ())
    for style in PREFERRED_STYLES:
        if style in collections and style in DEFAULT_VOCAB.config.styles:
            return style
    for style in collections:
        if style in DEFAULT_VOCAB.config.styles:
            return style
    return "none"


def percentile(values, q: float) -> float | None:
    values = list(values)
    return float(np.percentile(values, q)) if values else None


class TeeOutput:
    """The scheduler's output: the MIDI port, plus the sideman's notes to the monitor (channel 1)."""

    def __init__(self, midi: MidiOutput, monitor=None) -> None:
        self.midi = midi
        self.monitor = monitor
        self.note_ons = 0

    def send(self, data) -> bool:
        ok = self.midi.send(data)
        kind = data[0] & 0xF0
        if kind == 0x90 and data[2] > 0:
            self.note_ons += 1
            if self.monitor is not None:
                self.monitor.note_on(1, data[1], data[2])
        elif kind in (0x80, 0x90) and self.monitor is not None:
            self.monitor.note_off(1, data[1])
        return ok

    def all_notes_off(self, channels=range(16), notes=None) -> None:
        self.midi.all_notes_off(channels, notes)
        if self.monitor is not None:
            self.monitor.all_notes_off()


# -- the conductor thread ------------------------------------------------------------------------


class Conductor(threading.Thread):
    """Reads the player's messages, drives the Conversation, talks to generator and scheduler."""

    def __init__(self, daemon: "Daemon") -> None:
        super().__init__(name="conductor", daemon=True)
        self.d = daemon
        self.conversation = Conversation(daemon.conversation_config(daemon.preset))
        self.controls: queue.SimpleQueue = queue.SimpleQueue()  # ("clock", event) | ("cancel",) | ...
        self.error: BaseException | None = None
        self.notes_in = 0
        self.filtered = 0
        self._expect: ExpectResponse | None = None
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
                if n >= 512:
                    break
                try:
                    event = inbox.get_nowait()
                except queue.Empty:
                    event = None
            if self._expect is not None:  # only the last release of a burst matters
                self.d.generator.submit(Prepare(self._expect.start_tick, self._expect.end_tick))
                self._expect = None
            self._controls()
            for action in self.conversation.poll(clock.tick_now()):
                self._act(action)

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
            self.d.program_change(self, data[1])
            return
        if kind == 0xB0 and self._mapped_cc(data[1], data[2]):
            return
        if kind == 0x90 and data[2] > 0:
            self.notes_in += 1
            d.monitor.note_on(0, data[1], data[2])
        elif kind in (0x80, 0x90):
            d.monitor.note_off(0, data[1])
        tick = d.clock.tick_at(event.time)
        self._expect = None  # superseded: the player played on
        actions = self.conversation.player(tick, data)
        for action in actions:
            if isinstance(action, CutIn):
                self._act(action)
        d.generator.submit(PlayerEvent(tick, data))
        for action in actions:
            if not isinstance(action, CutIn):
                self._act(action)

    def _mapped_cc(self, number: int, value: int) -> bool:
        cc = self.d.preset.cc
        if number == cc.panic:
            if value >= 64:
                self.panic()
            return True
        if number == cc.temperature:
            self.d.set_temperature(value)
            return True
        if number == cc.response_length:
            bars = None if value == 0 else 1 + (value - 1) * 8 // 127
            self.conversation.set_length_bars(bars)
            log.info("response length: %s", "match" if bars is None else f"{bars} bars")
            return True
        if number == cc.mode:
            mode = MODES[min(len(MODES) - 1, value * len(MODES) // 128)]
            self.d.set_mode(mode)
            return True
        return False

    # -- actions -----------------------------------------------------------------------------------

    def _act(self, action) -> None:
        d = self.d
        if isinstance(action, ExpectResponse):
            if d.options.prepare:
                self._expect = action  # sent once the messages waiting now are handled
        elif isinstance(action, StartResponse):
            d.generator.submit(Respond(action.id, action.start_tick, action.end_tick, time.perf_counter()))
            log.debug("phrase ended (%s); answer %d from tick %d to %d", action.phrase.reason, action.id,
                      action.start_tick, action.end_tick)
        elif isinstance(action, CutIn):
            d.scheduler.cut(response_tag(action.id), wait=None)
            d.generator.submit(Cut(action.id, action.tick))
            log.debug("cut-in at tick %.1f: answer %d stopped", action.tick, action.id)
        elif isinstance(action, ResponseDone):
            log.debug("answer %d done", action.id)

    def cancel(self) -> None:
        """End the current answer now (keeping what was played)."""
        action = self.conversation.cancel(self.d.clock.tick_now())
        if action is not None:
            self._act(action)

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
            elif kind == "configure":
                self.conversation.configure(item[1])

    def _clock_event(self, event: str) -> None:
        d = self.d
        self.cancel()
        if event == "stop":
            d.scheduler.flush(wait=0.2)
            d.output.all_notes_off(channels=[d.preset.channels.output_index], notes=())
            log.info("clock stopped: all notes off")
            return
        self.conversation.reset()
        d.generator.submit(Rebase(d.clock.tick_now()))
        log.info("clock %s at tick %.0f", event, d.clock.tick_now())


# -- the daemon ----------------------------------------------------------------------------------------


class Daemon:
    """Build with a preset and options; `start()` (raises SidemanError), then `run()` until stopped."""

    def __init__(self, preset: Preset, options: DaemonOptions = DaemonOptions()) -> None:
        self.options = options
        self.preset = apply_options(preset, options)
        self.mode = self.preset.mode
        self.clock = None
        self.output: TeeOutput | None = None
        self.midi_out: MidiOutput | None = None
        self.poller: InputPoller | None = None
        self.scheduler: Scheduler | None = None
        self.generator: Generator | None = None
        self.conductor: Conductor | None = None
        self.session = None
        self.model_path: Path | None = None
        self.monitor = None
        self.style = "none"
        self.gen_config = GeneratorConfig()
        self.generator_restarts = 0
        self.exit_code: int | None = None
        self.ready = threading.Event()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._froze_heap = False  # start() moves the startup heap out of the collector's reach
        self._close_lock = threading.Lock()
        self._old_switch: float | None = None
        self.started_at = time.monotonic()

    # -- building --------------------------------------------------------------------------------

    def conversation_config(self, preset: Preset) -> ConversationConfig:
        spt = 60.0 / (preset.clock.bpm * 24)
        lead_ticks = max(1.0, math.ceil(MIN_LEAD_S / spt))
        return ConversationConfig.from_preset(preset, min_lead_ticks=lead_ticks)

    def start(self) -> "Daemon":
        """Open ports, load the model, start the threads. Raises SidemanError (ports, model)."""
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def _start(self) -> None:
        p = self.preset
        if self.mode != "call_response":
            log.warning("mode %r is not available in this build; playing call_response", self.mode)
            self.mode = "call_response"
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        meter = Meter(*p.clock.meter)
        if p.clock.source == "midi":
            self.clock = ExternalClock(meter, fallback_bpm=p.clock.bpm)
            sink = self.clock.handle_message
        else:
            self.clock = InternalClock(p.clock.bpm, meter)
            sink = None
        api = p.ports.api
        self.midi_out = MidiOutput(PortSpec(p.ports.output, api=api, connect=p.ports.connect)).open()
        self.poller = InputPoller(PortSpec(p.ports.input, api=api, connect=p.ports.connect),
                                  clock_sink=sink, supervisor=self.supervise)
        self.poller.open()
        self._load_model()
        self.monitor = self._open_monitor()
        self.output = TeeOutput(self.midi_out, self.monitor)
        self.scheduler = Scheduler(self.output, SchedulerConfig(realtime_priority=self.options.realtime_priority),
                                   supervisor=self.supervise)
        self.gen_config = GeneratorConfig.from_preset(p, self.style)
        self.generator = self._new_generator()
        self.conductor = Conductor(self)
        # Everything loaded so far (torch, the model, the vocabulary) lives for the whole run: move it out
        # of the collector's reach, so a full collection during a jam walks only what the jam allocated
        # (a full walk of the startup heap took tens of ms: a stall in the middle of an answer).
        gc.collect()
        gc.freeze()
        self._froze_heap = True
        self.clock.add_listener(lambda event, _clock: self.conductor.post("clock", event))
        self.scheduler.start()
        self.generator.start()
        self.conductor.start()
        self.poller.start()
        if isinstance(self.clock, InternalClock):
            self.clock.start()
        self.started_at = time.monotonic()
        self.ready.set()
        log.info("sideman ready: %r in, %r out (%s), preset %s, model %s, %s",
                 p.ports.input, p.ports.output, api, p.name, self.model_path.name,
                 "MIDI clock" if p.clock.source == "midi" else f"{p.clock.bpm:g} BPM")

    def _load_model(self) -> None:
        from engine.modelfile import load_model  # torch is imported here, not by the MIDI layer
        from engine.session import ModelSession

        self.model_path = resolve_model_path(self.preset.model)
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: no such model file; train one with `sideman train` or pass "
                             f"--model PATH (the preset {self.preset.name!r} names {self.preset.model!r})")
        loaded = load_model(self.model_path, DEFAULT_VOCAB, "cpu")
        self.session = ModelSession(loaded, device=self.options.device, threads=self.options.threads)
        self.style = style_for(loaded.card)
        log.info("model %s loaded on %s (style %s)", loaded.name, self.session.device, self.style)

    def _open_monitor(self):
        from engine.audio.monitor import Monitor, monitor_config_from_preset

        config = monitor_config_from_preset(self.preset, self.options.soundfont)
        if self.options.monitor:
            config = replace(config, enabled=True)
        return Monitor.open(config)

    def _new_generator(self) -> Generator:
        return Generator(self.session, DEFAULT_VOCAB, self.clock, self.scheduler, self.gen_config,
                         supervisor=self.supervise)

    # -- live changes (called from the conductor thread) ------------------------------------------------

    def set_temperature(self, value: int) -> None:
        temperature = min(5.0, max(0.05, self.preset.sampling.temperature * value / 64.0))
        self.gen_config = replace(self.gen_config, temperature=temperature)
        self.generator.submit(Configure(self.gen_config))
        log.info("temperature %.2f", temperature)

    def set_mode(self, mode: str) -> None:
        if mode != "call_response":
            log.warning("mode %r is not available in this build; staying in call_response", mode)
            return
        self.mode = mode

    def program_change(self, conductor: Conductor, program: int) -> None:
        """Switch to the preset the current one maps `program` to; a bad one keeps the current preset."""
        target = dict(self.preset.program_change).get(program)
        if target is None:
            log.info("program change %d: no preset mapped to it in %s", program, self.preset.name)
            return
        folder = self.preset.path.parent if self.preset.path is not None else PRESET_DIR
        try:
            new = apply_options(load_preset(folder / target), self.options)
        except PresetError as exc:
            log.error("program change %d: keeping preset %r: %s", program, self.preset.name, exc)
            return
        self.switch_preset(conductor, new)

    def switch_preset(self, conductor: Conductor, new: Preset) -> None:
        old = self.preset
        conductor.cancel()
        self.scheduler.flush(wait=0.2)
        restart = [name for name, a, b in (
            ("ports", old.ports, new.ports), ("model", old.model, new.model),
            ("clock.source", old.clock.source, new.clock.source), ("clock.meter", old.clock.meter, new.clock.meter),
        ) if a != b]
        if restart:
            log.warning("preset %r: %s change only on restart; keeping the current ones", new.name, ", ".join(restart))
            new = replace(new, ports=old.ports, model=old.model,
                          clock=replace(new.clock, source=old.clock.source, meter=old.clock.meter))
        if isinstance(self.clock, InternalClock) and new.clock.bpm != old.clock.bpm:
            self.clock.set_bpm(new.clock.bpm)
        self.preset = new
        conductor.conversation.configure(self.conversation_config(new))
        self.gen_config = GeneratorConfig.from_preset(new, self.style)
        self.generator.submit(Configure(self.gen_config))
        log.info("preset %s: %s", new.name, new.summary())

    # -- supervision -------------------------------------------------------------------------------

    def supervise(self, thread_name: str, exc: BaseException) -> None:
        """Called from a failing thread: hand it to the main thread."""
        self._events.put(("failed", thread_name, exc))

    def request_stop(self, code: int = EXIT_OK) -> None:
        """From a signal handler or any thread."""
        self._events.put(("stop", code))

    def _handle_failure(self, thread_name: str, exc: BaseException) -> None:
        if thread_name.startswith("midi-in") and self.poller is not None and self.poller.is_alive():
            return  # a port came or went; the poller reopens it by itself
        log.error("thread %s failed: %s: %s", thread_name, type(exc).__name__, exc)
        self.scheduler.flush(wait=0.5)
        if thread_name == "generator" and self.generator_restarts < MAX_GENERATOR_RESTARTS:
            self.generator_restarts += 1
            self.generator = self._new_generator()
            self.generator.start()
            self.conductor.post("cancel")
            log.warning("generator restarted (%d of %d)", self.generator_restarts, MAX_GENERATOR_RESTARTS)
            return
        self.exit_code = EXIT_ERROR
        self._events.put(("stop", EXIT_ERROR))

    def run(self, status_every: float | None = None) -> int:
        """Block until stopped (request_stop, a signal, a fatal failure); returns the exit code."""
        every = self.options.status_every if status_every is None else status_every
        next_status = time.monotonic() + every if every > 0 else math.inf
        code = EXIT_OK
        while True:
            timeout = max(0.01, min(1.0, next_status - time.monotonic()))
            try:
                item = self._events.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is not None:
                if item[0] == "stop":
                    code = item[1]
                    break
                if item[0] == "failed":
                    self._handle_failure(item[1], item[2])
            if time.monotonic() >= next_status:
                log.info("%s", self.status_line())
                next_status += every
        self.close()
        return code

    # -- status ----------------------------------------------------------------------------------

    def status(self) -> dict:
        gen = self.generator.stats if self.generator else None
        sched = self.scheduler.stats if self.scheduler else None
        inp = self.poller.stats if self.poller else None
        ready = percentile(gen.ready_ms, 50) if gen else None
        return {
            "mode": self.mode,
            "preset": self.preset.name,
            "bpm": round(self.clock.bpm, 2) if self.clock else None,
            "clock": self.preset.clock.source,
            "clock_running": bool(self.clock and self.clock.running),
            "state": self.conductor.conversation.state if self.conductor else "starting",
            "notes_in": self.conductor.notes_in if self.conductor else 0,
            "notes_out": self.output.note_ons if self.output else 0,
            "player_events": gen.player_events if gen else 0,
            "responses": gen.responses if gen else 0,
            "cut_ins": gen.cut_ins if gen else 0,
            "ready_ms_p50": None if ready is None else round(ready, 2),
            "dropped": sched.dropped if sched else 0,
            "late": sched.late if sched else 0,
            "input_malformed": inp.malformed if inp else 0,
            "input_sysex": inp.sysex if inp else 0,
            "generator_restarts": self.generator_restarts,
        }

    def status_line(self) -> str:
        s = self.status()
        ready = "-" if s["ready_ms_p50"] is None else f"{s['ready_ms_p50']:.1f} ms"
        clock = f"{s['bpm']:.1f} BPM" + ("" if s["clock"] == "internal" else " MIDI clock")
        if not s["clock_running"]:
            clock += " (stopped)"
        return (f"{s['mode']} | {clock} | {s['state']} | in {s['notes_in']} notes, out {s['notes_out']} notes | "
                f"answers {s['responses']} (cut {s['cut_ins']}) | ready p50 {ready} | "
                f"dropped {s['dropped']} late {s['late']} | input bad {s['input_malformed']} sysex {s['input_sysex']}")

    # -- shutdown --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every thread and close every note and port; safe to call twice. Well under a second."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        t0 = time.perf_counter()
        for part in (self.conductor, self.poller, self.generator):
            if part is not None:
                part.stop(0.5)
        if self.session is not None and (self.generator is None or not self.generator.is_alive()):
            self.session.close()  # the decode kernel's threads; only once nothing can call it any more
        if self.scheduler is not None:
            if self.scheduler.is_alive():
                self.scheduler.stop(0.5)
            else:
                self.scheduler.core.flush()
        if self.output is not None:
            self.output.all_notes_off(channels=[self.preset.channels.output_index], notes=())
        if self.midi_out is not None:
            self.midi_out.close()
        if self.monitor is not None:
            self.monitor.close()
        if self._old_switch is not None:
            sys.setswitchinterval(self._old_switch)
        if self._froze_heap:
            gc.unfreeze()  # what start() froze is collectable again (a host process goes on after us)
        log.info("sideman stopped (shutdown took %.0f ms)", 1000 * (time.perf_counter() - t0))


def load_daemon_preset(path: str | None) -> Preset:
    return load_preset(Path(path) if path else PRESET_DIR / "default.toml")


__all__ = ["Daemon", "DaemonOptions", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "load_daemon_preset"]
