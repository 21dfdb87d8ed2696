"""The accompaniment end to end over real JACK MIDI, with the shipped accompaniment model: a JACK client
plays a melody detached and off the grid into "sideman in"; three voices come back on their own channels
while it plays, every note closed; panic, Stop and shutdown leave nothing sounding."""

from __future__ import annotations

import random
import signal
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from engine.presets import PRESET_DIR, dump_preset, load_preset
from test_daemon import (Listener, daemon_command, hanging, player, spawn_daemon, start_in_process, stop_in_process,
                         wait_for_exit, wait_until)

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "accompaniment.pt"
BPM = 120.0  # a beat is 0.5 s
MELODY = (72, 74, 76, 74, 72, 71, 72, 74, 76, 77, 76, 74, 72, 71, 69, 71)  # a chorale-like line, quarter notes

pytestmark = pytest.mark.jack


def write_accompany_preset(folder: Path, name: str = "accompany", program_change=(), **accompany) -> Path:
    """The chorale preset over JACK with unique port names, 120 BPM."""
    base = load_preset(PRESET_DIR / "chorale.toml")
    tag = uuid.uuid4().hex[:6]
    preset = replace(base, name=name,
                     ports=replace(base.ports, api="jack", input=f"sideman in {tag}", output=f"sideman out {tag}"),
                     clock=replace(base.clock, bpm=BPM), sampling=replace(base.sampling, seed=3),
                     accompany=replace(base.accompany, **accompany), program_change=tuple(program_change))
    path = folder / f"{name}.toml"
    path.write_text(dump_preset(preset))
    return path


@pytest.fixture
def accompanying(jack_server, tmp_path):
    started = []

    def start(program_change=(), **accompany):
        path = write_accompany_preset(tmp_path, program_change=program_change, **accompany)
        started.append(start_in_process(path, MODEL))
        daemon, _, listener, out = started[-1]
        return daemon, listener, out

    yield start
    stop_in_process(started)


def play_melody(out, pitches=MELODY, held=0.7, seed=1, beat=60.0 / BPM) -> tuple[float, float]:
    """Quarter notes held `held` of their length, each onset off the grid by up to +-30 ms, from an
    arbitrary moment (not a bar line); returns (first note-on, last note-off) perf_counter times."""
    rng = random.Random(seed)
    time.sleep(rng.uniform(0.1, 0.4))
    start = time.perf_counter()
    first = last = 0.0
    for i, p in enumerate(pitches):
        on_at = start + i * beat + rng.uniform(-0.03, 0.03)
        while time.perf_counter() < on_at:
            time.sleep(0.001)
        out.send_message([0x90, p, rng.randint(60, 100)])
        first = first or time.perf_counter()
        time.sleep(beat * held)
        out.send_message([0x80, p, 0])
        last = time.perf_counter()
    return first, last


def rested(daemon, timeout: float) -> bool:
    """Whether the sideman finished and rests within `timeout`: the plan stopped at the bar line after the
    player's last note, every planned event went to the scheduler, and the clock passed the last of them."""
    part = daemon.part.thread
    return wait_until(lambda: part.state == "resting" and part.uncommitted == 0
                      and time.perf_counter() > part.last_due + 0.1, timeout)


def diagnosis(daemon, messages=(), first: float = 0.0) -> str:
    """What the daemon's threads say when an assertion fails: the part's and the plan's state, what the
    scheduler holds and believes sounds, and the last messages heard (times from `first`)."""
    part = daemon.part.thread
    p = part.planner
    sched = daemon.scheduler
    return (f"state {part.state} uncommitted {part.uncommitted} last_due in {part.last_due - time.perf_counter():+.3f} s "
            f"alive {part.is_alive()} error {getattr(part, 'error', None)!r}; plan position {p.position} "
            f"rest bar {p.rest_bar()} started {p.started} player sounding {p.player_sounding} sideman sounding "
            f"{p.sideman_sounding} encoder depth {dict(p.encoder.depth)} predicted {p.predicted_tick}; part "
            f"{part.stats}; plan {p.stats}; scheduler {sched.stats} pending {sched.core.pending()} sounding "
            f"{sched.core.sounding()} suppressed {dict(sched.core._suppressed)}; last heard "
            f"{[(round(t - first, 3), d) for t, d in list(messages)[-30:]]}")


def voices_of(messages, channels=(1, 2, 3)) -> dict[int, list[tuple[float, int]]]:
    return {ch: [(t, d[1]) for t, d in messages if d[0] & 0xF0 == 0x90 and d[2] > 0 and d[0] & 0x0F == ch]
            for ch in channels}


