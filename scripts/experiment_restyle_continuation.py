"""Experiment (the restyle issue, the probe on z): continue a finished restyle run for a few hundred steps
with another way of keeping the style out of z, and export the result for `sideman eval --task restyle`.

    .venv/bin/python scripts/experiment_restyle_continuation.py runs/restyle NAME STEPS [field=value ...]

e.g. (the two continuations of docs/benchmarks.md, "Restyle: what the probe on z measures"):

    ... runs/restyle ft-br 400 adversary_reads=mu adversary_steps=4
    ... runs/restyle ft-mmd 400 adversary_reads=mu adversary_steps=4 mmd_weight=2.0
    .venv/bin/sideman eval --task restyle --probe-only --model runs/ft-mmd/ft-mmd.pt --json

The run's weights and its model optimizer state are copied into runs/NAME/ (the co-trained adversary's
entries dropped from the optimizer when the new run trains its adversary on its own); the schedule is the
`restyle` preset's, stretched to 6,000 steps so that the continuation runs at lr ~5e-4 (a finished run sits at
the floor, 5e-5). The exported runs/NAME/NAME.pt holds the continuation's last weights."""
import logging
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import torch

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=UserWarning)
from engine.train.train_restyle import export_run, load_restyle_config, train_restyle  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source, name, steps = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    overrides = dict(arg.split("=", 1) for arg in sys.argv[4:])
    ck = torch.load(source / "checkpoint.pt", map_location="cpu", weights_only=False)
    start = ck["state"]["step"]
    cfg = replace(load_restyle_config("restyle", overrides), name=name, max_steps=6000, stop_at=start + steps,
                  eval_every=200, snapshots=())
    out = REPO / cfg.out_dir / name
    out.mkdir(parents=True, exist_ok=True)
    if cfg.adversary_steps > 0 and ck.get("adversary") and "net" not in ck["adversary"]:
        n_adversary = len(ck["adversary"])  # the co-trained adversary's tensors: the last of the one group
        group = ck["opt"]["param_groups"][0]
        group["params"] = group["params"][:-n_adversary]
        ck["opt"]["state"] = {i: ck["opt"]["state"][i] for i in group["params"] if i in ck["opt"]["state"]}
    torch.save(ck, out / "checkpoint.pt")
    torch.save(ck["model"], out / "best.pt")  # (the copied state's best val recon is the first run's)
    train_restyle(cfg, resume=True, progress=False)
    last = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    torch.save(last["model"], out / "best.pt")  # export the continuation's last weights
    print(export_run(cfg, out, last["state"]))


if __name__ == "__main__":
    main()
