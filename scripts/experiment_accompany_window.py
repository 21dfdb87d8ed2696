"""Where the live commit window costs consonance: the offline planner (`engine.offline.accompaniment`, the
live mode's own code) on the eval's held-out pieces as played, at several commit windows and sampling seeds,
with the melody's time split by how long its note has sounded (CR in the first eighth of each melody note
and after it), so the window's cost is seen where it is.

    python scripts/experiment_accompany_window.py [--pieces 30] [--windows 0,2,4,6] [--seeds 0,1,2]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import engine.model.accompanist as accompanist
from engine.model.modelfile import load_model
from engine.model.sampler import SamplingConfig
from engine.model.session import ModelSession
from engine.music.harmony import CONSONANT, accompaniment_metrics
from engine.music.tokens import Meter
from engine.offline.accompaniment import AccompanySettings, accompany
from engine.train.config import load_config
from engine.train.evaluate_accompany import (V, _notes_of_events, _played_melody_notes, melody_of,
                                             test_pieces)

EIGHTH = V.config.ticks_per_beat // 2


def split_consonance(notes) -> dict:
    """Melody time (ticks) with a consonant voice / with none / dissonant, in each note's first eighth and after."""
    out = {k: 0.0 for k in ("early_total", "early_cons", "early_unacc", "late_total", "late_cons", "late_unacc")}
    side = [n for n in notes if n.role != 0]
    for m in (n for n in notes if n.role == 0):
        for t in range(m.start, m.end):
            sounding = [p.pitch for p in side if p.start <= t < p.end]
            part = "early" if t - m.start < EIGHTH else "late"
            out[f"{part}_total"] += 1
            if not sounding:
                out[f"{part}_unacc"] += 1
            elif any((m.pitch - p) % 12 in CONSONANT for p in sounding):
                out[f"{part}_cons"] += 1
    return out


def run(pieces: int, windows: list[int], seeds: list[int]) -> dict:
    cfg = load_config("accompaniment")
    test = test_pieces(cfg, pieces, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        session = ModelSession(load_model("models/accompaniment.pt", V, "cpu"), device="cpu")
    rows = []
    for window in windows:
        for seed in seeds:
            t0 = time.monotonic()
            crs, urs, split, notes_n = [], [], {}, []
            for i, (piece, roles, end) in enumerate(test):
                melody = melody_of(piece, roles, end, True)
                settings = AccompanySettings(sampling=SamplingConfig(0.9, 0, 0.95, seed + i), style=piece.collection)
                result = accompany(session, melody, settings, V, commit_ticks=window)
                notes = _played_melody_notes(melody) + _notes_of_events(result.events)
                bar = Meter(*map(int, piece.bars[0, 1:])).bar_ticks(V.config.ticks_per_beat)
                m = accompaniment_metrics(notes, bar)
                crs.append(m.cr)
                urs.append(m.ur)
                notes_n.append(m.notes)
                for k, v in split_consonance(notes).items():
                    split[k] = split.get(k, 0.0) + v
            row = {"window": window, "seed": seed, "cr": round(float(np.mean(crs)), 4),
                   "ur": round(float(np.mean(urs)), 4), "notes": round(float(np.mean(notes_n)), 1),
                   "cr_first_eighth": round(split["early_cons"] / split["early_total"], 4),
                   "ur_first_eighth": round(split["early_unacc"] / split["early_total"], 4),
                   "cr_after": round(split["late_cons"] / max(1.0, split["late_total"]), 4),
                   "first_eighth_share": round(split["early_total"] / (split["early_total"] + split["late_total"]), 4),
                   "seconds": round(time.monotonic() - t0, 1)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"pieces": len(test), "repair_after_beats": accompanist.REPAIR_AFTER_BEATS, "rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pieces", type=int, default=30)
    p.add_argument("--windows", default="0,2,4,6")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    r = run(a.pieces, [int(x) for x in a.windows.split(",")], [int(x) for x in a.seeds.split(",")])
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)


if __name__ == "__main__":
    main()
