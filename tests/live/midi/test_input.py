"""The input poller: validation and routing (unit), and real JACK bursts, junk and vanishing ports."""

from __future__ import annotations

import queue
import time
import uuid

import pytest
import rtmidi

from engine.errors import MidiPortError
from engine.live.midi.input import InputPoller, MidiEvent, is_valid
from engine.live.midi.ports import PortSpec


def wait_until(cond, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


def drain(q: queue.SimpleQueue) -> list[MidiEvent]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


@pytest.mark.parametrize(
    "data,ok",
    [
        ((0x90, 60, 100), True),
        ((0xC5, 10), True),
        ((0xF8,), True),
        ((0xF2, 0, 1), True),
        ((0xF0, 1, 2, 0xF7), True),
        ((), False),
        ((0x90, 60), False),  # truncated
        ((0x90, 60, 100, 1), False),  # too long
        ((0x90, 200, 100), False),  # data byte >= 0x80
        ((60, 100), False),  # no status byte
        ((0xF9,), False),  # undefined
        ((0xF0, 1, 2), False),  # sysex without its end
    ],
)
def test_is_valid(data, ok):
    assert is_valid(data) is ok


def test_handle_routes_and_counts():
    clock = []
    poller = InputPoller(PortSpec("x"), clock_sink=lambda t, d: clock.append((t, d)))
    for i, data in enumerate([(0x90, 60, 100), (0xF8,), (0xF0, 1, 0xF7), (0x90, 60), (0xFA,), (0xB0, 64, 127), (0xF0, 1)]):
        poller.handle(float(i), data)
    events = drain(poller.queue)
    assert events == [MidiEvent(0.0, (0x90, 60, 100)), MidiEvent(5.0, (0xB0, 64, 127))]
    assert events[0].channel == 0 and events[0].status == 0x90
    assert clock == [(1.0, (0xF8,)), (4.0, (0xFA,))]
    s = poller.stats
    assert (s.received, s.queued, s.clock, s.sysex, s.malformed) == (7, 2, 2, 2, 1)


def test_a_failing_clock_sink_is_counted_and_reported_not_fatal():
    reports = []

    def sink(t, data):
        raise ZeroDivisionError("bug in the clock")

    poller = InputPoller(PortSpec("x"), clock_sink=sink, supervisor=lambda name, exc: reports.append(exc))
    poller.handle(0.0, (0xF8,))
    poller.handle(0.1, (0xF8,))
    poller.handle(0.2, (0x90, 1, 1))
    assert poller.stats.sink_errors == 2
    assert len(reports) == 1 and isinstance(reports[0], ZeroDivisionError)
    assert len(drain(poller.queue)) == 1


class FlakyPort:
    """Delivers one message, then raises like a vanished port; used through the opener."""

    def __init__(self, log):
        self.log = log
        self.calls = 0

    def get_message(self):
        self.calls += 1
        if self.calls == 1:
            return ([0x90, 60, 100], 0.0)
        if self.calls == 2:
            raise rtmidi.SystemError("port gone")
        return None

    def close_port(self):
        self.log.append("closed")


def test_port_error_reopens_and_reports():
    log, reports = [], []
    opened = []

    def opener():
        opened.append(1)
        if len(opened) == 2:
            raise MidiPortError("not back yet")
        return FlakyPort(log)

    poller = InputPoller(PortSpec("x"), opener=opener, recheck_s=0.02, supervisor=lambda n, e: reports.append(e))
    poller.start()
    try:
        assert wait_until(lambda: poller.stats.reconnects >= 1, 3)
        assert wait_until(lambda: poller.stats.queued >= 2, 3)  # the reopened port delivers again
    finally:
        poller.stop()
    assert poller.error is None and not poller.is_alive()
    assert poller.stats.port_errors >= 1
    assert any(isinstance(e, rtmidi.SystemError) for e in reports)


def test_unexpected_exception_is_recorded_and_reported():
    class Broken:
        def get_message(self):
            raise KeyError("surprise")

        def close_port(self):
            pass

    reports = []
    poller = InputPoller(PortSpec("x"), opener=Broken, supervisor=lambda n, e: reports.append((n, e)))
    poller.start()
    poller.join(2)
    assert not poller.is_alive()
    assert isinstance(poller.error, KeyError)
    assert reports and reports[0][0] == poller.name


# -- through JACK ----------------------------------------------------------------------------------


def jack_sender(port_name: str, client: str = "player") -> rtmidi.MidiOut:
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name=client)
    names = out.get_ports()
    out.open_port([i for i, n in enumerate(names) if n.endswith(":" + port_name)][0])
    return out


