"""The scheduler: sends timed MIDI events at their due time, drops what cannot be on time, and
never leaves a note hanging.

Design after python-rtmidi's examples/sequencer: an inbound queue, a heap keyed by due time, a
stop Event, `stop(timeout)` then `join`. The thread blocks on the inbound queue until about 1 ms
before the next due time, then spins on `perf_counter` for the last stretch.

Rules, applied by `SchedulerCore` (pure logic, driven with explicit times in unit tests):
- An event later than `tolerance_s` past due is dropped and counted, never sent late ...
- ... except a note-off whose note-on was sent: it is sent late (counted as late), never dropped.
- A dropped note-on also drops its matching note-off.
- Every sounding (channel, pitch) is tracked with its tag and closed on `cut(tag)`, `panic()`,
  `stop()` and when the thread dies of an exception.
At equal due times note-offs go first, so a repeated note re-strikes instead of being cut short.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Protocol

from engine.errors import SidemanError

log = logging.getLogger(__name__)

NOTE_OFF = 0x80
NOTE_ON = 0x90


class Output(Protocol):
    def send(self, data) -> bool: ...

    def all_notes_off(self, channels=..., notes=...) -> None: ...


def note_key(data) -> tuple[str, int, int] | None:
    """("on"|"off", channel, pitch) for a note message (note-on with velocity 0 is an off), else None."""
    if len(data) != 3:
        return None
    kind = data[0] & 0xF0
    if kind == NOTE_ON:
        return ("on" if data[2] > 0 else "off", data[0] & 0x0F, data[1])
    if kind == NOTE_OFF:
        return ("off", data[0] & 0x0F, data[1])
    return None


# SCHED_FIFO priority the daemon asks for its scheduler thread: below JACK's client threads (5) and server
# (10), above every normal thread. Under two busy programs it kept the accompaniment whole where the normal
# priority lost half its consonance (docs/benchmarks.md, "Accompaniment under load"). Best effort: without
# root or rtprio the thread runs at normal priority and says so.
DEFAULT_REALTIME_PRIORITY = 3


def realtime_priority_option(value: int) -> int | None:
    """A command line's `--realtime-priority N`: 0 means off (None), 1-98 a SCHED_FIFO priority."""
    if value == 0:
        return None
    if not 1 <= value <= 98:
        raise SidemanError(f"--realtime-priority {value} is out of range: 0 (off) or 1..98, below JACK's "
                           "client threads (5 by default), e.g. 3")
    return value


@dataclass(frozen=True)
class SchedulerConfig:
    # later than this past due: dropped (note-offs of sounding notes: sent late). Under two JACK periods
    # of 128 frames: a note a few ms late is inaudible, a dropped one is not.
    tolerance_s: float = 0.005
    spin_s: float = 0.001  # block until this long before due, then spin
    max_block_s: float = 0.1  # longest single wait on the inbound queue
    record: int = 100_000  # how many (due, sent) pairs to keep for benchmarks; 0 for none
    realtime_priority: int | None = None  # SCHED_FIFO priority (best effort; needs root or rtprio); None: off


@dataclass
class SchedulerStats:
    scheduled: int = 0
    sent: int = 0
    dropped: int = 0  # too late (and the note-offs of dropped note-ons)
    late: int = 0  # note-offs sent past tolerance so no note hangs
    cancelled: int = 0
    send_failed: int = 0  # the output refused


@dataclass(order=True)
class _Entry:
    due: float
    order: int  # 0 for note-offs, 1 for the rest: offs first at equal times
    seq: int
    data: tuple = field(compare=False)
    tag: str = field(compare=False)


