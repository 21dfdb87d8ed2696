"""Offline rendering of a MIDI file to a WAV file with FluidSynth: no sound card, faster than real time.

Events are applied at their exact sample position: the synth renders up to each event's time (from
mido's tempo-aware iteration), then the event is applied. Output is stereo, 16-bit, 44.1 kHz.
"""

from __future__ import annotations

import logging
import os
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

from engine.audio.soundfont import find_soundfont, load_synth, select_program
from engine.errors import AudioError, MidiFileError

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CHANNELS = 2  # stereo
SAMPLE_WIDTH = 2  # bytes: 16-bit PCM
_CHUNK = 4096  # frames rendered per get_samples call


@dataclass(frozen=True)
class RenderConfig:
    soundfont: str | None = None  # None: find_soundfont() decides
    programs: dict[int, int] = field(default_factory=dict)  # channel -> GM program, overrides the file's
    sample_rate: int = SAMPLE_RATE
    gain: float = 0.5
    tail_s: float = 1.5  # rendered after the last event so that releases ring out
    peak_dbfs: float | None = -1.0  # the render is scaled so its peak is here (None: as the synth made it)

    def __post_init__(self) -> None:
        for channel, program in self.programs.items():
            if not (0 <= channel <= 15 and 0 <= program <= 127):
                raise AudioError(f"program {channel}={program}: channels are 0-15 and GM programs 0-127")
        if self.sample_rate <= 0 or self.tail_s < 0:
            raise AudioError("sample_rate must be positive and tail_s not negative")


@dataclass(frozen=True)
class RenderResult:
    path: Path
    soundfont: Path
    audio_s: float  # length of the WAV
    wall_s: float  # total time, including loading the SoundFont
    load_s: float  # of which loading the SoundFont
    peak_dbfs: float = float("-inf")  # of the WAV written
    synth_peak_dbfs: float = float("-inf")  # of the synth's own output, before normalisation

    @property
    def speed(self) -> float:
        """Seconds of audio per second of wall-clock time, all included."""
        return self.audio_s / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def synth_speed(self) -> float:
        """Seconds of audio per second of synthesis, SoundFont loading excluded."""
        synth_s = self.wall_s - self.load_s
        return self.audio_s / synth_s if synth_s > 0 else float("inf")


def _read_midi(source: str | os.PathLike | mido.MidiFile) -> mido.MidiFile:
    if isinstance(source, mido.MidiFile):
        return source
    try:
        return mido.MidiFile(source)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise MidiFileError(f"cannot read MIDI file {source}: {exc}; check that it is a Standard MIDI File") from exc


class _Renderer:
    """Renders into a list of int16 chunks, keeping a running sample position."""

    def __init__(self, synth) -> None:
        self.synth = synth
        self.frames = 0
        self.chunks: list[np.ndarray] = []

    def render_to(self, frame: int) -> None:
        while self.frames < frame:
            n = min(_CHUNK, frame - self.frames)
            self.chunks.append(np.asarray(self.synth.get_samples(n), dtype=np.int16))
            self.frames += n


def _apply(synth, sfid: int, msg: mido.Message, programs: dict[int, int]) -> None:
    t = msg.type
    if t == "note_on":
        if msg.velocity > 0:
            synth.noteon(msg.channel, msg.note, msg.velocity)
        else:
            synth.noteoff(msg.channel, msg.note)
    elif t == "note_off":
        synth.noteoff(msg.channel, msg.note)
    elif t == "control_change":
        synth.cc(msg.channel, msg.control, msg.value)
    elif t == "program_change":
        if msg.channel not in programs:  # an explicit override wins over the file
            select_program(synth, sfid, msg.channel, msg.program)
    elif t == "pitchwheel":
        synth.pitch_bend(msg.channel, msg.pitch)


def render_midi(
    source: str | os.PathLike | mido.MidiFile, wav_path: str | os.PathLike, config: RenderConfig = RenderConfig()
) -> RenderResult:
    """Render `source` (a path or a MidiFile) to `wav_path`; raises AudioError / MidiFileError."""
    midi = _read_midi(source)
    soundfont = find_soundfont(config.soundfont)
    wav_path = Path(wav_path)
    start = time.perf_counter()
    synth, sfid = load_synth(soundfont, config.sample_rate, config.gain)
    load_s = time.perf_counter() - start
    try:
        for channel in range(16):
            select_program(synth, sfid, channel, config.programs.get(channel, 0))
        renderer = _Renderer(synth)
        now_s = 0.0
        for msg in midi:  # merged tracks, delta times in seconds, tempo changes applied
            now_s += msg.time
            if msg.is_meta or msg.type == "sysex":
                continue
            renderer.render_to(round(now_s * config.sample_rate))
            _apply(synth, sfid, msg, config.programs)
        for channel in range(16):
            synth.all_notes_off(channel)  # a file with a hanging note still ends
        renderer.render_to(renderer.frames + round(config.tail_s * config.sample_rate))
    finally:
        synth.delete()
    audio = np.concatenate(renderer.chunks) if renderer.chunks else np.zeros(0, dtype=np.int16)
    synth_peak = peak_dbfs(audio)
    if config.peak_dbfs is not None and np.isfinite(synth_peak):
        audio = normalise(audio, config.peak_dbfs)
    _write_wav(wav_path, audio, config.sample_rate)
    wall = time.perf_counter() - start
    result = RenderResult(wav_path, soundfont, renderer.frames / config.sample_rate, wall, load_s,
                          peak_dbfs(audio), synth_peak)
    log.info(
        "rendered %s: %.2f s of audio in %.3f s (%.3f s loading the SoundFont; %.0fx real time), peak %.1f dBFS",
        wav_path, result.audio_s, wall, load_s, result.speed, result.peak_dbfs,
    )
    return result


def peak_dbfs(audio: np.ndarray) -> float:
    """The peak of int16 samples in dB relative to full scale (-inf for silence)."""
    peak = float(np.abs(audio.astype(np.int32)).max()) if audio.size else 0.0
    return 20.0 * np.log10(peak / 32767.0) if peak > 0 else float("-inf")


def normalise(audio: np.ndarray, target_dbfs: float) -> np.ndarray:
    """int16 samples scaled (in float, rounded, clipped) so their peak is at `target_dbfs`."""
    peak = float(np.abs(audio.astype(np.int32)).max())
    gain = 32767.0 * 10.0 ** (target_dbfs / 20.0) / peak
    return np.clip(np.rint(audio.astype(np.float64) * gain), -32768, 32767).astype(np.int16)


def _write_wav(path: Path, interleaved: np.ndarray, sample_rate: int) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(CHANNELS)
            out.setsampwidth(SAMPLE_WIDTH)
            out.setframerate(sample_rate)
            out.writeframes(interleaved.astype("<i2", copy=False).tobytes())
    except OSError as exc:
        raise AudioError(f"cannot write {path}: {exc}; check the directory exists and is writable") from exc
