"""Start and stop a private JACK server (dummy backend) for tests and benchmarks.

The server gets its own name, exported as JACK_DEFAULT_SERVER so that every JACK client in this
process and its children (python-rtmidi, a daemon subprocess) talks to it and not to a user's server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass


@dataclass
class JackServer:
    name: str
    process: subprocess.Popen
    sample_rate: int
    period: int

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.period / self.sample_rate

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


SERVER_NAMES = tuple(f"sideman-test-{i}" for i in range(4))


def _name_in_use(name: str) -> bool:
    """A jackd of that name is running (in this or another test run)."""
    try:
        out = subprocess.run(["pgrep", "-f", f"jackd -n {name} "], capture_output=True, text=True)
    except FileNotFoundError:
        return False
    return bool(out.stdout.strip())


def jackd_path() -> str | None:
    return shutil.which("jackd")


def start_jack(sample_rate: int = 48000, period: int = 128, timeout: float = 10.0) -> JackServer:
    """Start `jackd -d dummy`; wait until a client can connect; export JACK_DEFAULT_SERVER."""
    exe = jackd_path()
    if exe is None:
        raise RuntimeError("jackd not found: install it with `apt-get install jackd2`")
    # JACK keeps 8 server slots in /dev/shm and frees the slot of a server that died uncleanly only
    # for a server of the same name: a small fixed pool of names never fills the registry.
    for name in SERVER_NAMES:
        if not _name_in_use(name):
            break
    else:
        raise RuntimeError(f"all JACK test server names are in use: {', '.join(SERVER_NAMES)}")
    proc = subprocess.Popen(
        [exe, "-n", name, "-d", "dummy", "-r", str(sample_rate), "-p", str(period)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    os.environ["JACK_DEFAULT_SERVER"] = name
    os.environ["JACK_NO_START_SERVER"] = "1"
    server = JackServer(name, proc, sample_rate, period)
    deadline = time.monotonic() + timeout
    import rtmidi  # here, so that importing this module needs no rtmidi

    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise RuntimeError(f"jackd exited with code {proc.returncode}: {err.strip()[-500:]}")
        try:
            probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="sideman-probe")
            probe.get_ports()
            del probe
            return server
        except Exception:  # noqa: BLE001 - server not up yet
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"jackd did not come up within {timeout} s")
