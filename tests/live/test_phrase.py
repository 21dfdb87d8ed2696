"""The phrase detector, driven with tick times (a fake clock)."""

from __future__ import annotations

import pytest

from engine.live.clock import InternalClock, Meter
from engine.live.phrase import PhraseConfig, PhraseDetector

BEAT = 24
BAR = 96


def play(det: PhraseDetector, notes):
    """notes: (start_tick, end_tick, pitch)."""
    events = sorted([(s, 1, p) for s, e, p in notes] + [(e, 0, p) for s, e, p in notes])
    for tick, is_on, pitch in events:
        det.feed(tick, (0x90, pitch, 90) if is_on else (0x80, pitch, 0))


def test_silence_after_release_ends_the_phrase():
    det = PhraseDetector(PhraseConfig(silence_beats=2), Meter(4, 4))
    play(det, [(0, 20, 60), (24, 44, 62), (48, 90, 64)])
    assert det.poll(90 + 2 * BEAT - 1) is None
    end = det.poll(90 + 2 * BEAT)
    assert end is not None and end.reason == "silence"
    assert (end.start_tick, end.end_tick, end.length_ticks) == (0, 90, 90)
    assert det.poll(500) is None  # ends once


def test_held_key_keeps_the_phrase_open():
    det = PhraseDetector(PhraseConfig(silence_beats=1, max_bars=None))
    det.note_on(0, 0, 60)
    det.note_on(10, 0, 64)
    det.note_off(20, 0, 64)
    assert det.poll(1000) is None  # 60 still held
    det.note_off(1000, 0, 60)
    assert det.poll(1000 + BEAT).end_tick == 1000


def test_sustain_pedal_counts_as_holding():
    det = PhraseDetector(PhraseConfig(silence_beats=1, max_bars=None))
    det.feed(0, (0xB0, 64, 127))
    play(det, [(0, 10, 60)])
    assert det.poll(200) is None
    det.feed(200, (0xB0, 64, 0))
    assert det.poll(200 + BEAT - 1) is None
    assert det.poll(200 + BEAT).reason == "silence"


def test_end_cc_ends_at_once():
    det = PhraseDetector(PhraseConfig(silence_beats=4, end_cc=67))
    play(det, [(0, 10, 60)])
    assert det.feed(12, (0xB0, 67, 30)) is None  # below 64: not pressed
    end = det.feed(14, (0xB0, 67, 100))
    assert end.reason == "cc" and end.decided_tick == 14


def test_end_cc_before_any_note_does_nothing():
    det = PhraseDetector(PhraseConfig(end_cc=67))
    assert det.feed(0, (0xB0, 67, 127)) is None


def test_max_bars_ends_a_phrase_even_with_keys_held():
    det = PhraseDetector(PhraseConfig(silence_beats=2, max_bars=2), Meter(3, 4))
    det.note_on(5, 0, 60)
    assert det.poll(5 + 2 * 72 - 1) is None
    end = det.poll(5 + 2 * 72)
    assert end.reason == "max_length" and end.length_ticks == 144


def test_velocity_zero_note_on_is_a_release():
    det = PhraseDetector(PhraseConfig(silence_beats=1))
    det.feed(0, (0x90, 60, 100))
    det.feed(10, (0x90, 60, 0))
    assert det.poll(10 + BEAT).reason == "silence"


def test_silence_in_compound_meter_counts_its_beats():
    det = PhraseDetector(PhraseConfig(silence_beats=2), Meter(6, 8))  # beat = eighth = 12 ticks
    play(det, [(0, 10, 60)])
    assert det.poll(33) is None
    assert det.poll(34) is not None


def test_with_a_fake_clock():
    now = [0.0]
    clock = InternalClock(120, time_fn=lambda: now[0])
    clock.start(t=0.0)
    det = PhraseDetector(PhraseConfig(silence_beats=2))
    det.feed(clock.tick_now(), (0x90, 60, 100))
    now[0] = 0.4
    det.feed(clock.tick_now(), (0x80, 60, 0))
    now[0] = 1.39  # 0.99 s after release, 2 beats at 120 BPM is 1.0 s
    assert det.poll(clock.tick_now()) is None
    now[0] = 1.4
    end = det.poll(clock.tick_now())
    assert end is not None and end.end_tick == pytest.approx(0.4 * 48)


@pytest.mark.parametrize("kwargs", [{"silence_beats": 0}, {"end_cc": 128}, {"max_bars": 0}])
def test_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        PhraseConfig(**kwargs)
