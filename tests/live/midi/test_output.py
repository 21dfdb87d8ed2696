"""The output edge: send never raises, all notes off arrives whole, a vanished target comes back."""

from __future__ import annotations

import time
import uuid

import pytest
import rtmidi

from engine.live.midi.input import InputPoller
from engine.live.midi.output import MidiOutput
from engine.live.midi.ports import PortSpec


class Refusing:
    def send_message(self, data):
        raise rtmidi.SystemError("backend said no")

    def close_port(self):
        pass


def test_send_never_raises_and_counts(caplog):
    out = MidiOutput(PortSpec("x"), opener=Refusing).open()
    assert out.send((0x90, 60, 100)) is False
    assert out.send((0x90, 60, 100)) is False
    assert out.stats.errors == 2 and out.stats.sent == 0
    assert sum("refused" in r.message for r in caplog.records) == 1  # logged once


def wait_until(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.01)
    return cond()


@pytest.fixture
def jack_pair(jack_server):
    """A MidiOutput on a virtual JACK port and a poller connected to it."""
    name = f"sideman out {uuid.uuid4().hex[:6]}"
    out = MidiOutput(PortSpec(name, api="jack")).open()
    poller = InputPoller(PortSpec(name, api="jack", connect=True, client_name="listener"))
    poller.open()
    poller.start()
    yield out, poller
    poller.stop()
    out.close()


def receive(poller, n, timeout=3.0):
    got = []
    while len(got) < n:
        got.append(poller.queue.get(timeout=timeout).data)
    return got


@pytest.mark.jack
def test_bad_bytes_over_jack_are_refused_not_raised(jack_pair):
    out, poller = jack_pair
    assert out.send(()) is False
    assert out.send((0x90, 300, 1)) is False
    assert out.send((0x90, 60, 100)) is True
    assert receive(poller, 1) == [(0x90, 60, 100)]
    assert out.stats.errors == 2


@pytest.mark.jack
def test_all_notes_off_arrives_whole(jack_pair):
    out, poller = jack_pair
    out.all_notes_off()
    got = receive(poller, 16 * 128 + 16 * 3)
    offs = {(d[0] & 0x0F, d[1]) for d in got if d[0] & 0xF0 == 0x80}
    assert len(offs) == 16 * 128
    assert {(d[0] & 0x0F) for d in got if d[0] & 0xF0 == 0xB0 and d[1] == 123} == set(range(16))
    assert out.stats.errors == 0


@pytest.mark.jack
def test_vanished_target_port_comes_back(jack_server):
    """connect mode: the synth/DAW input sideman sends to goes away and returns."""
    name = f"synth in {uuid.uuid4().hex[:6]}"
    synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="synth")
    synth.open_virtual_port(name)
    out = MidiOutput(PortSpec(name, api="jack", connect=True), recheck_s=0.1).open()
    try:
        synth.close_port()
        del synth
        assert wait_until(lambda: not out.connected)
        assert out.send((0x90, 60, 100)) is False  # dropped and counted, not raised
        assert out.stats.dropped_disconnected == 1
        synth = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="synth")
        synth.open_virtual_port(name)
        assert wait_until(lambda: out.connected)
        assert out.send((0x90, 61, 100)) is True
        deadline = time.monotonic() + 2
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = synth.get_message()
            time.sleep(0.005)
        assert msg is not None and msg[0] == [0x90, 61, 100]
        assert out.stats.reconnects == 1
    finally:
        out.close()
