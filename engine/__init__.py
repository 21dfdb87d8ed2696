"""sideman: a realtime AI co-performer over MIDI.

Data flows one way: MIDI in -> tokens -> model session -> sampler -> scheduler -> MIDI out.
"""

import os

__version__ = "0.1.0"

# torch's OpenMP workers (libgomp) spin ~10 ms after every parallel operator by default before they
# sleep. On a 2-core machine that spinning steals the core the decode kernel's helper thread, the
# MIDI threads and the caller need (measured: decode p99/p50 1.8 right after TorchScript prefills,
# 1.6 with a short spin). libgomp reads this once, when torch is imported: a user's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
