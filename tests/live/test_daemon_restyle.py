"""Restyle end to end over real JACK MIDI, with the shipped restyle model: a JACK client plays a phrase
detached and off the grid into "sideman in"; from the next bar the restyled phrase comes back, as long as
the phrase, one line, every note closed; a note of the player's cuts it; Program Change and CC pick the
style and the amount; a model trained for another task is refused with the fix."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from engine.presets import PRESET_DIR, dump_preset, load_preset
from test_daemon import hanging, start_in_process, stop_in_process, wait_until

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "restyle.pt"
BPM = 120.0  # a beat is 0.5 s, a 4/4 bar 2 s
PHRASE = (62, 66, 69, 74, 73, 71, 69, 66)  # a folk-like line in D, eighth notes: one bar

pytestmark = [pytest.mark.jack,
              pytest.mark.skipif(not MODEL.exists(), reason="the restyle model is not built (sideman train --config restyle)")]


def write_restyle_preset(folder: Path, meter: tuple[int, int] = (4, 4), **restyle) -> Path:
    base = load_preset(PRESET_DIR / "restyle.toml")
    tag = uuid.uuid4().hex[:6]
    preset = replace(base, name="restyle-test",
                     ports=replace(base.ports, api="jack", input=f"sideman in {tag}", output=f"sideman out {tag}"),
                     clock=replace(base.clock, bpm=BPM, meter=meter), sampling=replace(base.sampling, seed=3),
                     restyle=replace(base.restyle, **restyle))
    path = folder / "restyle-test.toml"
    path.write_text(dump_preset(preset))
    return path


@pytest.fixture
def restyling(jack_server, tmp_path):
    started = []

    def start(**restyle):
        started.append(start_in_process(write_restyle_preset(tmp_path, **restyle), MODEL))
        daemon, _, listener, out = started[-1]
        return daemon, listener, out

    yield start
    stop_in_process(started)


def play(out, pitches=PHRASE, note_beats=0.5, held=0.7, seed=1) -> float:
    """Notes held `held` of their length, onsets off the grid by up to +-15 ms, from an arbitrary moment;
    returns the perf_counter time of the last note-off."""
    rng = random.Random(seed)
    time.sleep(rng.uniform(0.05, 0.3))
    beat = 60.0 / BPM
    start = time.perf_counter()
    for i, p in enumerate(pitches):
        while time.perf_counter() < start + i * note_beats * beat + rng.uniform(-0.015, 0.015):
            time.sleep(0.0005)
        out.send_message([0x90, p, rng.randint(60, 100)])
        time.sleep(note_beats * beat * held)
        out.send_message([0x80, p, 0])
    return time.perf_counter()


def windows(daemon) -> list[tuple]:
    return list(daemon.part.thread.stats.windows)


# in 3/2 the model writes the chorale in 3/4 bars (no chorale has a bar of 6 beats, engine.music.barring);
# the phrase still comes back in the clock's bars
@pytest.mark.parametrize("meter", [(4, 4), (3, 2)])
def test_a_phrase_comes_back_restyled_from_the_next_bar_as_long_as_it_was_one_line_every_note_closed(restyling,
                                                                                                   meter):
    daemon, listener, out = restyling(style="chorale", meter=meter)
    last_off = play(out)
    assert wait_until(lambda: windows(daemon), 10), "no restyled phrase was started"
    answer_id, start, end, bars, notes_in = windows(daemon)[0]
    clock = daemon.clock
    bar = clock.meter.bar_ticks
    assert start % bar == 0 and clock.time_at(start) > last_off  # from the next bar line after the phrase
    assert bars == (end - start) // bar and 1 <= bars <= 2  # as long as the phrase: the bars it touched
    assert notes_in == len(PHRASE)  # every note the player played is in the phrase it restyled
    time.sleep(max(0.0, clock.time_at(end) - time.perf_counter()) + 0.3)
    t0, t1 = clock.time_at(start), clock.time_at(end)
    got = [(t, d) for t, d in listener.jack_times() if d[0] & 0xF0 in (0x80, 0x90)]
    ons = [(t, d) for t, d in got if d[0] & 0xF0 == 0x90 and d[2] > 0]
    assert len(ons) >= 2, f"the restyled phrase had {len(ons)} notes: {daemon.part.thread.stats}"
    sounding, peak = set(), 0
    for t, d in got:
        assert d[0] & 0x0F == daemon.preset.channels.output_index
        assert t0 - 0.005 <= t <= t1 + 0.05, f"{d} at {t - t0:.3f} s from the restyled phrase's start, outside it"
        if d[0] & 0xF0 == 0x90 and d[2] > 0:
            sounding.add(d[1])
            peak = max(peak, len(sounding))
            assert daemon.preset.constraints.low <= d[1] <= daemon.preset.constraints.high
        else:
            sounding.discard(d[1])
    assert peak == 1, "the restyled phrase is one line: never two notes at once"
    assert hanging([(0, d) for d in daemon.sent_log]) == set()
    assert daemon.part.thread.stats.ready_ms  # phrase end -> first restyled note was measured


def test_a_note_during_the_restyled_phrase_cuts_it_with_note_offs(restyling):
    daemon, listener, out = restyling(style="fiddle", candidates=4)  # the best of whole lines: all scheduled at once
    play(out, PHRASE + PHRASE[::-1])  # two bars: the answer lasts two bars
    assert wait_until(lambda: listener.note_ons(), 10), "no restyled phrase"
    time.sleep(0.3)
    cut_at = time.perf_counter()
    out.send_message([0x90, 74, 100])
    assert wait_until(lambda: daemon.part.thread.stats.cut_ins == 1, 5), daemon.part.thread.stats
    time.sleep(0.3)
    out.send_message([0x80, 74, 0])
    assert not listener.note_ons(after=cut_at + 0.02, before=cut_at + 0.3), "the restyled phrase went on after the cut"
    assert hanging([(t, d) for t, d in listener.messages if t < cut_at + 0.2]) == set(), "notes left sounding at the cut"
    daemon.request_stop()
    time.sleep(0.3)
    assert hanging([(0, d) for d in daemon.sent_log]) == set()


def test_program_change_and_cc_pick_the_style_and_the_amount(restyling):
    daemon, listener, out = restyling(style="fiddle", amount=1.0)
    part = daemon.part.thread
    out.send_message([0xC0, 3])  # Program Change 3: renaissance
    assert wait_until(lambda: part.settings.style == "renaissance", 5), part.settings
    out.send_message([0xB0, daemon.preset.cc.amount, 0])  # amount 0: the phrase's own style
    assert wait_until(lambda: part.settings.amount == 0.0, 5), part.settings
    out.send_message([0xB0, daemon.preset.cc.style, 127])  # the top of the style CC: medieval
    assert wait_until(lambda: part.settings.style == "medieval", 5), part.settings
    out.send_message([0xC0, 9])  # no style, no preset mapped: nothing changes
    time.sleep(0.2)
    assert part.settings.style == "medieval"
    play(out)  # amount 0 and a phrase: it still comes back, whole
    assert wait_until(lambda: windows(daemon) and listener.note_ons(), 10)


def test_a_model_trained_for_another_task_is_refused_with_the_fix(jack_server, tmp_path):
    path = write_restyle_preset(tmp_path)
    result = subprocess.run([sys.executable, str(REPO / "daemon.py"), "--preset", str(path), "--model",
                             str(REPO / "models" / "continuation.pt")], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "needs a model trained for RESTYLE" in result.stderr and "restyle.pt" in result.stderr, result.stderr
