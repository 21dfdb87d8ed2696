"""Sound: finding a SoundFont, rendering MIDI files to WAV offline, and the live monitor synth.

Nothing here imports torch. `fluidsynth` and `sounddevice` are imported only where they are used,
so that `sideman doctor` can report a missing library instead of failing on import.
"""

from engine.audio.soundfont import INSTALL_HINT, find_soundfont

__all__ = ["INSTALL_HINT", "find_soundfont"]
