"""Opening and listing ports: virtual ports and connect-by-name over real JACK, and the errors."""

from __future__ import annotations

import uuid

import pytest
import rtmidi

from engine.cli import main
from engine.errors import MidiPortError
from engine.live.midi import ports
from engine.live.midi.ports import PortSpec, find_port, list_ports, open_input, open_output


def test_find_port_prefers_exact_then_port_part_then_substring():
    names = ["a:sideman out", "loopMIDI Port 1", "kbd-01:keyboard", "x:keyboard 2"]
    assert find_port(names, "loopMIDI Port 1") == 1
    assert find_port(names, "keyboard") == 2  # the port part matches exactly, client renamed
    assert find_port(names, "loopmidi") == 1  # substring, case-insensitive
    assert find_port(names, "nothing") is None


def test_unknown_api_is_refused_with_the_allowed_names():
    with pytest.raises(MidiPortError, match="allowed: default, alsa, jack"):
        PortSpec("x", api="asio")


def test_missing_alsa_sequencer_says_what_to_do():
    """There is no /dev/snd here; elsewhere ALSA opens and this checks nothing."""
    try:
        midi = open_input(PortSpec(f"probe {uuid.uuid4().hex[:6]}", api="alsa"))
    except MidiPortError as exc:
        assert "--midi-api jack" in str(exc) and "jackd" in str(exc)
    else:
        ports.close(midi)


def test_winmm_without_connect_explains_loopmidi(monkeypatch):
    monkeypatch.setattr(ports, "resolve_api", lambda name: ("winmm", rtmidi.API_WINDOWS_MM))

    class Fake:
        def open_virtual_port(self, name):
            raise AssertionError("must not be called")

    with pytest.raises(MidiPortError, match="loopMIDI"):
        ports._open(Fake(), PortSpec("sideman in", api="winmm"), "input")


@pytest.mark.jack
def test_virtual_ports_are_listed(jack_server):
    tag = uuid.uuid4().hex[:6]
    midi_in = open_input(PortSpec(f"sideman in {tag}", api="jack"))
    midi_out = open_output(PortSpec(f"sideman out {tag}", api="jack"))
    try:
        listing = list_ports("jack")
        assert listing.error is None
        assert any(n.endswith(f"sideman out {tag}") for n in listing.inputs)  # we can read from it
        assert any(n.endswith(f"sideman in {tag}") for n in listing.outputs)  # others can send to it
    finally:
        ports.close(midi_in)
        ports.close(midi_out)


@pytest.mark.jack
def test_connect_to_existing_port_by_substring(jack_server):
    tag = uuid.uuid4().hex[:6]
    loop = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="loopMIDI")
    loop.open_virtual_port(f"loopMIDI Port {tag}")
    out = open_output(PortSpec(f"port {tag}".upper(), api="jack", connect=True))
    try:
        out.send_message([0x90, 60, 1])
        import time

        deadline = time.monotonic() + 2
        msg = None
        while msg is None and time.monotonic() < deadline:
            msg = loop.get_message()
            time.sleep(0.005)
        assert msg is not None and msg[0] == [0x90, 60, 1]
    finally:
        ports.close(out)
        loop.close_port()


@pytest.mark.jack
def test_connect_to_missing_port_lists_what_exists(jack_server):
    with pytest.raises(MidiPortError, match="no MIDI output port matching 'no such port'.*available"):
        open_output(PortSpec("no such port", api="jack", connect=True))


@pytest.mark.jack
def test_ports_command_prints_jack_ports(jack_server, capsys):
    name = f"sideman in {uuid.uuid4().hex[:6]}"
    midi_in = open_input(PortSpec(name, api="jack"))
    try:
        assert main(["ports", "--midi-api", "jack"]) == 0
    finally:
        ports.close(midi_in)
    out = capsys.readouterr().out
    assert "jack:" in out and name in out
