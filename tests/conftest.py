"""Shared fixtures. `jack_server` starts a real JACK server (dummy backend) for a test.

Under CI (CI=true) a missing jackd is a failure, never a skip.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")

from jackserver import jackd_path, start_jack  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture
def jack_server():
    """A fresh JACK server for each test that needs one (about 0.5 s to start): a test that leaves a
    client behind, or a server that stops answering, cannot take the tests after it down too."""
    if jackd_path() is None:
        message = "jackd not found: install it with `apt-get install jackd2` (make test does this as root)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    server = start_jack()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
