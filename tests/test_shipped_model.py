"""The shipped default model: loads with torch.jit.load alone, and answers the shipped examples."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mido
import pytest

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "models" / "continuation.pt"
EXAMPLES = sorted((REPO / "examples").glob("*.mid"))


def test_shipped_model_loads_with_torch_jit_load_alone():
    """In a fresh interpreter that imports nothing of sideman: the file, its card, one decode step."""
    code = f"""
import json, warnings
warnings.simplefilter("ignore", DeprecationWarning)
import torch
files = {{"card.json": ""}}
m = torch.jit.load({str(MODEL)!r}, _extra_files=files)
card = json.loads(files["card.json"])
m.reset()
logits = m.decode(1, 0)
import sys
assert not any(name.startswith("engine") for name in sys.modules)
print(json.dumps({{"vocab": card["model"]["vocab_size"], "n": logits.numel(), "hash": card["vocab_hash"]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    from engine.music.vocab import DEFAULT_VOCAB

    assert info == {"vocab": DEFAULT_VOCAB.size, "n": DEFAULT_VOCAB.size, "hash": DEFAULT_VOCAB.hash()}
    assert MODEL.stat().st_size <= 16 * 1024 * 1024
    card = json.loads((REPO / "models" / "continuation.card.json").read_text())
    assert card["training"]["steps"] > 0 and "val_loss" in card["metrics"]


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_continue_answers_every_shipped_example(example, tmp_path):
    out = tmp_path / "answer.mid"
    png = tmp_path / "answer.png"
    cmd = [sys.executable, "-m", "engine.cli", "continue", str(example), "-o", str(out), "--seed", "7",
           "--bars", "2", "--png", str(png)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-2000:]
    mid = mido.MidiFile(str(out))
    sounding: dict[tuple[int, int], int] = {}
    answer_notes = 0
    now = 0
    for msg in mido.merge_tracks(mid.tracks):
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            assert (msg.channel, msg.note) not in sounding
            sounding[(msg.channel, msg.note)] = now
            answer_notes += msg.channel == 1
        elif msg.type in ("note_off", "note_on"):
            assert sounding.pop((msg.channel, msg.note)) < now  # every note ends after it starts
        if not msg.is_meta:
            assert now % (mid.ticks_per_beat // 24) == 0  # on the 24-per-beat grid
    assert not sounding  # no hanging note
    assert answer_notes >= 1  # the model answered with at least one note
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
