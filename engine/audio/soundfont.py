"""Find a General MIDI SoundFont (.sf2) for the monitor synth and offline rendering.

Order: an explicit path (`--soundfont`, a preset's `[monitor] soundfont`), then the SIDEMAN_SOUNDFONT
environment variable, then the usual install locations of Linux distributions and Homebrew.
An explicit path or variable that names a missing file is an error, never silently skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

from engine.errors import AudioError

ENV_VAR = "SIDEMAN_SOUNDFONT"

INSTALL_HINT = (
    "install a General MIDI SoundFont: `apt-get install fluid-soundfont-gm` (Debian/Ubuntu), "
    "`dnf install fluid-soundfont-gm` (Fedora), `brew install fluid-synth` plus a .sf2 file (macOS); "
    f"or point --soundfont / {ENV_VAR} at any .sf2 file"
)

# Common locations, most likely first.
CANDIDATES: tuple[str, ...] = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # Debian/Ubuntu fluid-soundfont-gm
    "/usr/share/sounds/sf2/default-GM.sf2",  # Debian alternatives link
    "/usr/share/soundfonts/FluidR3_GM.sf2",  # Fedora, Arch soundfont-fluid
    "/usr/share/soundfonts/default.sf2",  # Arch, Fedora default link
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # Debian timgm6mb-soundfont
    "/usr/share/sounds/sf2/GeneralUser_GS.sf2",
    "/usr/local/share/soundfonts/default.sf2",  # Homebrew (Intel) and source installs
    "/opt/homebrew/share/soundfonts/default.sf2",  # Homebrew (Apple silicon)
    "~/.local/share/soundfonts/default.sf2",
    "~/.sideman/soundfont.sf2",
)


def _usable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.R_OK)


def find_soundfont(explicit: str | os.PathLike | None = None) -> Path:
    """Return the SoundFont to use, or raise AudioError saying how to get one."""
    if explicit:
        path = Path(explicit).expanduser()
        if not _usable(path):
            raise AudioError(f"SoundFont {path} does not exist or cannot be read: check the path, or {INSTALL_HINT}")
        return path
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        path = Path(env).expanduser()
        if not _usable(path):
            raise AudioError(
                f"{ENV_VAR}={env} does not name a readable file: fix or unset the variable, or {INSTALL_HINT}"
            )
        return path
    for candidate in CANDIDATES:
        path = Path(candidate).expanduser()
        if _usable(path):
            return path
    raise AudioError(f"no SoundFont found (looked in {', '.join(CANDIDATES[:4])}, ...): {INSTALL_HINT}")


DRUM_CHANNEL = 9  # General MIDI: channel 10 (0-based 9) plays the percussion kit
DRUM_BANK = 128

# Quiet, dry defaults: no reverb or chorus tails to confuse silence checks, no MIDI/audio drivers.
SYNTH_SETTINGS: dict[str, object] = {
    "synth.reverb.active": 0,
    "synth.chorus.active": 0,
    "synth.polyphony": 256,
}


def import_fluidsynth():
    """The pyfluidsynth module. It prints where it found the library to stdout when CI is set, which
    would corrupt `--json` output: that line goes to stderr instead."""
    import contextlib
    import sys

    with contextlib.redirect_stdout(sys.stderr):
        import fluidsynth
    return fluidsynth


def load_synth(soundfont: Path, sample_rate: int = 44100, gain: float = 0.5):
    """A pyfluidsynth Synth with `soundfont` loaded; returns (synth, soundfont_id).

    The caller owns the synth and must call `synth.delete()`.
    """
    try:
        fluidsynth = import_fluidsynth()
    except ImportError as exc:  # the C library or the binding is missing
        raise AudioError(
            f"cannot load FluidSynth ({exc}): `apt-get install fluidsynth` and `pip install pyfluidsynth`"
        ) from exc
    synth = fluidsynth.Synth(gain=gain, samplerate=float(sample_rate), **SYNTH_SETTINGS)
    sfid = synth.sfload(str(soundfont))
    if sfid < 0:
        synth.delete()
        raise AudioError(f"FluidSynth could not load {soundfont}: is it a valid .sf2 file? Otherwise {INSTALL_HINT}")
    return synth, sfid


def select_program(synth, sfid: int, channel: int, program: int) -> None:
    """Select General MIDI `program` (0-127) on `channel`; channel 9 gets the drum bank."""
    bank = DRUM_BANK if channel == DRUM_CHANNEL else 0
    if synth.program_select(channel, sfid, bank, program) != 0 and bank == DRUM_BANK:
        synth.program_select(channel, sfid, bank, 0)  # kits exist only at a few numbers; fall back to Standard
