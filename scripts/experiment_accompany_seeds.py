"""The accompaniment eval's model rows over several sampling seeds: how far one seed's parallels, crossings,
CR and UR move, and their ratio to the reference's (the real lower voices), clean and as played. The eval
(`sideman eval --task accompany`) draws one seed; its parallels are small counts (a few in 240 bars), so
their ratio to the reference moves with it.

    python scripts/experiment_accompany_seeds.py [--pieces 30] [--seeds 0,1000,2000,3000] [--json out.json]

Piece i of seed s samples with s + i (as the eval does), so seeds 1000 apart share no piece's draw.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from engine.model.modelfile import load_model
from engine.model.session import ModelSession
from engine.train.config import load_config
from engine.train.evaluate_accompany import SUMMARY_KEYS, V, accompany_metrics, reference_metrics, test_pieces


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/accompaniment.pt")
    p.add_argument("--pieces", type=int, default=30)
    p.add_argument("--bars", type=int, default=8)
    p.add_argument("--seeds", default="0,1000,2000,3000")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    t0 = time.monotonic()
    seeds = [int(s) for s in a.seeds.split(",")]
    test = test_pieces(load_config("accompaniment"), a.pieces, a.bars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        session = ModelSession(load_model(a.model, V, "cpu"), device="cpu")
    report: dict = {"model": a.model, "pieces": a.pieces, "bars": a.bars, "seeds": seeds}
    for name, played in (("clean", False), ("as_played", True)):
        ref = reference_metrics(test, played)
        rows = [accompany_metrics(session, test, played, s) for s in seeds]
        keys = SUMMARY_KEYS + ("notes_per_piece",)
        mean = {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys}
        spread = {k: [min(r[k] for r in rows), max(r[k] for r in rows)] for k in keys}
        ratio = {k: round(mean[k] / ref[k], 2) if ref[k] else None
                 for k in ("parallels_per_bar", "crossing_share")}
        report[name] = {"reference": ref, "per_seed": rows, "mean": mean, "range": spread, "mean_over_reference": ratio}
        print(f"{name}: reference parallels/bar {ref['parallels_per_bar']}, crossed {ref['crossing_share']}, "
              f"CR {ref['cr']}, UR {ref['ur']}")
        for s, r in zip(seeds, rows):
            print(f"  seed {s}: parallels/bar {r['parallels_per_bar']}, crossed {r['crossing_share']}, CR {r['cr']}, "
                  f"UR {r['ur']}, notes {r['notes_per_piece']}")
        print(f"  mean: parallels/bar {mean['parallels_per_bar']} ({ratio['parallels_per_bar']}x the reference), "
              f"crossed {mean['crossing_share']} ({ratio['crossing_share']}x), CR {mean['cr']}, UR {mean['ur']}")
    report["wall_s"] = round(time.monotonic() - t0, 1)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
