"""The accompaniment's commit window: how far in front of the clock the sideman's plan is fixed.

A voice's note is handed to the scheduler (committed) when the clock comes within the window of it, and is
never changed after that; the plan behind the window follows the player. The shorter the window, the more
of the player's notes the voices know before they commit: a person plays a note a little early about half
the time, and a voice committed before that note came cannot answer it (`docs/benchmarks.md`, "what the
commit window costs": CR 0.938 / 0.925 / 0.916 offline at 0 / 2 / 4 ticks). But the model thread must
commit each note before it is due, so the window must be longer than the thread's lag: a token step it is
in the middle of, a wait for the CPU or the GIL, a stalled VM.

Fixed: always `ceiling_ms` (the preset's `commit_ms`). Adaptive (the default): `margin` x the longest lag
seen in the last `memory_s` seconds + `headroom_ms` (the scheduler's send and a JACK period), kept between
`floor_ms` and `ceiling_ms`, and the ceiling until `warmup` lags have been seen. A fast machine so plays
with a window of 15-25 ms; a slow one (an AVX2-only build, whose revisions reach 30 ms) keeps the preset's
50; a stall widens the window at once, and it narrows again only when the stall has left the memory.

The scheduler and the MIDI layer never import torch, and neither does this: it is plain arithmetic on
monotonic times (`time.perf_counter`, seconds) and lags (ms).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

FLOOR_MS = 15.0  # the shortest adaptive window: a few JACK periods (2.7 ms at 128 frames) and the send


@dataclass
class CommitWindow:
    ceiling_ms: float  # the preset's commit_ms: the window when fixed, the longest when adaptive
    adaptive: bool = True
    floor_ms: float = FLOOR_MS
    margin: float = 2.0  # the window is this many times the longest lag seen ...
    headroom_ms: float = 5.0  # ... plus this
    memory_s: float = 20.0  # ... in this many seconds
    warmup: int = 32  # lags seen before the window may narrow
    _lags: deque = field(default_factory=deque, repr=False)  # (time, ms), the lags decreasing: a sliding max
    _seen: int = 0

    def configure(self, ceiling_ms: float, adaptive: bool, floor_ms: float) -> None:
        """New settings (a preset switch, CC 28); what was measured of the thread's lag is kept."""
        self.ceiling_ms, self.adaptive, self.floor_ms = ceiling_ms, adaptive, floor_ms

    def observe(self, lag_ms: float, now: float) -> None:
        """The model thread was `lag_ms` late (a commit after its moment, or a step's length) at `now`."""
        self._seen += 1
        lags = self._lags
        while lags and lags[-1][1] <= lag_ms:
            lags.pop()
        lags.append((now, lag_ms))
        self._forget(now)

    def longest_lag_ms(self, now: float) -> float:
        self._forget(now)
        return self._lags[0][1] if self._lags else 0.0

    def ms(self, now: float) -> float:
        """The window now (ms)."""
        if not self.adaptive or self._seen < self.warmup or self.ceiling_ms <= self.floor_ms:
            return self.ceiling_ms
        wanted = self.margin * self.longest_lag_ms(now) + self.headroom_ms
        return min(self.ceiling_ms, max(self.floor_ms, wanted))

    def _forget(self, now: float) -> None:
        while self._lags and self._lags[0][0] < now - self.memory_s:
            self._lags.popleft()
