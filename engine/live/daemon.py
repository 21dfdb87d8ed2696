"""The realtime daemon: builds everything from a preset, runs the threads, supervises them.

Threads (each owns one thing; they talk through queues):
    midi-in     InputPoller: polls the input port, stamps, routes clock messages to the clock
    conductor   filters the player's messages, maps CCs and Program Change, tells every part
                (engine.live.conductor)
    parts       one model thread per part, each its mode's (engine.live.modes): owns the part's model
                session, prefills the player's events, generates ahead of the clock
    scheduler   sends timed events on time, closes every note on every path
    main        this object's `run()`: the status line, signals, and the supervisor

The preset's mode is built by one factory (`engine.live.modes.build_mode`); nothing here knows which
mode it is. Every failure of a thread reaches `supervise()`: it closes all notes, then restarts a
part's model thread (up to MAX_GENERATOR_RESTARTS times in all) or stops the daemon with exit code 1. Exit codes: 0 normal (also
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

from engine.live.clock import ExternalClock, InternalClock, Meter
from engine.errors import ModelError, PresetError
from engine.live.conductor import Conductor
from engine.live.midi.input import InputPoller
from engine.live.midi.output import MidiOutput
from engine.live.midi.ports import PortSpec
from engine.live.modes import BUILT, build_mode, mode_class
from engine.live.modes.base import Mode, PartContext
from engine.live.part import PartConfig
from engine.live.scheduler import DEFAULT_REALTIME_PRIORITY, Scheduler, SchedulerConfig
from engine.music.vocab import DEFAULT_VOCAB
from engine.presets import PRESET_DIR, Preset, load_preset

log = logging.getLogger("sideman.daemon")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

SWITCH_INTERVAL_S = 0.0005  # measured: with Python's 5 ms default the scheduler drops most notes
MAX_GENERATOR_RESTARTS = 3
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
    realtime_priority: int | None = DEFAULT_REALTIME_PRIORITY  # SCHED_FIFO for the scheduler thread; None: off


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

    def __init__(self, midi: MidiOutput, monitor=None, channels: dict[int, int] | None = None) -> None:
        self.midi = midi
        self.monitor = monitor
        self.channels = dict(channels or {})  # wire channel -> monitor channel (default 1)
        self.note_ons = 0

    def send(self, data) -> bool:
        ok = self.midi.send(data)
        kind = data[0] & 0xF0
        if kind == 0x90 and data[2] > 0:
            self.note_ons += 1
            if self.monitor is not None:
                self.monitor.note_on(self.channels.get(data[0] & 0x0F, 1), data[1], data[2])
        elif kind in (0x80, 0x90) and self.monitor is not None:
            self.monitor.note_off(self.channels.get(data[0] & 0x0F, 1), data[1])
        return ok

    def all_notes_off(self, channels=range(16), notes=None) -> None:
        self.midi.all_notes_off(channels, notes)
        if self.monitor is not None:
            self.monitor.all_notes_off()


# -- the daemon ----------------------------------------------------------------------------------------


class Daemon:
    """Build with a preset and options; `start()` (raises SidemanError), then `run()` until stopped."""

    def __init__(self, preset: Preset, options: DaemonOptions = DaemonOptions()) -> None:
        self.options = options
        self.preset = apply_options(preset, options)
        self.clock = None
        self.output: TeeOutput | None = None
        self.midi_out: MidiOutput | None = None
        self.poller: InputPoller | None = None
        self.scheduler: Scheduler | None = None
        self.parts: list[Mode] = []
        self.conductor: Conductor | None = None
        self.session = None
        self.model_path: Path | None = None
        self.model_task = "CONTINUE"  # the task the loaded model was trained for (its card's "task")
        self.monitor = None
        self.style = "none"
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

    @property
    def part(self) -> Mode | None:
        """The first part (a preset has one part today)."""
        return self.parts[0] if self.parts else None

    @property
    def mode(self) -> str:
        return self.part.name if self.part is not None else self.preset.mode

    def output_channels(self) -> list[int]:
        return sorted({ch for part in self.parts for ch in part.channels()} or {self.preset.channels.output_index})

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
        from engine.audio.monitor import monitor_channels

        self.output = TeeOutput(self.midi_out, self.monitor, monitor_channels(p))
        self.scheduler = Scheduler(self.output, SchedulerConfig(realtime_priority=self.options.realtime_priority),
                                   supervisor=self.supervise)
        self.parts = [self._build_part(p.mode, p)]
        self.conductor = Conductor(self)
        # Everything loaded so far (torch, the model, the vocabulary) lives for the whole run: move it out
        # of the collector's reach, so a full collection during a jam walks only what the jam allocated
        # (a full walk of the startup heap took tens of ms: a stall in the middle of an answer).
        gc.collect()
        gc.freeze()
        self._froze_heap = True
        self.clock.add_listener(lambda event, _clock: self.conductor.post("clock", event))
        self.scheduler.start()
        self.scheduler.priority_known.wait(1.0)  # the parts' priority follows the scheduler's (part_nice)
        for part in self.parts:
            part.start()
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
        from engine.model.modelfile import load_model  # torch is imported here, not by the MIDI layer
        from engine.model.session import ModelSession

        self.model_path = resolve_model_path(self.preset.model)
        if not self.model_path.is_file():
            raise ModelError(f"{self.model_path}: no such model file; train one with `sideman train` or pass "
                             f"--model PATH (the preset {self.preset.name!r} names {self.preset.model!r})")
        loaded = load_model(self.model_path, DEFAULT_VOCAB, "cpu")
        self.model_task = str(loaded.card.get("task", "CONTINUE"))
        needed = mode_class(self.preset.mode).task
        if needed != self.model_task:
            raise ModelError(f"{self.model_path}: the {self.preset.mode} mode needs a model trained for {needed} "
                             f"streams, and {loaded.name} was trained for {self.model_task}; use a model made for "
                             f"it (e.g. models/{TASK_MODELS.get(needed, 'continuation.pt')}) "
                             f"in the preset's model field, or pass --model")
        self.session = ModelSession(loaded, device=self.options.device, threads=self.options.threads)
        self.style = style_for(loaded.card)
        log.info("model %s loaded on %s (style %s)", loaded.name, self.session.device, self.style)

    def _open_monitor(self):
        from engine.audio.monitor import Monitor, monitor_config_from_preset

        config = monitor_config_from_preset(self.preset, self.options.soundfont)
        if self.options.monitor:
            config = replace(config, enabled=True)
        return Monitor.open(config)

    def _build_part(self, mode: str, preset: Preset, name: str = "part1") -> Mode:
        context = PartContext(name=name, session=self.session, vocab=DEFAULT_VOCAB, clock=self.clock,
                              scheduler=self.scheduler, config=PartConfig.from_preset(preset, self.style),
                              prepare=self.options.prepare, supervisor=self.supervise)
        return build_mode(mode, context, preset)

    def mode_for_cc(self, value: int) -> str:
        """The mode CC's value (0-127) as one of the modes this build has that the loaded model can play,
        in equal ranges."""
        modes = tuple(m for m in BUILT if mode_class(m).task == self.model_task) or (self.mode,)
        return modes[min(len(modes) - 1, value * len(modes) // 128)]

    # -- live changes (called from the conductor thread) ------------------------------------------------

    def set_temperature(self, value: int) -> None:
        temperature = min(5.0, max(0.05, self.preset.sampling.temperature * value / 64.0))
        for part in self.parts:
            part.configure(None, replace(part.config, temperature=temperature))
        log.info("temperature %.2f", temperature)

    def set_mode(self, mode: str) -> None:
        """Play on in another mode (the mode CC): a new part on the same session, built by the factory."""
        if mode == self.mode:
            return
        self.conductor.cancel()
        self.scheduler.flush(wait=0.2)
        old = self.part
        old.stop(1.0)
        if old.thread.is_alive():
            log.error("mode %s: the %s thread did not stop; staying in %s", mode, old.thread.name, old.name)
            return
        self.parts = [self._build_part(mode, self.preset)]
        self.part.start()
        log.info("mode %s", mode)

    def program_change(self, conductor: Conductor, program: int) -> None:
        """Switch to the preset the current one maps `program` to; a bad one keeps the current preset. A program
        no preset is mapped to goes to the mode (restyle: programs 0..4 pick the style)."""
        target = dict(self.preset.program_change).get(program)
        if target is None:
            if not any([part.control("program", program) for part in self.parts]):
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
        if mode_class(new.mode).task != self.model_task:
            log.error("preset %r: the %s mode needs a model trained for %s; the loaded one plays %s: staying in %s "
                      "(restart with the preset to load its model)", new.name, new.mode, mode_class(new.mode).task,
                      self.model_task, self.mode)
            new = replace(new, mode=self.mode)
        self.preset = new
        if new.mode != self.mode:
            self.set_mode(new.mode)
        else:
            for part in self.parts:
                part.configure(new, PartConfig.from_preset(new, self.style))
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
        failed = next((part for part in self.parts if part.owns(thread_name)), None)
        if failed is not None and self.generator_restarts < MAX_GENERATOR_RESTARTS:
            self.generator_restarts += 1
            failed.restart()
            self.conductor.post("cancel")
            log.warning("%s restarted (%d of %d)", thread_name, self.generator_restarts, MAX_GENERATOR_RESTARTS)
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
        parts = [part.status() for part in self.parts]
        sched = self.scheduler.stats if self.scheduler else None
        inp = self.poller.stats if self.poller else None
        ready = percentile([ms for p in parts for ms in p["ready_ms"]], 50)
        return {
            "mode": self.mode,
            "preset": self.preset.name,
            "bpm": round(self.clock.bpm, 2) if self.clock else None,
            "clock": self.preset.clock.source,
            "clock_running": bool(self.clock and self.clock.running),
            "state": ", ".join(p["state"] for p in parts) if parts and self.conductor else "starting",
            "notes_in": self.conductor.notes_in if self.conductor else 0,
            "notes_out": self.output.note_ons if self.output else 0,
            "player_events": max((p["player_events"] for p in parts), default=0),
            "responses": sum(p["answers"] for p in parts),
            "cut_ins": sum(p["cut_ins"] for p in parts),
            "ready_ms_p50": None if ready is None else round(ready, 2),
            "dropped": sched.dropped if sched else 0,
            "late": sched.late if sched else 0,
            "input_malformed": inp.malformed if inp else 0,
            "input_sysex": inp.sysex if inp else 0,
            "generator_restarts": self.generator_restarts,
            # accompaniment: the commit window in use (adaptive: it follows the model thread's lag)
            "commit_ms": next((p["commit_ms"] for p in parts if "commit_ms" in p), None),
        }

    def status_line(self) -> str:
        s = self.status()
        ready = "-" if s["ready_ms_p50"] is None else f"{s['ready_ms_p50']:.1f} ms"
        clock = f"{s['bpm']:.1f} BPM" + ("" if s["clock"] == "internal" else " MIDI clock")
        if not s["clock_running"]:
            clock += " (stopped)"
        return (f"{s['mode']} | {clock} | {s['state']} | in {s['notes_in']} notes, out {s['notes_out']} notes | "
                f"answers {s['responses']} (cut {s['cut_ins']}) | ready p50 {ready} | "
                f"dropped {s['dropped']} late {s['late']} | input bad {s['input_malformed']} sysex {s['input_sysex']}"
                + ("" if s["commit_ms"] is None else f" | commit {s['commit_ms']:.0f} ms"))

    # -- shutdown --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every thread and close every note and port; safe to call twice. Well under a second (a starved
        machine may take up to 2.5 s for a busy model thread)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        t0 = time.perf_counter()
        # the monitor's audio first: its PortAudio callback is Python and needs the GIL, while closing a JACK
        # MIDI client (the poller's, the output's) holds the GIL and waits for the server, which, running
        # synchronous, waits for that callback: a deadlock (seen under load with `jackd -S` and --monitor)
        if self.monitor is not None:
            self.monitor.close()
        for thread in (self.conductor, self.poller):
            if thread is not None:
                thread.stop(0.5)
        for part in self.parts:
            part.stop(0.5)
        for part in self.parts:  # a starved machine: a part mid-feed may need longer; its session closes after it
            if part.thread.is_alive():
                log.warning("the %s thread is still busy at shutdown; waiting up to 2 s more", part.thread.name)
                part.thread.join(2.0)
        if self.session is not None and not any(part.thread.is_alive() for part in self.parts):
            self.session.close()  # the decode kernel's threads; only once nothing can call it any more
        if self.scheduler is not None:
            if self.scheduler.is_alive():
                self.scheduler.stop(0.5)
            else:
                self.scheduler.core.flush()
        if self.output is not None:
            self.output.all_notes_off(channels=self.output_channels(), notes=())
        if self.midi_out is not None:
            self.midi_out.close()
        if self._old_switch is not None:
            sys.setswitchinterval(self._old_switch)
        if self._froze_heap:
            gc.unfreeze()  # what start() froze is collectable again (a host process goes on after us)
        log.info("sideman stopped (shutdown took %.0f ms)", 1000 * (time.perf_counter() - t0))


TASK_MODELS = {"CONTINUE": "continuation.pt", "ACCOMPANY": "accompaniment.pt", "RESTYLE": "restyle.pt"}


def load_daemon_preset(path: str | None) -> Preset:
    return load_preset(Path(path) if path else PRESET_DIR / "default.toml")


__all__ = ["Daemon", "DaemonOptions", "EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "load_daemon_preset"]
