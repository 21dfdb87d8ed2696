"""The live monitor: the player's notes and the sideman's notes through FluidSynth to the sound card.

Two sources feed one synth: the MIDI input thread (the player's part) and the scheduler thread (the
sideman's parts). Each part is a MIDI channel with its own General MIDI program. Callers never wait
on the audio: `note_on` and friends append to a deque (atomic under the GIL) and return; the
sounddevice callback drains the deque at the start of each block and renders it. So the added
latency is one block (256 frames = 5.8 ms at 44.1 kHz) plus the device's own.

No SoundFont, no FluidSynth, or no sound card: `Monitor.open` logs one warning that says why and
what to do, and returns an inactive monitor whose methods do nothing, so the daemon plays on (to
its MIDI output) without audio.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass

import numpy as np

from engine.audio.quiet import no_jack_autostart, quiet_stderr
from engine.audio.soundfont import find_soundfont, load_synth, select_program
from engine.errors import AudioError

log = logging.getLogger(__name__)

_NOTE_ON, _NOTE_OFF, _PROGRAM, _ALL_OFF = range(4)

# Monitor channels of the two parts, whatever MIDI channels they use on the wire (they may share one):
# the same convention as recordings and piano rolls, channel 0 = the player, 1 = the sideman.
PLAYER_CHANNEL = 0
SIDEMAN_CHANNEL = 1
DEFAULT_SAMPLE_RATE = 44100


@dataclass(frozen=True)
class MonitorConfig:
    enabled: bool = True
    soundfont: str | None = None  # None: find_soundfont() looks in the usual places
    programs: tuple[tuple[int, int], ...] = ((0, 0),)  # (channel, GM program) per part; others play piano
    gain: float = 0.5
    sample_rate: int | None = None  # None: the device's own rate (JACK and PipeWire often run at 48 kHz)
    blocksize: int = 256  # frames per callback: the monitor's added latency
    device: int | str | None = None  # sounddevice output device; None: the system default
    max_pending: int = 4096  # note-ons beyond this many unrendered events are dropped (and counted)

    def __post_init__(self) -> None:
        for channel, program in self.programs:
            if not (0 <= channel <= 15 and 0 <= program <= 127):
                raise AudioError(f"monitor program {channel}={program}: channels are 0-15, GM programs 0-127")
        if (self.sample_rate is not None and self.sample_rate <= 0) or self.blocksize <= 0 or self.max_pending <= 0:
            raise AudioError("monitor sample_rate, blocksize and max_pending must be positive")


def monitor_config_from_preset(preset, soundfont: str | None = None) -> MonitorConfig:
    """The MonitorConfig of a preset's `[monitor]` table; `soundfont` (e.g. --soundfont) overrides it.

    The daemon plays the player's notes on PLAYER_CHANNEL and the sideman's on SIDEMAN_CHANNEL.
    """
    m = preset.monitor
    programs = ((PLAYER_CHANNEL, m.player_program), (SIDEMAN_CHANNEL, m.sideman_program))
    if preset.mode == "accompany":  # a program per voice: alto, tenor, bass on monitor channels 1, 2, 3
        programs = ((PLAYER_CHANNEL, m.player_program),) + tuple(
            (SIDEMAN_CHANNEL + i, program) for i, program in enumerate(m.voice_programs))
    return MonitorConfig(enabled=m.enabled, soundfont=soundfont or m.soundfont or None, programs=programs)


def monitor_channels(preset) -> dict[int, int]:
    """Wire channel (0-based) -> monitor channel of the sideman's notes: voice r of an accompaniment on
    monitor channel r (its own program), everything else on SIDEMAN_CHANNEL."""
    if preset.mode == "accompany":
        return {c - 1: SIDEMAN_CHANNEL + i for i, c in enumerate(preset.accompany.channels)}
    return {}


class MonitorSynth:
    """A FluidSynth instance fed through a lock-free event queue; `render` pulls audio blocks.

    `render` is called by one thread only (the audio callback); the event methods by any thread.
    """

    def __init__(self, config: MonitorConfig, sample_rate: int | None = None) -> None:
        self.config = config
        self.sample_rate = int(sample_rate or config.sample_rate or DEFAULT_SAMPLE_RATE)
        self.soundfont = find_soundfont(config.soundfont)
        self._synth, self._sfid = load_synth(self.soundfont, self.sample_rate, config.gain)
        self._events: collections.deque[tuple[int, int, int, int]] = collections.deque()
        self.dropped = 0
        for channel in range(16):
            select_program(self._synth, self._sfid, channel, 0)
        for channel, program in config.programs:
            select_program(self._synth, self._sfid, channel, program)

    def note_on(self, channel: int, pitch: int, velocity: int) -> None:
        if velocity <= 0:
            self._events.append((_NOTE_OFF, channel, pitch, 0))
        elif len(self._events) < self.config.max_pending:
            self._events.append((_NOTE_ON, channel, pitch, velocity))
        else:
            self.dropped += 1

    def note_off(self, channel: int, pitch: int) -> None:
        self._events.append((_NOTE_OFF, channel, pitch, 0))  # never dropped: no hanging notes

    def program(self, channel: int, program: int) -> None:
        self._events.append((_PROGRAM, channel, program, 0))

    def all_notes_off(self) -> None:
        self._events.append((_ALL_OFF, 0, 0, 0))

    def _drain(self) -> None:
        synth, events = self._synth, self._events
        while events:
            kind, channel, a, b = events.popleft()
            if kind == _NOTE_ON:
                synth.noteon(channel, a, b)
            elif kind == _NOTE_OFF:
                synth.noteoff(channel, a)
            elif kind == _PROGRAM:
                select_program(synth, self._sfid, channel, a)
            else:
                for ch in range(16):
                    synth.all_notes_off(ch)

    def render(self, frames: int) -> np.ndarray:
        """Apply pending events, then render `frames` stereo frames: int16 array of shape (frames, 2)."""
        self._drain()
        return np.asarray(self._synth.get_samples(frames), dtype=np.int16).reshape(frames, 2)

    def delete(self) -> None:
        self._synth.delete()


class Monitor:
    """The monitor the daemon holds; inactive (all no-ops) when there is no SoundFont or sound card."""

    def __init__(self, synth: MonitorSynth | None = None, stream=None) -> None:
        self._synth = synth
        self._stream = stream
        self._close_lock = threading.Lock()
        self.xruns = 0  # blocks PortAudio flagged (underflow); read by the daemon's stats
        self.blocks = 0  # blocks rendered
        self.peak = 0  # highest absolute sample so far (0..32767): a level meter and a test probe

    @property
    def active(self) -> bool:
        return self._synth is not None

    @classmethod
    def disabled(cls) -> Monitor:
        return cls()

    @classmethod
    def open(cls, config: MonitorConfig = MonitorConfig()) -> Monitor:
        """Start the monitor; on any missing piece, log one warning and return an inactive monitor."""
        if not config.enabled:
            log.debug("monitor disabled")
            return cls.disabled()
        try:
            return cls._open(config)
        except AudioError as exc:
            log.warning("monitor off, playing on without audio: %s", exc)
            return cls.disabled()

    @classmethod
    def _open(cls, config: MonitorConfig) -> Monitor:
        find_soundfont(config.soundfont)  # fail fast, before touching the audio system
        try:
            with no_jack_autostart(), quiet_stderr():  # PortAudio probes JACK and ALSA on import
                import sounddevice as sd
        except OSError as exc:  # the PortAudio library itself is missing
            raise AudioError(f"cannot load PortAudio ({exc}): `apt-get install libportaudio2`") from exc
        try:
            device = sd.query_devices(config.device, kind="output")
        except (sd.PortAudioError, ValueError) as exc:
            found = len(sd.query_devices())
            raise AudioError(
                f"no audio output device ({exc}; {found} devices found): connect a sound card or headphones, "
                "check `python -m sounddevice`, or use a DAW through the MIDI output instead"
            ) from exc
        synth = MonitorSynth(config, config.sample_rate or int(device["default_samplerate"]))
        monitor = cls(synth)
        try:
            stream = sd.OutputStream(
                samplerate=synth.sample_rate,
                blocksize=config.blocksize,
                channels=2,
                dtype="int16",
                latency="low",
                device=config.device,
                callback=monitor._callback,
            )
            stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            synth.delete()
            raise AudioError(
                f"cannot open the audio output ({exc}): check `python -m sounddevice` and the device setting"
            ) from exc
        monitor._stream = stream
        log.info(
            "monitor on: %s, %d Hz, %d-frame blocks (%.1f ms)",
            synth.soundfont, synth.sample_rate, config.blocksize, 1000 * config.blocksize / synth.sample_rate,
        )
        return monitor

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        """PortAudio's thread: no logging, no locks, no allocation beyond the block itself."""
        if status:
            self.xruns += 1
        synth = self._synth
        if synth is None:
            outdata.fill(0)
            return
        block = synth.render(frames)
        outdata[:] = block
        self.blocks += 1
        peak = max(int(block.max(initial=0)), -int(block.min(initial=0)))
        if peak > self.peak:
            self.peak = peak

    def note_on(self, channel: int, pitch: int, velocity: int) -> None:
        synth = self._synth
        if synth is not None:
            synth.note_on(channel, pitch, velocity)

    def note_off(self, channel: int, pitch: int) -> None:
        synth = self._synth
        if synth is not None:
            synth.note_off(channel, pitch)

    def program(self, channel: int, program: int) -> None:
        synth = self._synth
        if synth is not None:
            synth.program(channel, program)

    def all_notes_off(self) -> None:
        synth = self._synth
        if synth is not None:
            synth.all_notes_off()

    def close(self) -> None:
        """Stop the audio and free the synth; safe to call twice and from any thread."""
        with self._close_lock:
            synth, stream = self._synth, self._stream
            self._synth = self._stream = None
        if stream is not None:
            stream.stop()  # waits for the running callback, then no more callbacks
            stream.close()
        if synth is not None:
            synth.delete()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