class SchedulerCore:
    """The heap and the note bookkeeping, with no thread and no clock of its own."""

    def __init__(self, output: Output, config: SchedulerConfig = SchedulerConfig()) -> None:
        self.output = output
        self.config = config
        self.stats = SchedulerStats()
        self.records: deque[tuple[float, float]] = deque(maxlen=config.record or 1)
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._sounding: dict[tuple[int, int], list[str]] = {}  # (ch, pitch) -> tags of sounding notes
        self._suppressed: dict[tuple[int, int, str], int] = {}  # note-offs to drop (their note-on was)

    # -- adding and inspecting -----------------------------------------------------------------

    def add(self, due: float, data, tag: str = "") -> None:
        key = note_key(data)
        order = 0 if key is not None and key[0] == "off" else 1
        heapq.heappush(self._heap, _Entry(due, order, next(self._seq), tuple(data), tag))
        self.stats.scheduled += 1

    def next_due(self) -> float | None:
        return self._heap[0].due if self._heap else None

    def pending(self) -> int:
        return len(self._heap)

    def sounding(self) -> list[tuple[int, int, str]]:
        return [(ch, p, tag) for (ch, p), tags in self._sounding.items() for tag in tags]

    # -- sending -------------------------------------------------------------------------------

    def dispatch_due(self, now: float, now_fn: Callable[[], float] | None = None) -> int:
        """Handle every event due at or before `now`; returns how many were sent."""
        sent = 0
        heap = self._heap
        while heap and heap[0].due <= now:
            entry = heapq.heappop(heap)
            t = now_fn() if now_fn is not None else now
            sent += self._dispatch(entry, t)
        return sent

    def _dispatch(self, entry: _Entry, t: float) -> int:
        key = note_key(entry.data)
        late = t - entry.due > self.config.tolerance_s
        if key is None:
            if late:
                self.stats.dropped += 1
                return 0
            return self._send(entry, t)
        kind, ch, pitch = key
        if kind == "on":
            if late:
                self.stats.dropped += 1
                skey = (ch, pitch, entry.tag)
                self._suppressed[skey] = self._suppressed.get(skey, 0) + 1
                return 0
            if self._send(entry, t):
                self._sounding.setdefault((ch, pitch), []).append(entry.tag)
                return 1
            return 0
        # note-off
        skey = (ch, pitch, entry.tag)
        if self._suppressed.get(skey, 0) > 0:
            self._suppressed[skey] -= 1
            if not self._suppressed[skey]:
                del self._suppressed[skey]
            self.stats.dropped += 1
            return 0
        tags = self._sounding.get((ch, pitch))
        if tags:
            if entry.tag in tags:
                tags.remove(entry.tag)
            else:
                tags.pop(0)
            if not tags:
                del self._sounding[(ch, pitch)]
            if late:
                self.stats.late += 1
            return self._send(entry, t)
        if late:  # a stray note-off for nothing sounding: harmless to drop
            self.stats.dropped += 1
            return 0
        return self._send(entry, t)

    def _send(self, entry: _Entry, t: float) -> int:
        if self.output.send(entry.data) is False:
            self.stats.send_failed += 1
            return 0
        self.stats.sent += 1
        if self.config.record:
            self.records.append((entry.due, t))
        return 1

    # -- closing notes -------------------------------------------------------------------------

    def cut(self, tag: str) -> int:
        """Remove the pending events of `tag` and end its sounding notes now; returns note-offs sent."""
        kept = [e for e in self._heap if e.tag != tag]
        self.stats.cancelled += len(self._heap) - len(kept)
        self._heap = kept
        heapq.heapify(self._heap)
        self._suppressed = {k: v for k, v in self._suppressed.items() if k[2] != tag}
        sent = 0
        for (ch, pitch), tags in list(self._sounding.items()):
            while tag in tags:
                tags.remove(tag)
                sent += self._note_off_now(ch, pitch)
            if not tags:
                del self._sounding[(ch, pitch)]
        return sent

    def flush(self) -> int:
        """Drop every pending event and end every sounding note now (stop, shutdown, crash)."""
        self.stats.cancelled += len(self._heap)
        self._heap = []
        self._suppressed = {}
        sent = 0
        for (ch, pitch), tags in list(self._sounding.items()):
            for _ in tags:
                sent += self._note_off_now(ch, pitch)
        self._sounding = {}
        return sent

    def panic(self) -> None:
        """flush(), then All Notes Off and note-offs for every pitch on every channel."""
        self.flush()
        self.output.all_notes_off()

    def _note_off_now(self, ch: int, pitch: int) -> int:
        if self.output.send((NOTE_OFF | ch, pitch, 0)) is False:
            self.stats.send_failed += 1
            return 0
        self.stats.sent += 1
        return 1


