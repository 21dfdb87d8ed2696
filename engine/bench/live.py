"""`sideman bench live`: the daemon over JACK, measured the way a musician and a DAW see it.

    sideman bench live [--json] [--minutes M] [--speed X] [--model PATH]

A simulated jam: a player process (a JACK client, another process) plays phrases into the daemon's
input, sometimes cuts into the answer, and records every message arriving on the daemon's output
with perf_counter (CLOCK_MONOTONIC, comparable across processes). The daemon runs in this process
on its own private JACK server (dummy backend, 48 kHz, 128 frames) unless JACK_DEFAULT_SERVER names
a running one. `--minutes` are minutes of music at the preset's tempo (100 BPM); `--speed` plays
them faster (default 3x: 300 BPM), so 10 minutes take about 3.3 minutes.

Numbers:
- response_ready_ms: phrase-end decision -> first note of the answer handed to the scheduler (when the
  player lets go of every key, the likely answer is prepared up to its first note, so this is usually
  a queue hop; `--no-prepare` measures the cold path: prefix prefill plus decode steps);
- timing_error_ms: arrival at the player's JACK client minus due time, for every scheduled message
  the scheduler sent (JACK delivers once per period, so up to one period of this is JACK's). The
  arrival is RtMidi's JACK-side timestamp (taken in the client's process callback, where a DAW gets
  the event), put on the perf_counter clock by the message polled soonest after arriving;
  timing_error_polled_ms is the same by the listener's own poll (late by up to a poll interval);
- lost_messages: the player's messages that never reached the encoder;
- hanging_notes: notes the daemon left sounding when the jam ended (before shutdown); also counted at
  the listener, and after shutdown. On a starved machine (VM steal time) JACK can miss a cycle and
  lose messages between the daemon and the listener: counted as output_lost_in_jack.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np

from engine.live.jack import read_xruns, start_dummy_jack, stop_jack
from engine.live.scheduler import DEFAULT_REALTIME_PRIORITY, realtime_priority_option

SAMPLE_RATE = 48000
PERIOD = 128
BASE_BPM = 100.0
REPO = Path(__file__).resolve().parent.parent.parent

log = logging.getLogger("sideman.bench.live")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("call_response", "accompany", "restyle"), default="call_response",
                        help="call_response (default): phrases and answers; accompany: melodies and their voices "
                             "(engine.bench.live_accompany); restyle: phrases played back restyled "
                             "(engine.bench.live_restyle)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of music at 100 BPM (default 10)")
    parser.add_argument("--speed", type=float, default=3.0, help="tempo factor over 100 BPM (default 3: 300 BPM)")
    parser.add_argument("--model", default=None, help="model file (default models/continuation.pt)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the simulated player")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the model (default 1, as the daemon)")
    parser.add_argument("--realtime-priority", type=int, default=DEFAULT_REALTIME_PRIORITY, metavar="N",
                        help="SCHED_FIFO priority for the daemon's scheduler thread (default "
                             f"{DEFAULT_REALTIME_PRIORITY}, as the daemon; 0: off)")
    parser.add_argument("--jack-sync", action="store_true",
                        help="run the private JACK server in synchronous mode (jackd -S): a late client delays "
                             "the cycle instead of losing it (for starved machines; default: asynchronous)")
    parser.add_argument("--heard", default=None, metavar="MID",
                        help="--mode accompany: also write what the listener heard (melody and voices) to this MIDI file")
    parser.add_argument("--commit-ms", type=float, default=None, metavar="MS",
                        help="--mode accompany: the commit window, the longest when adaptive (default: the chorale "
                             "preset's)")
    parser.add_argument("--fixed-commit", action="store_true",
                        help="--mode accompany: a fixed commit window (commit_ms), not the adaptive one")
    parser.add_argument("--offline-seeds", type=int, default=3, metavar="N",
                        help="--mode accompany: the offline bound is the mean over N sampling seeds (default 3)")
    parser.add_argument("--candidates", type=int, default=None, metavar="N",
                        help="--mode restyle: whole restyled phrases written while the player is silent, the best "
                             "plays (default: the restyle preset's; 1: the first)")
    parser.add_argument("--no-prepare", dest="prepare", action="store_false",
                        help="do not prepare answers while the player is silent (measures the cold path: "
                             "decision -> prefix prefill and decode steps to the first note)")


# -- the player process -------------------------------------------------------------------------------


class JackListener(threading.Thread):
    """Records what arrives on a port, with two clocks per message: `poll` (perf_counter when this
    thread took it from RtMidi's queue: late by up to a poll interval) and `jack` (RtMidi's JACK-side
    time, accumulated from its deltas: stamped in the JACK client's process callback, the moment a
    DAW would have the event). `arrivals()` puts the JACK times on the perf_counter clock."""

    def __init__(self, port: str) -> None:
        super().__init__(name="bench-listener", daemon=True)
        import rtmidi

        from engine.live.midi.ports import PortSpec, open_input

        self.midi = open_input(PortSpec(port, api="jack", connect=True, client_name="bench-listener"))
        self.records: list[tuple[float, float, list[int]]] = []  # (poll, jack, data)
        self.stop_event = threading.Event()
        self._rtmidi_error = rtmidi.RtMidiError

    def run(self) -> None:
        from engine.live.midi.ports import close

        jack_time = 0.0
        now = time.perf_counter
        try:
            while not self.stop_event.is_set():
                try:
                    msg = self.midi.get_message()
                except self._rtmidi_error:  # the daemon's port went away at the end
                    break
                if msg is None:
                    time.sleep(0.0002)
                    continue
                data, delta = msg
                jack_time += delta
                self.records.append((now(), jack_time, list(data)))
        finally:
            close(self.midi)

    def last_arrival(self) -> float:
        return self.records[-1][0] if self.records else 0.0

    def arrivals(self, window_s: float = 2.0) -> list[tuple[float, list[int]]]:
        """(time, data): JACK time plus the smallest poll-minus-JACK offset among the messages within
        `window_s` (the message polled soonest after it arrived anchors its neighbours)."""
        if not self.records:
            return []
        poll = np.array([r[0] for r in self.records])
        jack = np.array([r[1] for r in self.records])
        offset = poll - jack
        out = []
        lo = hi = 0
        for k in range(len(jack)):
            while jack[lo] < jack[k] - window_s:
                lo += 1
            while hi < len(jack) and jack[hi] <= jack[k] + window_s:
                hi += 1
            out.append((float(jack[k] + offset[lo:hi].min()), self.records[k][2]))
        return out


def player_main(config: dict) -> None:
    """Runs in a child process: play phrases into `in_port`, record everything from `out_port`."""
    import rtmidi

    logging.basicConfig(level=logging.ERROR)  # the daemon's port vanishing at the end is expected here
    listener = JackListener(config["out_port"])
    listener.start()
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-player")
    names = out.get_ports()
    out.open_port([i for i, n in enumerate(names) if n.endswith(":" + config["in_port"])][0])
    rng = random.Random(config["seed"])
    beat = 60.0 / config["bpm"]
    bar = 4 * beat
    sent = 0
    cuts = 0
    print("ready", flush=True)
    end = time.perf_counter() + config["seconds"]
    while time.perf_counter() < end:
        # a phrase: 4..10 eighth notes (some rests), 1..2 bars
        steps = rng.randint(4, 10)
        for _ in range(steps):
            if rng.random() < 0.8:
                pitch = rng.randint(55, 79)
                out.send_message([0x90, pitch, rng.randint(50, 110)])
                time.sleep(beat / 2 * 0.8)
                out.send_message([0x80, pitch, 0])
                sent += 2
                time.sleep(beat / 2 * 0.2)
            else:
                time.sleep(beat / 2)
        # the answer: silence (1 beat) + up to a bar to the start + its 2 bars; sometimes cut in early
        if rng.random() < 0.25:
            time.sleep(beat + rng.uniform(0.5, 1.5) * bar)
            cuts += 1
        else:
            time.sleep(beat + 3.2 * bar)
    # let the last answer play out: until the output has been quiet for 1.5 s with no note sounding (at
    # most 20 s). Quiet alone is not the end: a note held over a bar and a half (at 300 BPM) is quiet too
    deadline = time.perf_counter() + 20

    def playing() -> bool:
        quiet_s = time.perf_counter() - max(listener.last_arrival(), end)
        return quiet_s < 1.5 or bool(sounding_after(r[2] for r in list(listener.records)))

    while time.perf_counter() < deadline and playing():
        time.sleep(0.1)
    received_before_shutdown = len(listener.records)
    print("played", flush=True)
    # the daemon shuts down now (its closing messages are recorded too); wait for stdin to close
    sys.stdin.readline()
    time.sleep(0.3)
    listener.stop_event.set()
    listener.join(2)
    arrivals = listener.arrivals()
    polled = [(r[0], r[2]) for r in listener.records]
    out.close_port()
    print(json.dumps({"sent": sent, "cuts": cuts, "arrivals": arrivals, "polled_arrivals": polled,
                      "received_before_shutdown": received_before_shutdown}), flush=True)


# -- measuring ----------------------------------------------------------------------------------------


def sounding_after(messages) -> set[tuple[int, int]]:
    """(channel, pitch) left sounding by a sequence of message bytes (CC 120/123 end all on their channel)."""
    sounding: dict[tuple[int, int], int] = {}
    for data in messages:
        kind, ch = data[0] & 0xF0, data[0] & 0x0F
        if kind == 0x90 and data[2] > 0:
            sounding[(ch, data[1])] = sounding.get((ch, data[1]), 0) + 1
        elif kind in (0x80, 0x90) and sounding.get((ch, data[1])):
            sounding[(ch, data[1])] -= 1
        elif kind == 0xB0 and data[1] in (120, 123):
            sounding = {k: v for k, v in sounding.items() if k[0] != ch}
    return {k for k, v in sounding.items() if v}


def hanging(messages) -> int:
    return len(sounding_after(messages))


def _stats(values, prefix: str) -> dict:
    a = np.asarray(list(values), dtype=float)
    if a.size == 0:
        return {f"{prefix}_p50": None, f"{prefix}_p99": None, f"{prefix}_max": None, f"{prefix}_n": 0}
    return {f"{prefix}_p50": round(float(np.percentile(a, 50)), 3), f"{prefix}_p99": round(float(np.percentile(a, 99)), 3),
            f"{prefix}_max": round(float(a.max()), 3), f"{prefix}_n": int(a.size)}


def pair_timing(records, sends, arrivals, window: int = 8) -> tuple[list[float], int]:
    """(arrival minus due in seconds of each scheduled message the scheduler sent, messages never received).

    records: the scheduler's (due, sent) per dispatched message, in order; sends: (time, data) of every
    message the output sent (dispatched ones, plus note-offs of cuts and CCs), in order; arrivals: what
    the listener received, in the same order as `sends` except that messages sent together may arrive
    swapped (JACK hands over a period's events at once). A dispatched message is the first send at or
    after its record's `sent` stamp (the scheduler stamps, then sends); its arrival is the unused one
    with the same bytes nearest its own index. A send with no such arrival was lost by JACK (an xrun).
    """
    out = []
    lost = 0
    used = [False] * len(arrivals)
    j = 0
    shift = 0  # arrivals run behind sends by the messages lost so far
    for due, stamped in records:
        while j < len(sends) and sends[j][0] < stamped:
            j += 1
        if j >= len(sends):
            break
        data = list(sends[j][1])
        centre = j - shift
        candidates = [k for k in range(max(0, centre - window), min(len(arrivals), centre + window + 1))
                      if not used[k] and list(arrivals[k][1]) == data]
        if not candidates:
            lost += 1
            shift += 1
        else:
            k = min(candidates, key=lambda c: abs(c - centre))
            used[k] = True
            out.append(arrivals[k][0] - due)
        j += 1
    return out, lost


def record_sends(daemon) -> list[tuple[float, tuple]]:
    """(perf_counter, bytes) of every message the daemon's scheduler output sends from now on, in order."""
    sends: list[tuple[float, tuple]] = []
    real_send = daemon.output.send

    def recording_send(data):
        ok = real_send(data)
        sends.append((time.perf_counter(), tuple(data)))
        return ok

    daemon.output.send = recording_send
    return sends


def start_jack(log_path: str, sync: bool = False) -> subprocess.Popen | None:
    """A private dummy JACK server logging to `log_path`, unless JACK_DEFAULT_SERVER names one (then None)."""
    if os.environ.get("JACK_DEFAULT_SERVER"):
        return None
    return start_dummy_jack("sideman-bench", SAMPLE_RATE, PERIOD, log_path=log_path, sync=sync)[1]


def bench_preset(bpm: float):
    from engine.presets import PRESET_DIR, load_preset

    base = load_preset(PRESET_DIR / "default.toml")
    tag = uuid.uuid4().hex[:6]
    return replace(
        base,
        name="bench-live",
        ports=replace(base.ports, api="jack", input=f"sideman in {tag}", output=f"sideman out {tag}"),
        clock=replace(base.clock, source="internal", bpm=bpm),
        phrase=replace(base.phrase, silence_beats=1.0),
        response=replace(base.response, length_bars=2, start="bar"),
        sampling=replace(base.sampling, seed=1),
    )


def run_bench(minutes: float, speed: float, model: str | None, seed: int = 1, threads: int = 1,
              prepare: bool = True, realtime_priority: int | None = None, jack_log: str | None = None,
              preset_of=None, stats_of=None, default_model: str = "models/continuation.pt") -> dict:
    """The jam. `preset_of(bpm)` and `stats_of(daemon)` (the part's stats: ready_ms, ready_detail, step_ms,
    first_token_ms, player_events, responses, prepared_used, cut_ins) let another turn-taking mode (restyle)
    run the same jam."""
    from engine.live.daemon import Daemon, DaemonOptions, resolve_model_path

    bpm = BASE_BPM * speed
    seconds = minutes * 60.0 / speed
    model_path = str(resolve_model_path(model or default_model))
    preset = (preset_of or bench_preset)(bpm)
    daemon = Daemon(preset, DaemonOptions(model=model_path, status_every=0, threads=threads, prepare=prepare,
                                          realtime_priority=realtime_priority))
    gc_pauses: list[float] = []  # ms of every collection in this (the daemon's) process during the jam
    gc_started = [0.0]

    def on_gc(phase: str, _info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        else:
            gc_pauses.append(1000.0 * (time.perf_counter() - gc_started[0]))

    daemon.start()
    gc.callbacks.append(on_gc)
    sends = record_sends(daemon)
    main = threading.Thread(target=daemon.run, name="daemon-main", daemon=True)
    main.start()
    config = {"in_port": preset.ports.input, "out_port": preset.ports.output, "bpm": bpm, "seconds": seconds,
              "seed": seed}
    code = f"import json, sys; from engine.bench.live import player_main; player_main(json.loads({json.dumps(json.dumps(config))}))"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    t0 = time.perf_counter()
    try:
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the player process did not start")
        xruns_before = read_xruns(jack_log)[0] if jack_log else 0  # clients coming and going cause some
        if child.stdout.readline().strip() != "played":
            raise RuntimeError("the player process failed")
        xruns_during = read_xruns(jack_log)[0] - xruns_before if jack_log else None
        wall = time.perf_counter() - t0
        records = list(daemon.scheduler.records)
        gen = stats_of(daemon) if stats_of is not None else daemon.part.generator.stats
        port_received = daemon.poller.stats.received  # what JACK delivered to the daemon's input port
        status = daemon.status()
        sends_at_end = len(sends)
        daemon.request_stop()
        main.join(3)
        out, _ = child.communicate("done\n", timeout=30)
    finally:
        if on_gc in gc.callbacks:
            gc.callbacks.remove(on_gc)
        if child.poll() is None:
            child.kill()
        daemon.request_stop()
    player = json.loads(out.strip().splitlines()[-1])
    arrivals = player["arrivals"]
    timing_s, output_lost = pair_timing(records, sends, arrivals)
    timing_ms = [1000.0 * e for e in timing_s]
    polled_s, _ = pair_timing(records, sends, player["polled_arrivals"])
    result = {
        "jack_period_ms": round(1000.0 * PERIOD / SAMPLE_RATE, 3),
        "jack": f"dummy {SAMPLE_RATE} Hz, {PERIOD} frames",
        **{k.replace("ready_ms", "response_ready_ms"): v for k, v in _stats(gen.ready_ms, "ready_ms").items()},
        **_stats(gen.first_token_ms, "first_token_ms"),
        # the slowest answers: (ms, began cold / preparing / prepared, tokens after the decision, ms waited)
        "response_ready_slowest": sorted(gen.ready_detail, reverse=True)[:5],
        "response_ready_began": {k: sum(1 for d in gen.ready_detail if d[1] == k)
                                 for k in ("prepared", "preparing", "cold")},
        **_stats(timing_ms, "timing_error_ms"),
        **_stats([1000.0 * e for e in polled_s], "timing_error_polled_ms"),  # the same, by the poll's clock
        **_stats([1000.0 * (sent - due) for due, sent in records], "send_late_ms"),  # the scheduler's own part
        **_stats(gen.step_ms, "token_step_ms"),
        "lost_messages": player["sent"] - gen.player_events,
        "lost_in_jack": player["sent"] - port_received,  # never delivered to the daemon's port (xrun cycles)
        "lost_in_daemon": port_received - gen.player_events,  # delivered, but never reached the encoder
        "player_messages": player["sent"],
        "hanging_notes": hanging([d for _, d in sends[:sends_at_end]]),  # left open by the daemon
        "hanging_notes_received": hanging([d for _, d in arrivals[:player["received_before_shutdown"]]]),
        "hanging_notes_after_shutdown": hanging([d for _, d in arrivals]),
        "output_lost_in_jack": output_lost,  # sent by the daemon, never delivered (JACK xruns)
        "jack_xruns_during_jam": xruns_during,  # None: not our JACK server, so not our log
        "gc_collections": len(gc_pauses),
        "gc_pause_ms_max": round(max(gc_pauses), 3) if gc_pauses else 0.0,
        "answers": gen.responses,
        "prepared_answers_used": gen.prepared_used,
        "prepare": prepare,
        "cut_ins": gen.cut_ins,
        "player_cut_attempts": player["cuts"],
        "notes_out": status["notes_out"],
        "dropped": status["dropped"],
        "late": status["late"],
        "received": len(arrivals),
        "sent": len(sends),
        "bpm": bpm,
        "simulated_minutes": minutes,
        "wall_s": round(wall, 1),
        "model": model_path,
        "torch_threads": threads,
        "realtime_priority": realtime_priority,
        "load_average": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    return result


def _parse(args) -> argparse.Namespace:
    if args is None or isinstance(args, (list, tuple)):
        if args and args[0] == "--":  # `sideman bench live -- --minutes 2` passes the separator along
            args = args[1:]
        parser = argparse.ArgumentParser(prog="sideman bench live", description=__doc__.splitlines()[0])
        add_arguments(parser)
        return parser.parse_args(list(args) if args is not None else None)
    defaults = argparse.Namespace(mode="call_response", json=False, minutes=10.0, speed=3.0, model=None, seed=1,
                                  threads=1, prepare=True, realtime_priority=DEFAULT_REALTIME_PRIORITY, jack_sync=False,
                                  heard=None, commit_ms=None, fixed_commit=False, offline_seeds=3)
    for key, value in vars(defaults).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def main(args=None) -> int:
    """Entry point: `args` is an argv list or an argparse Namespace (from `sideman bench live`)."""
    ns = _parse(args)
    ns.realtime_priority = realtime_priority_option(ns.realtime_priority)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING)
    jack_log = os.path.join(tempfile.gettempdir(), f"sideman-bench-jackd-{os.getpid()}.log")
    jack = start_jack(jack_log, ns.jack_sync)
    try:
        if ns.mode == "accompany":
            from engine.bench import live_accompany

            result = live_accompany.run_bench(ns.minutes, ns.speed, ns.model, ns.seed, ns.threads,
                                              ns.realtime_priority, jack_log if jack is not None else None,
                                              ns.heard, ns.commit_ms, ns.fixed_commit, ns.offline_seeds)
        elif ns.mode == "restyle":
            from engine.bench import live_restyle

            result = live_restyle.run_bench(ns.minutes, ns.speed, ns.model, ns.seed, ns.threads, ns.prepare,
                                            ns.realtime_priority, jack_log if jack is not None else None,
                                            ns.candidates)
        else:
            result = run_bench(ns.minutes, ns.speed, ns.model, ns.seed, ns.threads, ns.prepare, ns.realtime_priority,
                               jack_log if jack is not None else None)
    finally:
        gc.collect()  # the daemon's JACK clients (held in reference cycles) close before the server stops
        if jack is not None:
            stop_jack(jack)
    # None: not our server, so not our log
    result["jack_xruns"], result["jack_late_clients"] = read_xruns(jack_log) if jack is not None else (None, None)
    result["jack"] += " (synchronous, -S)" if ns.jack_sync and jack is not None else ""
    if jack is not None and not result["jack_xruns"]:
        os.unlink(jack_log)
    elif jack is not None:
        result["jack_log"] = jack_log  # kept: what jackd said about its late cycles
    if ns.json:
        print(json.dumps(result))
        return 0
    if ns.mode == "accompany":
        from engine.bench import live_accompany

        print(live_accompany.report(result))
        print(f"  JACK cycles not finished in time (xruns): {result['jack_xruns']}")
        return 0
    print(f"sideman bench live{' --mode restyle' if ns.mode == 'restyle' else ''}: "
          f"{result['simulated_minutes']:g} min of music at {result['bpm']:g} BPM "
          f"in {result['wall_s']} s; JACK {result['jack']} (period {result['jack_period_ms']} ms)")
    print(f"  phrase end -> first answer note ready: p50 {result['response_ready_ms_p50']} ms, "
          f"p99 {result['response_ready_ms_p99']} ms (n {result['response_ready_ms_n']})")
    print(f"  answers by how they met the decision: {result['response_ready_began']}; slowest "
          f"(ms, began, tokens after the decision, ms waited for the clock): {result['response_ready_slowest'][:3]}")
    if result["first_token_ms_n"]:
        print(f"  phrase end -> first answer token sampled (answers not prepared): p50 {result['first_token_ms_p50']} ms, "
              f"p99 {result['first_token_ms_p99']} ms (n {result['first_token_ms_n']})")
    print(f"  arrival - due at a JACK client: p50 {result['timing_error_ms_p50']} ms, "
          f"p99 {result['timing_error_ms_p99']} ms, max {result['timing_error_ms_max']} ms "
          f"(n {result['timing_error_ms_n']}); by the listener's poll: p99 {result['timing_error_polled_ms_p99']} ms")
    print(f"  of which the scheduler's send minus due: p50 {result['send_late_ms_p50']} ms, "
          f"p99 {result['send_late_ms_p99']} ms, max {result['send_late_ms_max']} ms (the rest is JACK's period)")
    print(f"  decode step (sample + one token): p50 {result['token_step_ms_p50']} ms, p99 {result['token_step_ms_p99']} ms")
    if ns.mode == "restyle":
        print(f"  a phrase's encode (encoder, critic, condition, header): p50 {result['encode_ms_p50']} ms, "
              f"p99 {result['encode_ms_p99']} ms (n {result['encode_ms_n']})")
        print(f"  whole candidates an answer chose among (of {result['candidates']}): {result['candidates_chosen_among']}")
    print(f"  answers {result['answers']} ({result['prepared_answers_used']} prepared ahead), cut-ins {result['cut_ins']}, notes out {result['notes_out']}, "
          f"dropped {result['dropped']}, late {result['late']}")
    print(f"  garbage collections in the daemon: {result['gc_collections']}, longest {result['gc_pause_ms_max']} ms")
    print(f"  machine: {result['cpu_count']} CPUs, load average {result['load_average']} at the end; "
          f"torch threads {result['torch_threads']}")
    print(f"  lost input messages {result['lost_messages']} of {result['player_messages']} "
          f"({result['lost_in_jack']} never delivered by JACK, {result['lost_in_daemon']} lost by the daemon), "
          f"hanging notes {result['hanging_notes']} (at the listener {result['hanging_notes_received']}, "
          f"after shutdown {result['hanging_notes_after_shutdown']}); output messages lost in JACK "
          f"{result['output_lost_in_jack']}")
    print(f"  JACK cycles not finished in time (xruns): {result['jack_xruns_during_jam']} during the jam, "
          f"{result['jack_xruns']} in all"
          + (f", late clients {result['jack_late_clients']}" if result["jack_late_clients"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
