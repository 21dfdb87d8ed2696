"""The scheduler: on-time sends, drops instead of late sends, and no hanging notes on any path."""

from __future__ import annotations

import queue
import threading
import time
import uuid

import pytest

from engine.live.scheduler import Scheduler, SchedulerConfig, SchedulerCore


class FakeOutput:
    def __init__(self, fail_on=None) -> None:
        self.sent: list[tuple] = []
        self.times: list[float] = []
        self.panics = 0
        self.fail_on = fail_on
        self.lock = threading.Lock()

    def send(self, data) -> bool:
        if self.fail_on is not None and tuple(data) == self.fail_on:
            raise RuntimeError("synth exploded")
        with self.lock:
            self.sent.append(tuple(data))
            self.times.append(time.perf_counter())
        return True

    def all_notes_off(self, channels=range(16), notes=None) -> None:
        self.panics += 1


def on(pitch, ch=0, vel=100):
    return (0x90 | ch, pitch, vel)


def off(pitch, ch=0):
    return (0x80 | ch, pitch, 0)


def hanging(sent: list[tuple]) -> set[tuple[int, int]]:
    """(channel, pitch) left sounding by a sequence of sent messages."""
    sounding: dict[tuple[int, int], int] = {}
    for data in sent:
        kind, key = data[0] & 0xF0, (data[0] & 0x0F, data[1])
        if kind == 0x90 and data[2] > 0:
            sounding[key] = sounding.get(key, 0) + 1
        elif kind in (0x80, 0x90) and sounding.get(key):
            sounding[key] -= 1
    return {k for k, v in sounding.items() if v}


def test_sends_in_due_order_note_offs_first_at_equal_times():
    out = FakeOutput()
    core = SchedulerCore(out)
    core.add(1.0, on(60))
    core.add(2.0, on(60))  # re-strike at the same time as the off
    core.add(2.0, off(60))
    core.add(3.0, off(60))
    core.add(0.5, (0xB0, 7, 100))
    assert core.dispatch_due(0.5) == 1
    assert core.dispatch_due(1.0) == 1
    assert core.dispatch_due(2.0) == 2
    assert core.dispatch_due(3.0) == 1
    assert out.sent == [(0xB0, 7, 100), on(60), off(60), on(60), off(60)]
    assert hanging(out.sent) == set()
    assert core.stats.sent == 5 and core.stats.dropped == 0


def test_late_note_on_is_dropped_with_its_note_off():
    out = FakeOutput()
    core = SchedulerCore(out, SchedulerConfig(tolerance_s=0.002))
    core.add(1.0, on(60), "r")
    core.add(1.5, off(60), "r")
    core.add(1.0, on(64), "r")
    core.add(1.5, off(64), "r")
    core.dispatch_due(1.0015)  # 1.5 ms late is within the 2 ms tolerance: sent
    assert out.sent == [on(60), on(64)]
    out2 = FakeOutput()
    core2 = SchedulerCore(out2, SchedulerConfig(tolerance_s=0.002))
    core2.add(1.0, on(60), "r")
    core2.add(1.5, off(60), "r")
    core2.add(1.0, (0xB0, 1, 5), "r")
    core2.dispatch_due(1.01)  # 10 ms late: note-on and CC dropped
    core2.dispatch_due(1.5)
    assert out2.sent == []
    assert core2.stats.dropped == 3  # note-on, CC and the note-off of the dropped note-on
    assert core2.sounding() == []


def test_note_off_of_a_sounding_note_is_sent_late_not_dropped():
    out = FakeOutput()
    core = SchedulerCore(out, SchedulerConfig(tolerance_s=0.002))
    core.add(1.0, on(60))
    core.add(1.2, off(60))
    core.dispatch_due(1.0)
    core.dispatch_due(1.5)  # 300 ms late
    assert out.sent == [on(60), off(60)]
    assert core.stats.late == 1 and core.stats.dropped == 0


