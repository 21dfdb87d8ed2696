"""sideman: a realtime AI co-performer over MIDI.

Data flows one way: MIDI in -> tokens -> model session -> sampler -> scheduler -> MIDI out.
"""

__version__ = "0.1.0"
