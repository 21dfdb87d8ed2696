"""Export a trained model: TorchScript with its model card embedded and written beside it.

    card = export_model(model, "models/continue.pt", {"training": {...}, "metrics": {...}})

The file is a `torch.jit.save` archive; `card.json` rides in its extra files, and the same card is
written to `models/continue.card.json` for people and tools that do not load torch. The runtime
(`engine.model.modelfile`) loads it with `torch.jit.load` only and checks the card against the running
vocabulary.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelError
from engine.train.model import TransformerLM, count_parameters
from engine.music.vocab import DEFAULT_VOCAB, Vocab

CARD_NAME = "card.json"
CARD_FORMAT = "sideman-model-1"


def card_path(model_path: str | Path) -> Path:
    """models/NAME.pt -> models/NAME.card.json"""
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def hardware() -> str:
    """A short description of the machine, for the card's training info."""
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}x {torch.cuda.get_device_name(0)}"
    return f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def make_card(model: TransformerLM, vocab: Vocab = DEFAULT_VOCAB, card: dict[str, Any] | None = None,
              name: str | None = None) -> dict[str, Any]:
    """The full card: the caller's fields (name, kind, training, metrics, ...) plus what the model says."""
    out: dict[str, Any] = {
        "format": CARD_FORMAT,
        "name": name or "model",
        "kind": "lm",
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "training": {"data": None, "steps": None, "wall_time_s": None, "hardware": hardware()},
        "metrics": {},
    }
    for key, value in (card or {}).items():
        if key == "training" and isinstance(value, dict):
            out["training"] = {**out["training"], **value}
        else:
            out[key] = value
    out["vocab_hash"] = vocab.hash()
    out["vocab"] = json.loads(vocab.to_json())
    out["model"] = model.config.to_dict()
    out["parameters"] = count_parameters(model)
    out["torch"] = torch.__version__
    return out


def script_model(model: TransformerLM) -> torch.jit.ScriptModule:
    """TorchScript of a copy of the model, in eval mode, on the CPU, in float32."""
    m = copy.deepcopy(model).to("cpu", torch.float32).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(m)


def export_model(model: TransformerLM, path: str | Path, card: dict[str, Any] | None = None,
                 vocab: Vocab = DEFAULT_VOCAB) -> dict[str, Any]:
    """Script `model`, save it to `path` with the card embedded, write the card beside; return the card."""
    path = Path(path)
    if model.config.vocab_size != vocab.size:
        raise ModelError(f"{path}: the model has {model.config.vocab_size} output tokens but the vocabulary has "
                         f"{vocab.size}; build the model with ModelConfig(vocab_size=vocab.size)")
    full = make_card(model, vocab, card, name=(card or {}).get("name") or path.stem)
    text = json.dumps(full, indent=2, sort_keys=True)
    scripted = script_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(scripted, str(tmp), _extra_files={CARD_NAME: text})
    os.replace(tmp, path)
    card_path(path).write_text(text + "\n")
    return full
