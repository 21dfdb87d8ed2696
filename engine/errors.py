"""The one exception hierarchy of sideman.

Every message says what went wrong and what to do about it.
"""


class SidemanError(Exception):
    """Base of every error sideman raises on purpose."""


class TokenizerError(SidemanError):
    """A token stream or an event that the vocabulary cannot express."""


class MidiFileError(SidemanError):
    """A MIDI file that cannot be read or written."""


class DataError(SidemanError):
    """The corpus or its cache is missing or unusable."""


class ModelError(SidemanError):
    """A model file that is missing, corrupt, or does not match the running tokenizer."""


class PresetError(SidemanError):
    """A preset file that is missing or invalid; the message names file, field and allowed values."""


class MidiPortError(SidemanError):
    """A MIDI port that cannot be opened, or vanished."""


class AudioError(SidemanError):
    """No sound card, no SoundFont, or the synth failed."""
