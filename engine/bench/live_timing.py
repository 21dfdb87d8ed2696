"""Timing of the realtime MIDI path through JACK: the input poller's latency and the scheduler's
timing error, idle and with a busy second thread holding the GIL.

    python -m engine.bench.live_timing [--json]

Starts its own JACK server (dummy backend, 48 kHz, 128 frames) unless JACK_DEFAULT_SERVER names a
running one. Numbers, all in milliseconds:
- input_*: a JACK client stamps perf_counter and sends; the poller stamps arrival. Includes JACK's
  own hand-over (up to one period) plus the poll interval.
- sched_*: sent minus due as the scheduler saw it (its own send call).
- recv_*: arrival at a JACK client in another process (a poller) minus due: what a listener gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np

from engine.live.jack import start_dummy_jack
from engine.live.midi.input import InputPoller
from engine.live.midi.output import MidiOutput
from engine.live.midi.ports import PortSpec
from engine.live.scheduler import Scheduler, SchedulerConfig

SAMPLE_RATE = 48000
PERIOD = 128


def start_jackd(sample_rate: int = SAMPLE_RATE, period: int = PERIOD) -> subprocess.Popen:
    """Start a private `jackd -d dummy` and point this process at it (JACK_DEFAULT_SERVER)."""
    return start_dummy_jack("sideman-bench", sample_rate, period)[1]


# -- load ----------------------------------------------------------------------------------------


class Busy(threading.Thread):
    """Keeps a second thread busy: "python" holds the GIL, "numpy" mostly releases it."""

    def __init__(self, kind: str) -> None:
        super().__init__(daemon=True, name=f"busy-{kind}")
        self.kind = kind
        self.halt = threading.Event()

    def run(self) -> None:
        a = np.random.default_rng(0).standard_normal((256, 256)).astype(np.float32)
        while not self.halt.is_set():
            if self.kind == "python":
                x = 0
                for i in range(20_000):
                    x += i * i
            else:
                a = np.tanh(a @ a * 0.01)


def _stats(values_s: list[float]) -> dict[str, float]:
    ms = np.asarray(values_s) * 1000.0
    if ms.size == 0:
        return {"n": 0}
    return {
        "n": int(ms.size),
        "p50": round(float(np.percentile(ms, 50)), 3),
        "p99": round(float(np.percentile(ms, 99)), 3),
        "max": round(float(ms.max()), 3),
    }


def _sender(port_name: str):
    import rtmidi

    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-player")
    names = out.get_ports()
    out.open_port([i for i, n in enumerate(names) if n.endswith(":" + port_name)][0])
    return out


def measure_input(n: int = 300, interval_s: float = 0.007) -> dict:
    """Send `n` notes into a poller; arrival stamp minus send stamp."""
    name = f"bench in {uuid.uuid4().hex[:6]}"
    poller = InputPoller(PortSpec(name, api="jack"))
    poller.open()
    poller.start()
    sender = _sender(name)
    sent_at = []
    try:
        next_t = time.perf_counter()
        for i in range(n):
            next_t += interval_s
            while time.perf_counter() < next_t:
                time.sleep(0.0005)
            sent_at.append(time.perf_counter())
            sender.send_message([0x90, i % 128, 100])
        got = [poller.queue.get(timeout=2) for _ in range(n)]
    finally:
        sender.close_port()
        poller.stop()
    return {"input": _stats([g.time - s for g, s in zip(got, sent_at)]), "lost": n - len(got)}


_LISTENER = """
import json, sys, time
from engine.live.midi.input import InputPoller
from engine.live.midi.ports import PortSpec
poller = InputPoller(PortSpec(sys.argv[1], api="jack", connect=True, client_name="bench-listener"))
poller.open()
poller.start()
print("ready", flush=True)
times = []  # arrival times of note-ons; the scheduler's closing note-offs end the run
deadline = time.monotonic() + float(sys.argv[3])
while len(times) < int(sys.argv[2]) and time.monotonic() < deadline:
    try:
        event = poller.queue.get(timeout=0.2)
    except Exception:
        continue
    if event.data[0] == 0x80:
        break
    times.append(event.time)
