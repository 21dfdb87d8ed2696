"""Offline rendering: a real MIDI file through real FluidSynth into a real WAV file."""

from __future__ import annotations

import wave

import mido
import numpy as np
import pytest

from engine.audio.render import RenderConfig, render_midi
from engine.audio.soundfont import find_soundfont
from engine.errors import AudioError, MidiFileError

try:
    SOUNDFONT = find_soundfont()
except AudioError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"no SoundFont: {exc}", allow_module_level=True)

TPB = 480
BPM = 120  # one 4/4 bar = 2 s
BAR_S = 2.0
WINDOW_S = 0.1


def phrase_with_a_gap(path) -> None:
    """Notes in bar 1 and bar 3; bar 2 silent; nothing after bar 3."""
    mid = mido.MidiFile(ticks_per_beat=TPB)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(BPM)))
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4))
    track.append(mido.Message("program_change", program=0, channel=0))
    pending = 0
    for bar in (0, 2):
        start = bar * 4 * TPB
        for beat in range(4):
            on = start + beat * TPB
            track.append(mido.Message("note_on", note=60 + 2 * beat, velocity=100, time=on - pending))
            track.append(mido.Message("note_off", note=60 + 2 * beat, velocity=0, time=TPB // 2))
            pending = on + TPB // 2
    mid.save(path)


def read_wav(path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        data = np.frombuffer(wav.readframes(params.nframes), dtype="<i2")
    return params, data.reshape(-1, params.nchannels).astype(np.float64) / 32768.0


def rms(samples: np.ndarray, start_s: float, end_s: float, rate: int) -> float:
    window = samples[int(start_s * rate) : int(end_s * rate)]
    return float(np.sqrt(np.mean(window**2)))


def test_phrase_is_loud_where_notes_sound_and_silent_where_not(tmp_path):
    midi = tmp_path / "phrase.mid"
    phrase_with_a_gap(midi)
    result = render_midi(midi, tmp_path / "phrase.wav", RenderConfig(tail_s=1.5))

    params, audio = read_wav(result.path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, 44100)
    # the last note-off is at bar 3, beat 4 + half a beat = 5.75 s; then the tail
    assert params.nframes / params.framerate == pytest.approx(5.75 + 1.5, abs=0.01)
    assert result.audio_s == pytest.approx(params.nframes / params.framerate)

    rate = params.framerate
    loud, quiet = 0.01, 0.001
    # every note: the window just after its onset sounds
    for bar in (0, 2):
        for beat in range(4):
            t = bar * BAR_S + beat * 0.5
            assert rms(audio, t + 0.02, t + 0.02 + WINDOW_S, rate) > loud, f"silence at {t:.2f} s where a note sounds"
    # bar 2, after the last release of bar 1 has died away, is silent; so is the end of the tail
    for t in np.arange(BAR_S + 0.8, 2 * BAR_S - WINDOW_S, WINDOW_S):
        assert rms(audio, t, t + WINDOW_S, rate) < quiet, f"sound at {t:.2f} s in the silent bar"
    end = params.nframes / rate
    assert rms(audio, end - 0.3, end, rate) < quiet
    # stereo and not clipped
    assert np.abs(audio).max() < 0.99


def test_renders_are_normalised_to_a_peak_near_minus_1_dbfs(tmp_path):
    """Beside any other track in a DAW: the synth's own output peaks some 20 dB lower."""
    midi = tmp_path / "phrase.mid"
    phrase_with_a_gap(midi)
    result = render_midi(midi, tmp_path / "phrase.wav")
    _, audio = read_wav(result.path)
    peak = 20 * np.log10(np.abs(audio).max())
    assert peak == pytest.approx(-1.0, abs=0.1) and result.peak_dbfs == pytest.approx(-1.0, abs=0.1)
    assert result.synth_peak_dbfs < -6.0  # what it was before
    raw = render_midi(midi, tmp_path / "raw.wav", RenderConfig(peak_dbfs=None))
    assert raw.peak_dbfs == pytest.approx(result.synth_peak_dbfs, abs=0.01)


def test_program_override_changes_the_sound(tmp_path):
    midi = tmp_path / "phrase.mid"
    phrase_with_a_gap(midi)
    piano = render_midi(midi, tmp_path / "piano.wav", RenderConfig(tail_s=0.2))
    organ = render_midi(midi, tmp_path / "organ.wav", RenderConfig(tail_s=0.2, programs={0: 19}))
    _, a = read_wav(piano.path)
    _, b = read_wav(organ.path)
    assert a.shape == b.shape
    assert not np.allclose(a, b, atol=1e-3)


def test_cli_render_writes_wav_and_png(tmp_path):
    from engine.cli import main

    midi = tmp_path / "phrase.mid"
    phrase_with_a_gap(midi)
    wav, png = tmp_path / "out.wav", tmp_path / "roll.png"
    assert main(["-q", "render", str(midi), "-o", str(wav), "--png", str(png), "--program", "0=24"]) == 0
    params, audio = read_wav(wav)
    assert params.framerate == 44100 and rms(audio, 0.0, 1.0, 44100) > 0.01
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_soundfont_names_the_fix(tmp_path):
    midi = tmp_path / "phrase.mid"
    phrase_with_a_gap(midi)
    with pytest.raises(AudioError, match="apt-get install fluid-soundfont-gm"):
        render_midi(midi, tmp_path / "x.wav", RenderConfig(soundfont=str(tmp_path / "nope.sf2")))
    assert not (tmp_path / "x.wav").exists()


def test_soundfont_env_var_is_used_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("SIDEMAN_SOUNDFONT", str(SOUNDFONT))
    assert find_soundfont() == SOUNDFONT
    monkeypatch.setenv("SIDEMAN_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with pytest.raises(AudioError, match="SIDEMAN_SOUNDFONT"):
        find_soundfont()


def test_not_a_midi_file(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not midi at all")
    with pytest.raises(MidiFileError, match="bad.mid"):
        render_midi(bad, tmp_path / "x.wav")
