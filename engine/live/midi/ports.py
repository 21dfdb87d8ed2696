"""Opening MIDI ports through python-rtmidi: virtual ports by name, or existing ports by name.

Linux has virtual ports on ALSA (the default) and JACK (`api="jack"`); macOS on CoreMIDI. Windows
has none: there sideman connects to existing loopback ports (loopMIDI, Windows MIDI Services) by
exact name or substring (`connect=True`).

Every failure raises MidiPortError with the fix. The rtmidi objects returned here must be kept
alive by the caller for as long as the port is used (a dropped reference closes the port).
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import rtmidi

from engine.errors import MidiPortError

log = logging.getLogger(__name__)

API_BY_NAME: dict[str, int] = {
    "alsa": rtmidi.API_LINUX_ALSA,
    "jack": rtmidi.API_UNIX_JACK,
    "coremidi": rtmidi.API_MACOSX_CORE,
    "winmm": rtmidi.API_WINDOWS_MM,
}
API_NAMES = ("default", *API_BY_NAME)

DEFAULT_INPUT_NAME = "sideman in"
DEFAULT_OUTPUT_NAME = "sideman out"
DEFAULT_CLIENT_NAME = "sideman"

# What to do when an API's server is missing, keyed by API name.
_SERVER_FIX = {
    "alsa": (
        "no ALSA sequencer (/dev/snd/seq is missing; load it with `modprobe snd-seq`), "
        "or use --midi-api jack and start jackd (e.g. `jackd -d dummy -r 48000 -p 128`)"
    ),
    "jack": "no JACK server running: start one (e.g. `jackd -d dummy -r 48000 -p 128`) or use --midi-api alsa",
    "coremidi": "CoreMIDI is unavailable: check Audio MIDI Setup",
    "winmm": "the Windows MIDI service is unavailable",
}


@dataclass(frozen=True)
class PortSpec:
    """Which port to open.

    name: the virtual port's name, or (connect=True) the exact name or a substring of an existing port.
    api: "default" (ALSA on Linux, CoreMIDI on macOS, WinMM on Windows), "alsa", "jack", "coremidi", "winmm".
    connect: connect to an existing port instead of opening a virtual one (always so on Windows).
    client_name: the MIDI client name this process shows to others.
    """

    name: str
    api: str = "default"
    connect: bool = False
    client_name: str = DEFAULT_CLIENT_NAME

    def __post_init__(self) -> None:
        if self.api not in API_NAMES:
            raise MidiPortError(f"unknown MIDI API {self.api!r}; allowed: {', '.join(API_NAMES)}")
        if not self.name:
            raise MidiPortError("empty MIDI port name; give the port's name (or part of it)")


def default_api_name() -> str:
    if sys.platform.startswith("linux"):
        return "alsa"
    if sys.platform == "darwin":
        return "coremidi"
    if sys.platform.startswith("win"):
        return "winmm"
    return "default"


def resolve_api(name: str) -> tuple[str, int]:
    """(concrete API name, rtmidi API constant) for an API name; checks it is compiled in."""
    concrete = default_api_name() if name == "default" else name
    if concrete not in API_BY_NAME:
        raise MidiPortError(f"unknown MIDI API {name!r}; allowed: {', '.join(API_NAMES)}")
    api = API_BY_NAME[concrete]
    if api not in rtmidi.get_compiled_api():
        compiled = ", ".join(rtmidi.get_api_name(a) for a in rtmidi.get_compiled_api()) or "none"
        raise MidiPortError(
            f"MIDI API {concrete!r} is not compiled into python-rtmidi here (compiled: {compiled}); "
            f"use --midi-api with one of those"
        )
    return concrete, api


def compiled_api_names() -> list[str]:
    by_value = {v: k for k, v in API_BY_NAME.items()}
    return [by_value[a] for a in rtmidi.get_compiled_api() if a in by_value]


# rtmidi's input ring buffer (messages). JACK hands over a whole period's events at once; with
# rtmidi's default of 1024 a burst of more than 1023 messages in one period loses the rest.
INPUT_QUEUE_SIZE = 16384


def _client(cls: type, spec_api: str, client_name: str):
    api_name, api = resolve_api(spec_api)
    try:
        if cls is rtmidi.MidiIn:
            return cls(api, name=client_name, queue_size_limit=INPUT_QUEUE_SIZE)
        return cls(api, name=client_name)
    except rtmidi.RtMidiError as exc:
        raise MidiPortError(f"cannot open MIDI API {api_name!r}: {_SERVER_FIX.get(api_name, exc)} ({exc})") from exc


def find_port(names: list[str], wanted: str) -> int | None:
    """Index of the port matching `wanted`: exact full name, then exact port part after the client
    name (JACK renames clients "x-01" when they come back), then case-insensitive substring."""
    if wanted in names:
        return names.index(wanted)
    for i, full in enumerate(names):
        if full.split(":", 1)[-1] == wanted:
            return i
    low = wanted.lower()
    for i, full in enumerate(names):
        if low in full.lower():
            return i
    return None


def _open(midi, spec: PortSpec, direction: str):
    api_name = resolve_api(spec.api)[0]
    if spec.connect:
        names = midi.get_ports()
        index = find_port(names, spec.name)
        if index is None:
            available = "; ".join(names) or "none"
            raise MidiPortError(
                f"no MIDI {direction} port matching {spec.name!r} on {api_name} (available: {available}); "
                f"start the loopback/virtual port first (loopMIDI on Windows) or fix the name"
            )
        try:
            midi.open_port(index, name=spec.name)
        except rtmidi.RtMidiError as exc:
            raise MidiPortError(f"cannot connect to MIDI {direction} port {names[index]!r}: {exc}") from exc
        log.info("connected MIDI %s to %r (%s)", direction, names[index], api_name)
        return midi
    if api_name == "winmm":
        raise MidiPortError(
            "Windows has no virtual MIDI ports: create loopback ports with loopMIDI or Windows MIDI Services "
            "and connect to them by name (ports.connect = true in the preset)"
        )
    try:
        midi.open_virtual_port(spec.name)
    except rtmidi.RtMidiError as exc:
        raise MidiPortError(f"cannot open virtual MIDI {direction} port {spec.name!r} on {api_name}: {exc}") from exc
    log.info("opened virtual MIDI %s port %r (%s)", direction, spec.name, api_name)
    return midi


def open_input(spec: PortSpec) -> rtmidi.MidiIn:
    """A MidiIn with its port open, delivering MIDI clock (timing) and sysex (so both can be counted),
    ignoring active sensing. Keep the returned object alive."""
    midi = _client(rtmidi.MidiIn, spec.api, spec.client_name)
    midi.ignore_types(sysex=False, timing=False, active_sense=True)
    return _open(midi, spec, "input")


def open_output(spec: PortSpec) -> rtmidi.MidiOut:
    """A MidiOut with its port open. Keep the returned object alive."""
    midi = _client(rtmidi.MidiOut, spec.api, spec.client_name)
    return _open(midi, spec, "output")


def close(midi) -> None:
    """Close an rtmidi port; never raises (used on shutdown and before reopening)."""
    try:
        midi.close_port()
    except rtmidi.RtMidiError as exc:
        log.debug("closing MIDI port failed: %s", exc)


def release(midi) -> None:
    """Close the port and end the client now (with JACK: it leaves the server at once, not at some later
    garbage collection). The object must not be used after this; never raises."""
    close(midi)
    try:
        midi.delete()
    except (AttributeError, rtmidi.RtMidiError) as exc:  # a fake in tests, or already gone
        log.debug("releasing the MIDI client failed: %s", exc)


def port_present(midi, spec: PortSpec) -> bool:
    """Whether the existing port `spec` connects to is still listed (connect mode only)."""
    try:
        return find_port(midi.get_ports(), spec.name) is not None
    except rtmidi.RtMidiError:
        return False


def reconnect(midi, spec: PortSpec) -> bool:
    """Reconnect `midi` to the port named by `spec` if it is listed; True when connected."""
    try:
        names = midi.get_ports()
    except rtmidi.RtMidiError:
        return False
    index = find_port(names, spec.name)
    if index is None:
        return False
    close(midi)
    try:
        midi.open_port(index, name=spec.name)
    except rtmidi.RtMidiError as exc:
        log.debug("reconnecting to %r failed: %s", names[index], exc)
        return False
    return True


@dataclass(frozen=True)
class PortListing:
    api: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    error: str | None = None  # why this API could not be listed, with the fix


def list_ports(api: str) -> PortListing:
    """Inputs (ports sideman can read from) and outputs (ports it can send to) of one API."""
    try:
        api_name, _ = resolve_api(api)
    except MidiPortError as exc:
        return PortListing(api, error=str(exc))
    try:
        midi_in = _client(rtmidi.MidiIn, api_name, "sideman-ports")
        midi_out = _client(rtmidi.MidiOut, api_name, "sideman-ports")
        inputs = tuple(midi_in.get_ports())
        outputs = tuple(midi_out.get_ports())
    except MidiPortError as exc:
        return PortListing(api_name, error=str(exc))
    return PortListing(api_name, inputs, outputs)
