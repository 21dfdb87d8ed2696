"""The live monitor: clean fallback without a sound card, and the real synth path it would play."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from engine.audio.monitor import Monitor, MonitorConfig, MonitorSynth
from engine.audio.soundfont import find_soundfont
from engine.errors import AudioError

LOGGER = "engine.audio.monitor"


def has_sound_card() -> bool:
    try:
        import sounddevice as sd

        sd.query_devices(kind="output")
    except Exception:  # noqa: BLE001 - PortAudioError, or OSError when PortAudio is missing
        return False
    return True


def has_soundfont() -> bool:
    try:
        find_soundfont()
    except AudioError:
        return False
    return True


no_card = pytest.mark.skipif(has_sound_card(), reason="this machine has a sound card; the fallback is not reachable")
needs_soundfont = pytest.mark.skipif(not has_soundfont(), reason="no SoundFont installed")


def exercise(monitor: Monitor) -> None:
    """Every method, as the daemon's threads call them."""
    monitor.program(1, 32)
    monitor.note_on(0, 60, 100)
    monitor.note_on(1, 36, 90)
    monitor.note_off(0, 60)
    monitor.note_on(1, 36, 0)
    monitor.all_notes_off()


def warnings_of(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING]


@no_card
@needs_soundfont
def test_soundfont_but_no_sound_card_falls_back_with_one_warning(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monitor = Monitor.open(MonitorConfig(programs=((0, 0), (1, 32))))
    assert monitor.active is False
    records = warnings_of(caplog)
    assert len(records) == 1
    message = records[0].getMessage()
    assert "no audio output device" in message and "without audio" in message
    exercise(monitor)  # all no-ops, no exception
    monitor.close()
    monitor.close()
    assert len(warnings_of(caplog)) == 1  # and no more warnings from using it


def test_missing_soundfont_warns_once_naming_the_fix(caplog, tmp_path):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monitor = Monitor.open(MonitorConfig(soundfont=str(tmp_path / "missing.sf2")))
    assert not monitor.active
    records = warnings_of(caplog)
    assert len(records) == 1
    assert "missing.sf2" in records[0].getMessage()
    assert "apt-get install fluid-soundfont-gm" in records[0].getMessage()
    with monitor:
        exercise(monitor)


def test_missing_soundfont_is_an_audio_error_for_the_synth(tmp_path):
    with pytest.raises(AudioError, match="apt-get install fluid-soundfont-gm"):
        MonitorSynth(MonitorConfig(soundfont=str(tmp_path / "missing.sf2")))


def test_disabled_monitor_is_silent_in_the_log(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    monitor = Monitor.open(MonitorConfig(enabled=False))
    assert not monitor.active
    assert warnings_of(caplog) == []
    exercise(monitor)


def test_bad_config_names_the_allowed_values():
    with pytest.raises(AudioError, match="GM programs 0-127"):
        MonitorConfig(programs=((0, 128),))


def rms(block: np.ndarray) -> float:
    return float(np.sqrt(np.mean((block.astype(np.float64) / 32768.0) ** 2)))


@needs_soundfont
def test_synth_renders_events_from_two_threads():
    """The path the audio callback runs, with no device: events from two threads, then blocks of audio."""
    synth = MonitorSynth(MonitorConfig(programs=((0, 0), (1, 32))))
    try:
        assert rms(synth.render(256)) < 1e-4  # only the 16-bit dither
        player = threading.Thread(target=lambda: [synth.note_on(0, p, 100) for p in (60, 64, 67)])
        sideman = threading.Thread(target=lambda: synth.note_on(1, 36, 110))
        player.start(), sideman.start()
        player.join(), sideman.join()
        sounding = np.concatenate([synth.render(256) for _ in range(40)])  # 0.23 s
        assert sounding.shape == (40 * 256, 2)
        assert rms(sounding) > 0.01
        synth.all_notes_off()
        for _ in range(int(2.0 * 44100 / 256)):  # let the releases die away
            synth.render(256)
        assert rms(synth.render(1024)) < 1e-4
    finally:
        synth.delete()


@needs_soundfont
def test_note_ons_beyond_the_queue_bound_are_dropped_but_note_offs_never():
    synth = MonitorSynth(MonitorConfig(max_pending=4))
    try:
        for pitch in range(60, 70):
            synth.note_on(0, pitch, 100)
        assert synth.dropped == 6
        synth.note_off(0, 60)
        synth.note_off(0, 61)
        assert len(synth._events) == 6
        synth.render(64)
        assert len(synth._events) == 0
    finally:
        synth.delete()


def test_config_from_a_real_preset(repo_root):
    presets = pytest.importorskip("engine.presets")
    from engine.audio.monitor import PLAYER_CHANNEL, SIDEMAN_CHANNEL, monitor_config_from_preset

    preset = presets.load_preset(repo_root / "presets" / "default.toml")
    config = monitor_config_from_preset(preset)
    assert config.enabled == preset.monitor.enabled
    assert dict(config.programs) == {
        PLAYER_CHANNEL: preset.monitor.player_program,
        SIDEMAN_CHANNEL: preset.monitor.sideman_program,
    }
    assert monitor_config_from_preset(preset, soundfont="/x.sf2").soundfont == "/x.sf2"


ACTIVE_MONITOR_SCRIPT = r"""
import json, logging, sys, time
logging.basicConfig(level=logging.INFO)
from engine.audio.monitor import Monitor, MonitorConfig
monitor = Monitor.open(MonitorConfig(programs=((0, 0), (1, 32))))
report = {"active": monitor.active}
if monitor.active:
    deadline = time.monotonic() + 5.0
    while monitor.blocks < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    report["silent_peak"] = monitor.peak
    monitor.note_on(0, 60, 110)
    monitor.note_on(1, 40, 110)
    start = monitor.blocks
    while monitor.blocks < start + 40 and time.monotonic() < deadline:
        time.sleep(0.01)
    report["blocks"] = monitor.blocks
    report["peak"] = monitor.peak
    monitor.all_notes_off()
    monitor.close()
    monitor.close()
    report["after_close"] = monitor.active
print(json.dumps(report))
"""


@pytest.mark.jack
@needs_soundfont
def test_monitor_plays_through_jack_audio(jack_server, repo_root):
    """JACK's dummy driver is a real PortAudio output device: the monitor goes active and renders notes.

    Run in a fresh process: PortAudio lists devices once, when sounddevice is imported.
    """
    import json
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", ACTIVE_MONITOR_SCRIPT],
        cwd=repo_root, env=dict(os.environ), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["active"] is True, proc.stderr[-2000:]
    assert "monitor on" in proc.stderr and "48000 Hz" in proc.stderr  # the JACK server's rate, not 44.1 kHz
    assert report["silent_peak"] < 64  # dither only, before any note
    assert report["blocks"] >= 50
    assert report["peak"] > 1000  # the notes sounded
    assert report["after_close"] is False
