"""JACK servers that sideman starts (`jackd -d dummy`) on a machine with no sound card: a private one
for tests and benchmarks, or the one `sideman run --start-jack` starts for a session and stops after it.

Two test runs at once never share a server: each name of the pool is claimed with a lock file
(flock, released when the owner stops the server or dies) before its server starts.

What sideman starts, it stops: each start returns the jackd process, `stop_jack` ends exactly that
process and no other server, and the child is asked to die with the process that started it
(PR_SET_PDEATHSIG), so even a killed sideman leaves no server behind.

Test and benchmark server names come from a small fixed pool: JACK keeps at most 8 servers in its shared registry and
reclaims a dead server's slot only for a server of the same name, so fresh random names would use the
registry up after a few unclean exits. A name already running makes jackd exit, and the next is tried.
Starting one points this process and its children at it (JACK_DEFAULT_SERVER). No torch here.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time

from engine.audio.quiet import no_jack_autostart, quiet_stderr
from engine.errors import SidemanError

POOL_SIZE = 4


def _die_with_parent() -> None:
    """In the jackd child before exec: SIGTERM when the thread that started it exits (Linux only)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _launch(name: str | None, sample_rate: int, period: int, log_path: str | None,
            sync: bool) -> subprocess.Popen:
    exe = shutil.which("jackd")
    if exe is None:
        raise SidemanError("jackd not found: install it with `apt-get install jackd2`")
    sink = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115 - jackd holds it
    server_args = [exe] + (["-n", name] if name else []) + (["-S"] if sync else [])
    try:
        return subprocess.Popen(server_args + ["-d", "dummy", "-r", str(sample_rate), "-p", str(period)],
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=_die_with_parent)
    finally:
        if log_path:
            sink.close()  # the child has its own descriptor


def server_answers(timeout: float = 0.0) -> bool:
    """Whether the JACK server this process would use (JACK_DEFAULT_SERVER, else "default") accepts a
    client within `timeout` seconds. Never starts one."""
    import rtmidi  # here, so that importing this module needs no rtmidi

    deadline = time.monotonic() + timeout
    while True:
        try:
            with no_jack_autostart(), quiet_stderr():  # libjack says "cannot connect" on fd 2 otherwise
                rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="sideman-probe").get_ports()
            return True
        except rtmidi.RtMidiError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _wait_ready(proc: subprocess.Popen, timeout: float) -> bool:
    """Whether `proc` came up and answers. A jackd whose name is taken exits at once: a client that
    connected meanwhile reached the other server, so `proc` must still be running after the answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if server_answers():
            time.sleep(0.1)
            return proc.poll() is None
        time.sleep(0.1)
    return False


def start_dummy_jack(prefix: str, sample_rate: int = 48000, period: int = 128,
                     timeout: float = 10.0, log_path: str | None = None,
                     sync: bool = False) -> tuple[str, subprocess.Popen]:
    """Start `jackd -n PREFIX-i -d dummy` for the first free i; wait until a client connects.

    `log_path`: where jackd's messages go (xrun reports among them; see `read_xruns`), else nowhere.
    `sync`: synchronous mode (`jackd -S`): the server waits for late clients instead of dropping their cycle.
    """
    for slot in range(POOL_SIZE):
        name = f"{prefix}-{slot}"
        lock = _claim(name)
        if lock is None:
            continue  # another process (a second test run) owns this name: never share its server
        os.environ["JACK_DEFAULT_SERVER"] = name
        os.environ["JACK_NO_START_SERVER"] = "1"
        if server_answers():  # a server of this name that no sideman process owns: leave it alone
            os.close(lock)
            continue
        proc = _launch(name, sample_rate, period, log_path, sync)
        if _wait_ready(proc, timeout):
            _CLAIMS[proc.pid] = lock
            return name, proc
        stop_jack(proc, forget=False)
        os.close(lock)
    os.environ.pop("JACK_DEFAULT_SERVER", None)
    raise SidemanError(f"could not start jackd (tried {prefix}-0..{POOL_SIZE - 1}; are they all running?): "
                       "stop stale servers, or start one and set JACK_DEFAULT_SERVER")


_CLAIMS: dict[int, int] = {}  # jackd pid -> the descriptor holding its name's lock


def _claim(name: str) -> int | None:
    """An exclusive lock on the server name across processes (released when this process ends), or None."""
    path = os.path.join(tempfile.gettempdir(), f"sideman-jackd-{name}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def start_session_jack(sample_rate: int = 48000, period: int = 128,
                       timeout: float = 10.0) -> subprocess.Popen | None:
    """For `sideman run --start-jack`: None when a JACK server already answers (sideman uses it and
    leaves it alone); else start the server this process would use (JACK_DEFAULT_SERVER's name, else
    JACK's default) with the dummy backend and return it, for `stop_jack` when the session ends."""
    if server_answers():
        return None
    name = os.environ.get("JACK_DEFAULT_SERVER") or None
    # synchronous: with the dummy backend no sound card waits, so a late client (a VM stall) delays the
    # cycle instead of losing the MIDI in it (an asynchronous server lost a note-off that way in CI)
    proc = _launch(name, sample_rate, period, None, True)
    if not _wait_ready(proc, timeout):
        stop_jack(proc, forget=False)
        raise SidemanError(f"jackd -S -d dummy{' -n ' + name if name else ''} did not start within {timeout:g} s: "
                           "start a JACK server yourself (e.g. `jackd -d dummy -r 48000 -p 128`) and run again")
    os.environ["JACK_NO_START_SERVER"] = "1"  # never let a client auto-start a second one
    return proc


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


def stop_jack(proc: subprocess.Popen, forget: bool = True) -> None:
    """Stop exactly this jackd process (SIGTERM, then SIGKILL after 5 s) and reap it. `forget`: also
    stop pointing this process's JACK clients at it (JACK_DEFAULT_SERVER)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    lock = _CLAIMS.pop(proc.pid, None)
    if lock is not None:
        os.close(lock)  # the name is free for the next server
    if forget:
        os.environ.pop("JACK_DEFAULT_SERVER", None)