poller.stop()
print(json.dumps(times), flush=True)
"""


def measure_scheduler(n: int = 300, interval_s: float = 0.007, spin_s: float = 0.001) -> dict:
    """Schedule `n` notes; sent - due (scheduler) and arrival at a listener in another process - due.

    perf_counter is CLOCK_MONOTONIC on Linux, so the listener's stamps compare with ours."""
    name = f"bench out {uuid.uuid4().hex[:6]}"
    output = MidiOutput(PortSpec(name, api="jack")).open()
    wait_s = n * interval_s + 5
    listener = subprocess.Popen(
        [sys.executable, "-c", _LISTENER, name, str(n), str(wait_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    sched = Scheduler(output, SchedulerConfig(tolerance_s=0.002, spin_s=spin_s))
    try:
        if listener.stdout.readline().strip() != "ready":
            raise RuntimeError("the listener process did not start")
        sched.start()
        t0 = time.perf_counter() + 0.1
        for i in range(n):
            sched.schedule(t0 + i * interval_s, (0x90, i % 128, 100), "bench")
        time.sleep(n * interval_s + 0.2)
        records = list(sched.records)
        sent, dropped = sched.stats.sent, sched.stats.dropped
    finally:
        sched.stop()  # flushes note-offs for every note: the listener's end marker
    arrivals = json.loads(listener.communicate(timeout=wait_s + 5)[0].strip().splitlines()[-1])
    output.close()
    # arrivals keep the send order; pair them with the due times of the events sent (not dropped)
    recv = [arrived - due for arrived, (due, _) in zip(arrivals, records)]
    return {
        "sched": _stats([sent - due for due, sent in records]),
        "recv": _stats(recv),
        "dropped": dropped,
        "sent": sent,
        "received": len(arrivals),
    }


def run_all(n: int = 300) -> dict:
    """Every condition; returns one dict (milliseconds)."""
    result: dict = {"jack_period_ms": round(1000.0 * PERIOD / SAMPLE_RATE, 3), "conditions": {}}
    default_switch = sys.getswitchinterval()
    conditions = [  # (label, load, switch interval, scheduler spin)
        ("idle", None, default_switch, 0.001),
        ("busy_python", "python", default_switch, 0.001),
        ("busy_numpy", "numpy", default_switch, 0.001),
        ("busy_python_switch_0.5ms", "python", 0.0005, 0.001),
        ("busy_python_spin_6ms", "python", default_switch, 0.006),
    ]
    for label, load, switch, spin in conditions:
        busy = Busy(load) if load else None
        sys.setswitchinterval(switch)
        if busy:
            busy.start()
        try:
            entry = {**measure_input(n), **measure_scheduler(n, spin_s=spin)}
        finally:
            if busy:
                busy.halt.set()
                busy.join()
            sys.setswitchinterval(default_switch)
        entry["switch_interval_ms"] = switch * 1000
        entry["spin_ms"] = spin * 1000
        result["conditions"][label] = entry
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("-n", type=int, default=300, help="messages per measurement")
    args = parser.parse_args(argv)
    proc = None if os.environ.get("JACK_DEFAULT_SERVER") else start_jackd()
    try:
        result = run_all(args.n)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"JACK dummy {SAMPLE_RATE} Hz, period {PERIOD} frames = {result['jack_period_ms']} ms")
    for label, e in result["conditions"].items():
        print(f"{label}:")
        for key in ("input", "sched", "recv"):
            s = e[key]
            print(f"  {key:6s} p50 {s.get('p50')} ms  p99 {s.get('p99')} ms  max {s.get('max')} ms  (n {s['n']})")
        print(f"  scheduler sent {e['sent']} dropped {e['dropped']}, listener received {e['received']}; lost input {e['lost']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