def test_note_on_velocity_zero_counts_as_note_off():
    out = FakeOutput()
    core = SchedulerCore(out)
    core.add(1.0, on(60))
    core.add(1.2, (0x90, 60, 0))
    core.dispatch_due(1.0)
    assert core.sounding() == [(0, 60, "")]
    core.dispatch_due(1.9)  # late but sent: its note-on sounded
    assert out.sent[-1] == (0x90, 60, 0)
    assert core.sounding() == []


def test_cut_ends_only_that_tag_at_once():
    out = FakeOutput()
    core = SchedulerCore(out)
    core.add(1.0, on(60), "response")
    core.add(1.0, on(48, ch=1), "backing")
    core.add(2.0, off(60), "response")
    core.add(2.0, off(48, ch=1), "backing")
    core.add(1.5, on(62), "response")
    core.add(1.8, off(62), "response")
    core.dispatch_due(1.0)
    assert core.cut("response") == 1
    assert out.sent[-1] == off(60)
    assert core.pending() == 1  # only the backing note-off is left
    core.dispatch_due(3.0)
    assert out.sent == [on(60), on(48, ch=1), off(60), off(48, ch=1)]
    assert hanging(out.sent) == set()


def test_flush_and_panic_close_everything():
    out = FakeOutput()
    core = SchedulerCore(out)
    for i, pitch in enumerate((60, 64, 67)):
        core.add(1.0, on(pitch, ch=i))
        core.add(5.0, off(pitch, ch=i))
    core.dispatch_due(1.0)
    assert len(core.sounding()) == 3
    core.panic()
    assert hanging(out.sent) == set()
    assert out.panics == 1
    assert core.pending() == 0


def test_same_pitch_overlapping_notes_are_all_closed():
    out = FakeOutput()
    core = SchedulerCore(out)
    core.add(1.0, on(60), "a")
    core.add(1.1, on(60), "b")
    core.dispatch_due(1.0)
    core.dispatch_due(1.1)
    assert core.flush() == 2
    assert out.sent.count(off(60)) == 2


# -- the thread ----------------------------------------------------------------------------------


def test_thread_sends_never_early_and_in_order():
    out = FakeOutput()
    sched = Scheduler(out)
    sched.start()
    try:
        t0 = time.perf_counter() + 0.05
        events = []
        for i in range(20):
            events.append((t0 + i * 0.01, on(60 + i), "r"))
            events.append((t0 + i * 0.01 + 0.005, off(60 + i), "r"))
        sched.schedule_many(events)
        deadline = time.monotonic() + 5
        while sched.stats.sent + sched.stats.dropped < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sched.stop()
    assert sched.error is None
    assert sched.stats.sent + sched.stats.dropped == 40
    assert hanging(out.sent) == set()
    sent_pitches = [d[1] for d in out.sent if d[0] == 0x90]
    assert sent_pitches == sorted(sent_pitches)
    assert all(sent >= due for due, sent in sched.records)


def test_thread_stop_closes_sounding_notes():
    out = FakeOutput()
    sched = Scheduler(out)
    sched.start()
    now = time.perf_counter()
    sched.schedule(now + 0.005, on(60), "r")
    sched.schedule(now + 60.0, off(60), "r")
    deadline = time.monotonic() + 2
    while not out.sent and time.monotonic() < deadline:
        time.sleep(0.005)
    sched.stop(timeout=1.0)
    assert not sched.is_alive()
    assert out.sent == [on(60), off(60)]


def test_thread_cut_waits_until_note_offs_are_out():
    out = FakeOutput()
    sched = Scheduler(out)
    sched.start()
    try:
        now = time.perf_counter()
        sched.schedule(now + 0.002, on(72), "response")
        sched.schedule(now + 30.0, off(72), "response")
        deadline = time.monotonic() + 2
        while not out.sent and time.monotonic() < deadline:
            time.sleep(0.005)
        sched.cut("response")
        assert out.sent == [on(72), off(72)]
    finally:
        sched.stop()