@pytest.fixture
def jack_poller(jack_server):
    name = f"sideman in {uuid.uuid4().hex[:6]}"
    poller = InputPoller(PortSpec(name, api="jack"), clock_sink=lambda t, d: None)
    poller.open()
    poller.start()
    yield poller
    poller.stop()


# A JACK MIDI port buffer holds one period's events: 32768 bytes here (jack_port_type_get_buffer_size),
# 12 bytes an event of up to 4 bytes, so about 2700. The sender's rtmidi client moves everything sent since its
# last cycle into that buffer and drops what does not fit ("JackMidiBuffer::ReserveEvent - the buffer does
# not have enough room"). On a loaded machine the sender's cycles come late, so a test sending 3000
# messages at once lost some in the sender, before they ever reached the input under test.
# Messages sent and not yet received: within one period's buffer, and above rtmidi's default 1024-message
# input queue, so a stalled poller still needs the larger queue the daemon asks for
SENDER_WINDOW = 2000


def send_windowed(sender: rtmidi.MidiOut, messages, received) -> None:
    """Send as fast as the receiver takes them, never more than SENDER_WINDOW unreceived."""
    for i, data in enumerate(messages):
        if i - received() >= SENDER_WINDOW:
            deadline = time.monotonic() + 10
            while i - received() >= SENDER_WINDOW and time.monotonic() < deadline:
                time.sleep(0.0005)
        sender.send_message(data)


@pytest.mark.jack
@pytest.mark.parametrize("n", [1000, 3000])  # 3000: more than rtmidi's default 1024-message queue
def test_burst_loses_nothing(jack_poller, n):
    sender = jack_sender(jack_poller.spec.name)
    try:
        sent = [(0x90 | (i % 16), i % 128, 1 + i % 127) for i in range(n)]
        t0 = time.perf_counter()
        send_windowed(sender, sent, lambda: jack_poller.stats.received)
        got = []
        while len(got) < n:
            got.append(jack_poller.queue.get(timeout=3))
    finally:
        sender.close_port()
    assert [e.data for e in got] == sent
    assert all(e.time >= t0 for e in got)
    assert [e.time for e in got] == sorted(e.time for e in got)
    assert jack_poller.stats.malformed == 0 and jack_poller.error is None


@pytest.mark.jack
def test_junk_and_sysex_over_jack_are_counted_not_fatal(jack_poller):
    sender = jack_sender(jack_poller.spec.name)
    try:
        junk = [[0x90, 60], [0x95], [60, 100, 3], [0xF9], [0xF4], [0xF0, 1, 2]]
        for data in junk:
            sender.send_message(data)
        sender.send_message([0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7])
        sender.send_message([0xF8])
        sender.send_message([0x80, 60, 0])
        event = jack_poller.queue.get(timeout=2)
    finally:
        sender.close_port()
    assert event.data == (0x80, 60, 0)  # everything sent before it has been handled
    s = jack_poller.stats
    # rtmidi's JACK backend glues the unterminated sysex to the next one: one or two sysex arrive
    assert s.malformed == len(junk) - 1 and s.sysex >= 1 and s.clock == 1 and s.queued == 1
    assert s.received == s.malformed + s.sysex + s.clock + s.queued
    assert jack_poller.is_alive() and jack_poller.error is None


@pytest.mark.jack
def test_vanished_source_port_is_reconnected_when_it_returns(jack_server):
    """connect mode: sideman's input follows a port of another program that goes and comes back."""
    name = f"keyboard {uuid.uuid4().hex[:6]}"
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="kbd")
    keyboard.open_virtual_port(name)
    reports = []
    poller = InputPoller(
        PortSpec(name, api="jack", connect=True), recheck_s=0.1, supervisor=lambda n, e: reports.append(e)
    )
    poller.open()
    poller.start()
    try:
        keyboard.send_message([0x90, 60, 100])
        assert poller.queue.get(timeout=2).data == (0x90, 60, 100)
        keyboard.close_port()
        del keyboard
        assert wait_until(lambda: not poller.connected, 3)
        assert poller.is_alive()
        keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="kbd")  # JACK may call it kbd-01 now
        keyboard.open_virtual_port(name)
        assert wait_until(lambda: poller.connected, 3)
        keyboard.send_message([0x90, 62, 100])
        assert poller.queue.get(timeout=2).data == (0x90, 62, 100)
    finally:
        poller.stop()
    assert poller.stats.reconnects == 1 and poller.stats.port_errors == 1
    assert len(reports) == 1 and poller.error is None
