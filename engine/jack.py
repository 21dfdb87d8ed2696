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
                     timeout: float = 10.0) -> tuple[str, subprocess.Popen]:
    """Start `jackd -n PREFIX-i -d dummy` for the first free i; wait until a client connects."""
    import rtmidi  # here, so that importing this module needs no rtmidi

    exe = shutil.which("jackd")
    if exe is None:
        raise SidemanError("jackd not found: install it with `apt-get install jackd2`")
    for slot in range(POOL_SIZE):
        name = f"{prefix}-{slot}"
        proc = subprocess.Popen([exe, "-n", name, "-d", "dummy", "-r", str(sample_rate), "-p", str(period)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
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


def stop_jack(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    os.environ.pop("JACK_DEFAULT_SERVER", None)