@pytest.mark.skipif(not MODEL.exists(), reason="the accompaniment model is not built yet (sideman train --config accompaniment)")
def test_a_melody_played_detached_and_off_the_grid_gets_three_voices_with_every_note_closed(accompanying):
    daemon, listener, out = accompanying()
    first, last = play_melody(out)
    bar = 4 * 60.0 / BPM
    # when the player stops, the sideman finishes at the next bar line and rests: nothing after that
    assert rested(daemon, 5 * bar), diagnosis(daemon, listener.messages, first)
    time.sleep(0.1)
    messages = list(listener.messages)
    voices = voices_of(messages)
    ranges = daemon.preset.accompany.ranges
    for i, ch in enumerate((1, 2, 3)):
        notes = voices[ch]
        assert len(notes) >= 4, f"voice on channel {ch + 1} played {len(notes)} notes: {daemon.status()} {daemon.part.thread.stats} {daemon.part.thread.planner.stats}"
        low, high = ranges[i]
        assert all(low <= p <= high for _, p in notes)
        assert all(first - 0.05 <= t <= last + 2 * bar for t, _ in notes)  # with the melody, not after it
    assert not hanging(messages), f"{hanging(messages)} left sounding: {diagnosis(daemon, messages, first)}"
    # the voices sound with the melody: most melody beats have a sideman note sounding (offline the model's
    # UR is a few per cent; detached playing leaves the melody's gaps, not the voices')
    sounding_at_onsets = 0
    for k in range(len(MELODY)):
        t = first + k * 60.0 / BPM + 0.1
        sounding = set()
        for at, d in messages:
            if at > t:
                break
            if d[0] & 0x0F in (1, 2, 3) and d[0] & 0xF0 in (0x80, 0x90):
                (sounding.add if d[0] & 0xF0 == 0x90 and d[2] > 0 else sounding.discard)((d[0] & 0x0F, d[1]))
        sounding_at_onsets += bool(sounding)
    assert sounding_at_onsets >= len(MELODY) * 0.75, sounding_at_onsets
    stats = daemon.part.thread.stats
    assert stats.player_events == 2 * len(MELODY)  # nothing the player played is lost
    assert stats.late_notes == 0 or stats.late_notes <= 0.01 * stats.committed_notes
    # the status line says which commit window is in use: the adaptive one, within its floor and ceiling
    a = daemon.preset.accompany
    assert a.adaptive_commit and a.commit_min_ms <= daemon.status()["commit_ms"] <= a.commit_ms
    assert "| commit " in daemon.status_line()


@pytest.mark.skipif(not MODEL.exists(), reason="the accompaniment model is not built yet (sideman train --config accompaniment)")
def test_panic_and_a_voice_switched_off_close_their_notes_and_the_accompaniment_goes_on(accompanying):
    daemon, listener, out = accompanying()
    play_melody(out, MELODY[:6])
    out.send_message([0xB0, daemon.preset.cc.panic, 127])  # panic mid-phrase: everything closes
    assert wait_until(lambda: not hanging(list(listener.messages)), 2.0)
    out.send_message([0xB0, daemon.preset.cc.voice_alto, 0])  # the alto off
    time.sleep(0.2)
    mark = time.perf_counter()
    play_melody(out, MELODY[6:], seed=2)
    bar = 4 * 60.0 / BPM
    assert rested(daemon, 5 * bar), diagnosis(daemon, listener.messages, mark)
    time.sleep(0.1)
    after = [(t, d) for t, d in list(listener.messages) if t > mark + 0.05]
    voices = voices_of(after)
    assert not voices[1], "the alto was switched off"
    assert voices[2] and voices[3], (f"tenor and bass go on: {len(voices[2])} and {len(voices[3])} notes; "
                                     + diagnosis(daemon, listener.messages, mark))
    assert not hanging(list(listener.messages)), diagnosis(daemon, listener.messages, mark)
    # stop while it plays: the shutdown closes every voice
    play_melody(out, MELODY[:4], seed=3)
    daemon.request_stop()
    time.sleep(0.5)
    assert not hanging(list(listener.messages))


@pytest.mark.skipif(not MODEL.exists(), reason="the accompaniment model is not built yet (sideman train --config accompaniment)")
def test_a_preset_switch_mid_melody_closes_every_voice_and_plays_on_with_the_new_voices(accompanying, tmp_path):
    """Program Change 5 to a preset with the bass only: the voices playing end at once; the bass goes on."""
    bass_only = write_accompany_preset(tmp_path, name="bass-only", voices=(3,))
    daemon, listener, out = accompanying(program_change=((5, bass_only.name),))
    play_melody(out, MELODY[:6])
    out.send_message([0xC0, 5])
    assert wait_until(lambda: daemon.preset.name == "bass-only", 2.0)
    assert wait_until(lambda: not hanging(list(listener.messages)), 2.0)
    mark = time.perf_counter()
    play_melody(out, MELODY[6:], seed=4)
    bar = 4 * 60.0 / BPM
    assert rested(daemon, 5 * bar), daemon.status()
    time.sleep(0.1)
    voices = voices_of([(t, d) for t, d in list(listener.messages) if t > mark + 0.05])
    assert voices[3] and not voices[1] and not voices[2]
    assert daemon.part.thread.stats.player_events == 2 * len(MELODY)


@pytest.mark.skipif(not MODEL.exists(), reason="the accompaniment model is not built yet (sideman train --config accompaniment)")
def test_sigterm_mid_melody_leaves_no_voice_hanging(jack_server, tmp_path):
    path = write_accompany_preset(tmp_path)
    preset = load_preset(path)
    proc, lines, reader = spawn_daemon(daemon_command(path, MODEL))
    try:
        assert wait_until(lambda: any("sideman ready" in line for line in lines), 60), "".join(lines)[-2000:]
        listener = Listener(preset.ports.output)
        out = player(preset.ports.input)
        play_melody(out, MELODY[:5])
        out.send_message([0x90, 79, 90])  # a held note: the voices are sounding with it
        assert wait_until(lambda: len(voices_of(listener.messages)[3]) > 0, 5), "no voices: " + "".join(lines)[-2000:]
        wait_for_exit(proc, lines, signal.SIGTERM)
        reader.join(2)
        time.sleep(0.1)
        out.close_port()
        listener.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, "".join(lines)[-2000:]
    assert hanging(listener.messages) == set()


def test_a_continuation_model_in_an_accompany_preset_is_refused_with_the_fix(jack_server, tmp_path):
    path = write_accompany_preset(tmp_path)
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(REPO / "daemon.py"), "--preset", str(path), "--model",
                             str(REPO / "models" / "continuation.pt")], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "needs a model trained for ACCOMPANY" in result.stderr and "accompaniment.pt" in result.stderr
