"""Build the native decode kernel: `python -m engine.model.native.build` (make setup runs it).

    engine/model/native/decode.c -> engine/model/native/libsideman_decode.so

A plain C shared library (no torch or Python headers; loaded with ctypes), compiled for this machine's
CPU (-march=native): build it on the machine that runs it. Without a C compiler nothing breaks: the
runtime falls back to the TorchScript decode path, which is about twice as slow, and says so.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "decode.c"
LIBRARY = HERE / "libsideman_decode.so"
# SIDEMAN_MARCH picks another target than this CPU, e.g. x86-64-v3 (AVX2, most laptops) to measure what
# such a machine gets: SIDEMAN_MARCH=x86-64-v3 python -m engine.model.native.build --force
MARCH = os.environ.get("SIDEMAN_MARCH", "native")
FLAGS = ["-O3", f"-march={MARCH}", "-fopenmp-simd", "-pthread", "-fPIC", "-shared", "-std=gnu11", "-Wall", "-Wextra"]


def compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


def is_stale() -> bool:
    return not LIBRARY.exists() or LIBRARY.stat().st_mtime < SOURCE.stat().st_mtime


def build(force: bool = False) -> Path | None:
    """Compile the kernel if it is missing or older than its source; None (and a warning) without a compiler."""
    if not force and not is_stale():
        return LIBRARY
    cc = compiler()
    if cc is None:
        log.warning("no C compiler (cc/gcc/clang): the native decode kernel is not built and decoding runs on the "
                    "TorchScript path (about 2x slower per token); install one (apt-get install gcc) and run "
                    "`python -m engine.model.native.build`")
        return None
    tmp = LIBRARY.with_suffix(".so.tmp")
    cmd = [cc, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"]
    log.info("building the native decode kernel: %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"building {SOURCE.name} failed ({' '.join(cmd)}):\n{proc.stderr}")
    os.replace(tmp, LIBRARY)
    return LIBRARY


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    force = "--force" in sys.argv[1:]
    try:
        path = build(force)
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    if path is not None:
        log.info("native decode kernel: %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