def test_thread_exception_is_reported_and_notes_closed():
    out = FakeOutput(fail_on=(0xB0, 99, 1))
    reports: queue.SimpleQueue = queue.SimpleQueue()
    sched = Scheduler(out, supervisor=lambda name, exc: reports.put((name, exc)))
    sched.start()
    now = time.perf_counter()
    sched.schedule(now + 0.002, on(60))
    sched.schedule(now + 0.010, (0xB0, 99, 1))
    sched.schedule(now + 10.0, off(60))
    name, exc = reports.get(timeout=2)
    sched.join(1)
    assert name == "scheduler" and isinstance(exc, RuntimeError)
    assert isinstance(sched.error, RuntimeError)
    assert out.sent == [on(60), off(60)]


# -- through JACK ----------------------------------------------------------------------------------


@pytest.mark.jack
def test_scheduled_notes_arrive_in_order_and_on_time_over_jack(jack_server):
    from engine.live.midi.input import InputPoller
    from engine.live.midi.output import MidiOutput
    from engine.live.midi.ports import PortSpec

    name = f"sched out {uuid.uuid4().hex[:6]}"
    output = MidiOutput(PortSpec(name, api="jack")).open()
    receiver = InputPoller(PortSpec(name, api="jack", connect=True, client_name="listener"))
    receiver.open()
    receiver.start()
    # a generous drop tolerance: this test is about order and arrival over JACK on a shared machine;
    # dropping late events is tested on the core with a fake clock
    sched = Scheduler(output, SchedulerConfig(tolerance_s=0.04))
    sched.start()
    try:
        t0 = time.perf_counter() + 0.05
        expected = []
        for i in range(16):
            due = t0 + i * 0.025
            sched.schedule(due, on(60 + i), "r")
            sched.schedule(due + 0.02, off(60 + i), "r")
            expected += [(due, on(60 + i)), (due + 0.02, off(60 + i))]
        got = []
        while len(got) < len(expected):
            got.append(receiver.queue.get(timeout=2))
    finally:
        sched.stop()
        receiver.stop()
        output.close()
    assert [e.data for e in got] == [d for _, d in sorted(expected)]
    assert sched.stats.dropped == 0
    # Never before due; after due by at most a JACK period or two plus scheduling slack (generous:
    # this is a shared machine, the precise numbers come from engine.bench.live_timing).
    for (due, _), event in zip(sorted(expected), got):
        assert event.time >= due
        assert event.time - due < 0.1


def fifo_permitted(priority: int) -> bool:
    """Whether this process may make a thread SCHED_FIFO (root, or an rtprio limit), tried on a throwaway thread."""
    import os

    result = []

    def attempt():
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            result.append(True)
        except (OSError, ValueError, AttributeError):
            result.append(False)

    t = threading.Thread(target=attempt)
    t.start()
    t.join()
    return result[0]


@pytest.mark.parametrize("priority", [None, 3])
def test_the_thread_says_whether_it_got_sched_fifo_and_the_model_threads_priority_follows(priority):
    import os

    from engine.live.part import PART_NICE, PART_NICE_BESIDE_REALTIME, part_nice

    sched = Scheduler(FakeOutput(), SchedulerConfig(realtime_priority=priority))
    policy = []
    sched.start()
    try:
        assert sched.priority_known.wait(2.0)
        policy.append(os.sched_getscheduler(sched.native_id))
    finally:
        sched.stop(timeout=1.0)
    granted = priority is not None and fifo_permitted(priority)
    assert sched.realtime is granted
    assert policy == [os.SCHED_FIFO if granted else os.SCHED_OTHER]
    assert part_nice(sched) == (PART_NICE_BESIDE_REALTIME if granted else PART_NICE)


def test_realtime_priority_option_zero_is_off_and_out_of_range_is_refused():
    from engine.errors import SidemanError
    from engine.live.scheduler import realtime_priority_option

    assert realtime_priority_option(0) is None
    assert realtime_priority_option(3) == 3
    for bad in (-1, 99):
        with pytest.raises(SidemanError, match="realtime-priority"):
            realtime_priority_option(bad)
