"""The shipped accompaniment model: loads with torch.jit.load alone, and `sideman accompany` sings three
voices under the example melody, as written and as a person plays it, that sound with it."""

from __future__ import annotations

import random
from pathlib import Path

import mido
import pytest

from engine.cli import main
from engine.music.harmony import accompaniment_metrics
from engine.music.metrics import Note
from test_shipped_model import load_alone

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "accompaniment.pt"
MELODY = REPO / "examples" / "chorale-melody.mid"  # the soprano of a chorale training never saw (bwv227.11)
RANGES = {1: (53, 77), 2: (45, 69), 3: (34, 62)}

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no accompaniment model (sideman train --config accompaniment)")


def test_the_accompaniment_model_loads_with_torch_jit_load_alone():
    from engine.music.vocab import DEFAULT_VOCAB

    info = load_alone(MODEL)
    assert info == {"vocab": DEFAULT_VOCAB.size, "n": DEFAULT_VOCAB.size, "hash": DEFAULT_VOCAB.hash(),
                    "task": "ACCOMPANY"}
    assert MODEL.stat().st_size <= 16 * 1024 * 1024


def played(source: Path, target: Path, held: float, seed: int) -> None:
    """The melody as a person plays it: each note held `held` of its length, onsets off by up to 25 ms."""
    mid = mido.MidiFile(str(source))
    rng = random.Random(seed)
    tempo = 500000
    events, now = [], 0.0
    for msg in mido.merge_tracks(mid.tracks):
        now += mido.tick2second(msg.time, mid.ticks_per_beat, tempo)
        if msg.type == "set_tempo":
            tempo = msg.tempo
        if msg.type in ("note_on", "note_off"):
            events.append((now, msg))
    notes, open_ = [], {}
    for t, msg in events:
        if msg.type == "note_on" and msg.velocity > 0:
            open_[msg.note] = (t, msg.velocity)
        elif msg.note in open_:
            start, vel = open_.pop(msg.note)
            notes.append((start, t, msg.note, vel))
    out = []
    for start, end, pitch, vel in notes:
        j = rng.uniform(-0.025, 0.025)
        out.append((start + j, 1, mido.Message("note_on", note=pitch, velocity=vel)))
        out.append((start + j + (end - start) * held, 0, mido.Message("note_off", note=pitch, velocity=0)))
    out.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    last = 0
    for t, _, msg in out:
        ticks = max(0, int(round(mido.second2tick(t, 480, tempo))))
        track.append(msg.copy(time=max(0, ticks - last)))
        last = max(last, ticks)
    f = mido.MidiFile(type=0, ticks_per_beat=480)
    f.tracks.append(track)
    f.save(str(target))


def notes_of_file(path: Path) -> list[Note]:
    mid = mido.MidiFile(str(path))
    out, open_, now = [], {}, 0
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type not in ("note_on", "note_off"):
            continue
        key = (msg.channel, msg.note)
        if msg.type == "note_on" and msg.velocity > 0:
            open_[key] = now
        else:
            start = open_.pop(key)
            out.append(Note(start * 24 // mid.ticks_per_beat, now * 24 // mid.ticks_per_beat, msg.note, 64,
                            msg.channel))
    assert not open_, f"notes left open: {open_}"
    return out


@pytest.mark.parametrize("held", [None, 0.7])
def test_three_voices_under_the_example_melody_sound_with_it(held, tmp_path):
    melody = MELODY
    if held is not None:
        melody = tmp_path / "played.mid"
        played(MELODY, melody, held, seed=1)
    results = []
    for seed in (1, 2, 3):
        out = tmp_path / f"satb-{seed}.mid"
        assert main(["accompany", str(melody), "-o", str(out), "--seed", str(seed)]) == 0
        notes = notes_of_file(out)
        for role in (1, 2, 3):
            voice = [n for n in notes if n.role == role]
            assert len(voice) >= 8, f"voice {role} sang {len(voice)} notes (seed {seed})"
            low, high = RANGES[role]
            assert all(low <= n.pitch <= high for n in voice)
            ends = sorted(voice, key=lambda n: n.start)
            assert all(a.end <= b.start for a, b in zip(ends, ends[1:])), "one note at a time in a voice"
        results.append(accompaniment_metrics(notes, 96))
    cr = sum(m.cr for m in results) / len(results)
    ur = sum(m.ur for m in results) / len(results)
    above = sum(m.above_melody_share for m in results) / len(results)
    # Bach's own voices: CR 0.97-0.99, UR 0 (engine.music.harmony); see the README for the model's
    assert cr >= CR_MIN and ur <= UR_MAX and above <= ABOVE_MAX, (cr, ur, above)


CR_MIN, UR_MAX, ABOVE_MAX = 0.85, 0.10, 0.10
