"""A private JACK server (`jackd -d dummy`) for tests and benchmarks, on a machine with no sound card.

Server names come from a small fixed pool: JACK keeps at most 8 servers in its shared registry and
reclaims a dead server's slot only for a server of the same name, so fresh random names would use the
registry up after a few unclean exits. A name already running makes jackd exit, and the next is tried.
Starting one points this process and its children at it (JACK_DEFAULT_SERVER). No torch here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

from engine.errors import SidemanError

POOL_SIZE = 4


def start_dummy_jack(prefix: str, sample_rate: int = 48000, period: int = 128,
                     timeout: float = 10.0, log_path: str | None = None,
                     sync: bool = False) -> tuple[str, subprocess.Popen]:
    """Start `jackd -n PREFIX-i -d dummy` for the first free i; wait until a client connects.

    `log_path`: where jackd's messages go (xrun reports among them; see `read_xruns`), else nowhere.
    `sync`: synchronous mode (`jackd -S`): the server waits for late clients instead of dropping their cycle.
    """
    import rtmidi  # here, so that importing this module needs no rtmidi

    exe = shutil.which("jackd")
    if exe is None:
        raise SidemanError("jackd not found: install it with `apt-get install jackd2`")
    for slot in range(POOL_SIZE):
        name = f"{prefix}-{slot}"
        sink = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - jackd holds it
        server_args = [exe, "-n", name] + (["-S"] if sync else [])
        proc = subprocess.Popen(server_args + ["-d", "dummy", "-r", str(sample_rate), "-p", str(period)],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        if log_path:
            sink.close()  # the child has its own descriptor
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="sideman-probe").get_ports()
                return name, proc
            except rtmidi.RtMidiError:
                time.sleep(0.1)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(5)
    os.environ.pop("JACK_DEFAULT_SERVER", None)
    raise SidemanError(f"could not start jackd (tried {prefix}-0..{POOL_SIZE - 1}; are they all running?): "
                       "stop stale servers, or start one and set JACK_DEFAULT_SERVER")


def read_xruns(log_path: str) -> tuple[int, dict[str, int]]:
    """(late cycles, {client: times it was not finished in time}) from a jackd log.

    jackd reports a cycle whose graph did not finish within the period as "Process error", and each
    client still running then as "XRun: client = NAME was not finished": MIDI of such a cycle can be lost.
    """
    cycles = 0
    clients: dict[str, int] = {}
    try:
        with open(log_path, errors="replace") as f:
            for line in f:
                if "Process error" in line:
                    cycles += 1
                elif "XRun: client = " in line:
                    name = line.split("XRun: client = ", 1)[1].split(" was not finished", 1)[0].strip()
                    clients[name] = clients.get(name, 0) + 1
    except OSError:
        pass
    return cycles, clients


def stop_jack(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    os.environ.pop("JACK_DEFAULT_SERVER", None)
