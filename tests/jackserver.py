"""A private JACK server (dummy backend) for tests: `engine.live.jack` with the test's view of it.

Starting one exports JACK_DEFAULT_SERVER so every JACK client in this process and its children
(python-rtmidi, a daemon subprocess) talks to it and not to a user's server.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from engine.live.jack import start_dummy_jack, stop_jack


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
        stop_jack(self.process)


def jackd_path() -> str | None:
    return shutil.which("jackd")


def start_jack(sample_rate: int = 48000, period: int = 128, timeout: float = 10.0) -> JackServer:
    """Start `jackd -d dummy` from the test pool of names; wait until a client can connect."""
    name, proc = start_dummy_jack("sideman-test", sample_rate, period, timeout)
    return JackServer(name, proc, sample_rate, period)
