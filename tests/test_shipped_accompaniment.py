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
    """Regression guards from the shipped model's own numbers on this melody with the consonance guard
    (CR 0.86-0.91, UR 0.03-0.05, about 1.5-2.5 notes per melody note in each voice): the issue's targets
    (CR within 0.03 of Bach's 0.94) are not met yet, see the README."""
    from engine.music.metrics import estimate_key

    melody = MELODY
    if held is not None:
        melody = tmp_path / "played.mid"
        played(MELODY, melody, held, seed=1)
    results, in_key = [], []
    for seed in (1, 2, 3):
        out = tmp_path / f"satb-{seed}.mid"
        assert main(["accompany", str(melody), "-o", str(out), "--seed", str(seed)]) == 0
        notes = notes_of_file(out)
        tune = [n for n in notes if n.role == 0]
        scale = estimate_key(tune).scale
        for role in (1, 2, 3):
            voice = [n for n in notes if n.role == role]
            assert 8 <= len(voice) <= 3 * len(tune), f"voice {role} sang {len(voice)} notes (seed {seed})"
            low, high = RANGES[role]
            assert all(low <= n.pitch <= high for n in voice)
            ends = sorted(voice, key=lambda n: n.start)
            assert all(a.end <= b.start for a, b in zip(ends, ends[1:])), "one note at a time in a voice"
            in_key += [n.pitch % 12 in scale for n in voice]
        results.append(accompaniment_metrics(notes, 96))
    cr = sum(m.cr for m in results) / len(results)
    ur = sum(m.ur for m in results) / len(results)
    assert cr >= 0.80 and ur <= 0.10, (cr, ur)
    # in the melody's key: 0.64 as written (seeds 1-3), where an 8-note scale holds 0.67 of random pitch
    # classes. Before the consonance guard and the expiry of stale predictions it was 0.84 as written (and CR
    # 0.80-0.84): a guarded voice takes the consonance the model offers, often chromatic (G#, C# under an E
    # minor tune). The harmony's key is the weak part, see the README
    assert sum(in_key) / len(in_key) >= 0.60