class Scheduler(threading.Thread):
    """The scheduler thread. Thread-safe API: schedule(), cut(), panic(), stop().

    `supervisor(thread_name, exc)` is told if the thread dies; the thread closes all its notes first.
    """

    def __init__(
        self,
        output: Output,
        config: SchedulerConfig = SchedulerConfig(),
        supervisor: Callable[[str, BaseException], None] | None = None,
    ) -> None:
        super().__init__(name="scheduler", daemon=True)
        self.core = SchedulerCore(output, config)
        self.config = config
        self.error: BaseException | None = None
        self._supervisor = supervisor
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._stop_event = threading.Event()
        self.realtime = False  # whether the thread got SCHED_FIFO (known once `priority_known` is set)
        self.priority_known = threading.Event()

    @property
    def stats(self) -> SchedulerStats:
        return self.core.stats

    @property
    def records(self) -> deque:
        return self.core.records

    # -- thread-safe API -----------------------------------------------------------------------

    def schedule(self, due: float, data, tag: str = "") -> None:
        """Send `data` (MIDI bytes) at monotonic time `due` (time.perf_counter seconds)."""
        self._inbox.put(("add", due, data, tag))

    def schedule_many(self, events) -> None:
        """events: iterable of (due, data, tag)."""
        self._inbox.put(("many", list(events)))

    def cut(self, tag: str, wait: float | None = 1.0) -> None:
        """The player cut in: drop `tag`'s pending events and end its sounding notes now."""
        self._call("cut", tag, wait=wait)

    cancel = cut

    def panic(self, wait: float | None = 1.0) -> None:
        self._call("panic", wait=wait)

    def flush(self, wait: float | None = 1.0) -> None:
        self._call("flush", wait=wait)

    def stop(self, timeout: float = 1.0) -> None:
        """Flush (note-offs for every sounding note), end the thread and join it."""
        self._stop_event.set()
        self._inbox.put(("wake",))
        if self.is_alive():
            self.join(timeout)
        else:
            self.core.flush()

    def _call(self, op: str, *args, wait: float | None) -> None:
        done = threading.Event()
        self._inbox.put((op, *args, done))
        if wait and self.is_alive():
            done.wait(wait)

    # -- the thread ----------------------------------------------------------------------------

    def run(self) -> None:
        core = self.core
        try:
            self.realtime = self._set_realtime()
            self.priority_known.set()
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - recorded, notes closed, supervisor told
            self.error = exc
            log.exception("scheduler thread failed; closing all notes")
            if self._supervisor is not None:
                self._supervisor(self.name, exc)
        finally:
            self.priority_known.set()
            core.flush()

    def _loop(self) -> None:
        core = self.core
        inbox = self._inbox
        stop = self._stop_event
        now = time.perf_counter
        spin_s = self.config.spin_s
        max_block = self.config.max_block_s
        while not stop.is_set():
            due = core.next_due()
            wait = max_block if due is None else min(max_block, due - now() - spin_s)
            if wait > 0:
                try:
                    self._handle(inbox.get(timeout=wait))
                except queue.Empty:
                    pass
                self._drain_inbox()
                continue
            self._drain_inbox()
            due = core.next_due()
            if due is None:
                continue
            while now() < due:
                pass  # spin the last stretch; at most spin_s
            core.dispatch_due(now(), now)

    def _drain_inbox(self) -> None:
        while True:
            try:
                self._handle(self._inbox.get_nowait())
            except queue.Empty:
                return

    def _handle(self, item: tuple) -> None:
        op = item[0]
        core = self.core
        if op == "add":
            core.add(item[1], item[2], item[3])
        elif op == "many":
            for due, data, tag in item[1]:
                core.add(due, data, tag)
        elif op in ("cut", "panic", "flush"):
            done = item[-1]
            try:
                if op == "cut":
                    core.cut(item[1])
                elif op == "panic":
                    core.panic()
                else:
                    core.flush()
            finally:
                done.set()

    def _set_realtime(self) -> bool:
        """SCHED_FIFO for this thread when configured and permitted; whether it got it."""
        prio = self.config.realtime_priority
        if prio is None or not hasattr(os, "sched_setscheduler"):
            return False
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(prio))
        except (OSError, ValueError) as exc:
            log.info("SCHED_FIFO %d not permitted (%s): the scheduler runs at normal priority and the model "
                     "threads at a lower one (grant rtprio, e.g. the audio group's, for the realtime one)", prio, exc)
            return False
        log.info("scheduler thread runs SCHED_FIFO priority %d", prio)
        return True
