"""Probing C libraries quietly: JACK, ALSA, PortAudio and FluidSynth print to fd 2 when they look around.

`quiet_stderr()` points fd 2 at /dev/null for the duration; `no_jack_autostart()` makes JACK clients
look for a running server and never start one. Both restore what they changed. Use them around
probes (opening a client, importing sounddevice), never around the work itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (an embedded interpreter, a closed stream)
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def no_jack_autostart() -> Iterator[None]:
    saved = os.environ.get("JACK_NO_START_SERVER")
    os.environ["JACK_NO_START_SERVER"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("JACK_NO_START_SERVER", None)
        else:
            os.environ["JACK_NO_START_SERVER"] = saved
