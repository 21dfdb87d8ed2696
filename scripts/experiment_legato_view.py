"""Experiment (the human-playing issue, item 2): would a legato view of the player's notes help the shipped
model on detached or overlapping playing? Run: .venv/bin/python scripts/experiment_legato_view.py

Each example phrase is held at an articulation (share of its written length), then optionally seen
"legato": a gap of at most G ticks before the next onset is closed, and an overlap into the next onset
is trimmed. The shipped model answers (2 bars, temperature 0.9, top-p 0.95, seeds 1-4); the listener
metrics are averaged over the seeds. Offline only: the live encoder has no such view yet.
An optional argument names another model file."""
import sys
import warnings
from pathlib import Path

import numpy as np

warnings.filterwarnings("ignore", category=DeprecationWarning)
from engine.offline.continuation import prompt_from_midi, continue_prompt, ContinueSettings, Prompt, SIDEMAN  # noqa: E402
from engine.music.tokens import decode_events, encode_events, NoteEvent, canonical_order  # noqa: E402
from engine.music.metrics import notes_of, listener_metrics  # noqa: E402
from engine.model.modelfile import load_model  # noqa: E402
from engine.model.session import ModelSession  # noqa: E402
from engine.model.sampler import SamplingConfig  # noqa: E402
from engine.music.vocab import DEFAULT_VOCAB as V  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
loaded = load_model(sys.argv[1] if len(sys.argv) > 1 else REPO / "models" / "continuation.pt", V, "cpu")
session = ModelSession(loaded, device="cpu")
EX = [str(REPO / "examples" / f) for f in ("folk-d-major.mid", "waltz-a-minor.mid", "chorale-g-major.mid")]

def player_notes(prompt):
    return [n for n in notes_of(decode_events(prompt.tokens))]

def play(notes, art):
    return [(n.start, n.start + max(1, (n.end - n.start) * art), n.pitch, n.velocity) for n in notes]

def view(notes, gap):
    """close gaps <= gap ticks to the next onset; trim overlaps into the next onset"""
    onsets = sorted(set(n[0] for n in notes))
    out = []
    for on, off, p, v in notes:
        nxt = [o for o in onsets if o > on]
        if nxt:
            n = nxt[0]
            if off > n: off = n            # overlap: the key is released where the next note comes
            elif n - off <= gap: off = n   # a short gap: legato, as the score has it
        out.append((on, off, p, v))
    return out

def prompt_of(base, notes):
    ev = []
    for on, off, p, v in notes:
        ev += [NoteEvent(on, True, p, v, 0), NoteEvent(off, False, p, 0, 0)]
    toks = [t for t in encode_events(canonical_order(ev), V, style="essen", task="CONTINUE", meter=base.meter)
            if t != V.eos]
    end = max(off for _, off, _, _ in notes)
    return Prompt(toks, base.meter, base.bpm, int(np.ceil(end)))

rows = []
for path in EX:
    base = prompt_from_midi(path)
    written = player_notes(base)
    bar = base.meter.bar_ticks(24)
    for art in (1.0, 0.9, 0.8, 0.6, 1.05):
        for name, gap in (("raw", -1), ("close<=3", 3), ("close<=6", 6), ("close<=12", 12)):
            ms = []
            for seed in (1, 2, 3, 4):
                notes = play(written, art)
                if gap >= 0: notes = view(notes, gap)
                pr = prompt_of(base, notes)
                session.reset()
                c = continue_prompt(session, pr, ContinueSettings(2, SamplingConfig(temperature=0.9, top_p=0.95, seed=seed)))
                ans = [n for n in notes_of(c.events) if n.role == SIDEMAN]
                phrase = [n for n in notes_of(c.events) if n.role != SIDEMAN]
                m = listener_metrics(phrase, max(pr.end_tick, 24), ans, c.end_tick - c.start_tick, bar)
                ms.append(m)
            voiced = [m for m in ms if not m.empty]
            rows.append((path.split("/")[-1][:10], art, name, np.mean([m.out_of_range for m in voiced]) if voiced else None,
                         np.mean([m.peak_polyphony for m in voiced]) if voiced else None,
                         np.mean([m.density_ratio for m in voiced]) if voiced else None, sum(m.empty for m in ms)))
            print("%-10s art %.2f %-10s out %.2f peak %.1f dens %.2f empty %d" % rows[-1] if voiced else rows[-1], flush=True)
