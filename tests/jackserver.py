"""A private JACK server (dummy backend) for tests: `engine.live.jack` with the test's view of it.

Starting one exports JACK_DEFAULT_SERVER so every JACK client in this process and its children
(python-rtmidi, a daemon subprocess) talks to it and not to a user's server.

The server runs synchronous (`jackd -S`): when the VM stalls a client past its cycle, the server waits
for it. An asynchronous server drops the late client's cycle instead, and the MIDI in it with it: CI on
8967423 lost one clock pulse of 144 and two of the sideman's note-offs that way in one run (a VM stall,
not the daemon). The tests judge the daemon, so they run on a transport that delivers what was sent;
`xruns()` reads the server's log (late cycles, the clients that were late) for a failing test's message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from engine.live.jack import read_xruns, start_dummy_jack, stop_jack


@dataclass
class JackServer:
    name: str
    process: subprocess.Popen
    sample_rate: int
    period: int
    log_path: str

    @property
    def period_ms(self) -> float:
        return 1000.0 * self.period / self.sample_rate

    def xruns(self) -> tuple[int, dict[str, int]]:
        """(late cycles, {client: times late}) so far, from the server's log."""
        return read_xruns(self.log_path)

    def stop(self) -> None:
        stop_jack(self.process)
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


def jackd_path() -> str | None:
    return shutil.which("jackd")


def start_jack(sample_rate: int = 48000, period: int = 128, timeout: float = 10.0) -> JackServer:
    """Start `jackd -S -d dummy` from the test pool of names; wait until a client can connect."""
    fd, log_path = tempfile.mkstemp(prefix="sideman-test-jackd-", suffix=".log")
    os.close(fd)
    sync = os.environ.get("SIDEMAN_TEST_JACK_ASYNC") != "1"  # for measuring what the async server drops
    name, proc = start_dummy_jack("sideman-test", sample_rate, period, timeout, log_path=log_path, sync=sync)
    return JackServer(name, proc, sample_rate, period, log_path)
