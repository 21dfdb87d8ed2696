"""Ship a trained run as a model in models/: `python -m engine.train.ship runs/NAME [--eval eval.json]`.

Re-exports the run's best weights with the current model code (so the TorchScript in models/ is the
code in this repository), with the run's card, plus the evaluation's numbers when given.
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import torch

from engine.train.export import card_path, export_model
from engine.train.model import ModelConfig, TransformerLM

MODELS = Path(__file__).resolve().parents[2] / "models"
LISTENER_METRICS = ("out_of_range", "register_distance_median", "thicker_share", "density_in_range_share",
                    "held_over_bar", "empty_answers")


def ship(run_dir: Path, name: str | None = None, evaluation: dict | None = None, out_dir: Path = MODELS) -> Path:
    run_dir = Path(run_dir)
    name = name or run_dir.name
    run_card = json.loads(card_path(run_dir / f"{run_dir.name}.pt").read_text())
    model = TransformerLM(ModelConfig.from_dict(run_card["model"]))
    model.load_state_dict(torch.load(run_dir / "best.pt", map_location="cpu"))
    model.eval()
    card = {k: run_card[k] for k in ("task", "training", "metrics") if k in run_card}
    card["name"] = name
    if evaluation is not None and evaluation.get("task") == "accompany":  # `sideman eval --task accompany`
        card["metrics"] = {**card.get("metrics", {}), "sideman_loss_markov": evaluation["sideman_loss_markov"], **{
            k: v for m in evaluation.get("models", {}).values() for k, v in m.items()
            if k in ("sideman_loss", "loss_vs_markov")}}
        card["evaluation"] = {k: evaluation[k] for k in ("models", "clean", "as_played", "markov_order", "pieces",
                                                         "bars", "data") if k in evaluation}
    elif evaluation is not None:
        card["metrics"] = {**card.get("metrics", {}), **{
            k: evaluation[k] for k in ("val_loss_model", "val_loss_markov", "loss_vs_markov", "in_key_model",
                                      "in_key_markov", "in_key_reference", "pc_hist_dist_model",
                                      "pc_hist_dist_markov", "pc_hist_dist_reference", "valid_share")
            if k in evaluation}, **{  # what a listener hears, clean and as played (`<metric>_model[_<set>]`)
            k: v for k, v in evaluation.items() if k.split("_model")[0] in LISTENER_METRICS and "_model" in k}}
        card["evaluation"] = {k: evaluation[k] for k in ("models", "markov", "reference", "markov_order",
                                                         "prompts", "bars", "data", "as_played", "swing")
                              if k in evaluation}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        export_model(model, path, card)
    return path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--name", default=None)
    p.add_argument("--eval", default=None, help="the JSON of `sideman eval --json` for this model")
    args = p.parse_args()
    evaluation = json.loads(Path(args.eval).read_text()) if args.eval else None
    print(ship(Path(args.run_dir), args.name, evaluation))


if __name__ == "__main__":
    main()
