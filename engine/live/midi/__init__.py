"""The MIDI layer: ports (virtual or connected), the polled input edge, the output edge.

Nothing here imports torch.
"""

from engine.live.midi.input import InputPoller, InputStats, MidiEvent, is_valid
from engine.live.midi.output import MidiOutput, OutputStats
from engine.live.midi.ports import PortSpec, list_ports, open_input, open_output

__all__ = [
    "InputPoller",
    "InputStats",
    "MidiEvent",
    "MidiOutput",
    "OutputStats",
    "PortSpec",
    "is_valid",
    "list_ports",
    "open_input",
    "open_output",
]
