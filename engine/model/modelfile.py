"""Load an exported model (runtime side): `torch.jit.load` only, never the training code.

    loaded = load_model("models/continue.pt", DEFAULT_VOCAB, "cpu")
    loaded.module.prefill(...), loaded.card["metrics"]

Every way a model file can be unusable (missing, damaged, not a sideman model, trained for another
vocabulary) raises `ModelError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelError
from engine.music.vocab import DEFAULT_VOCAB, Vocab

CARD_NAME = "card.json"  # the same name engine.train.export writes (the runtime must not import it)
REQUIRED_METHODS = ("forward", "prefill", "decode", "reset", "rollback")
FIX = "retrain it with `sideman train` or use a model shipped in models/"


@dataclass(frozen=True)
class LoadedModel:
    module: torch.jit.ScriptModule
    card: dict[str, Any]
    path: Path

    @property
    def name(self) -> str:
        return str(self.card.get("name", self.path.stem))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.card["model"])


def _parse_card(path: Path, text: str | bytes) -> dict[str, Any]:
    if not text:
        raise ModelError(f"{path}: the file has no model card ({CARD_NAME}), so its vocabulary cannot be "
                         f"checked; re-export it with engine.train.export.export_model, or {FIX}")
    try:
        card = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: the model card is not valid JSON ({exc}); {FIX}") from None
    missing = [k for k in ("vocab_hash", "model") if k not in card] if isinstance(card, dict) else ["vocab_hash"]
    if missing:
        raise ModelError(f"{path}: the model card lacks {', '.join(missing)}; {FIX}")
    return card


def read_extra_file(path: str | Path, name: str) -> bytes | None:
    """An extra file saved in a model's TorchScript archive (`_extra_files`), read without loading the model;
    None when the archive has none of that name."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; {FIX}")
    try:
        with zipfile.ZipFile(path) as z:
            names = [n for n in z.namelist() if n.endswith("/extra/" + name)]
            return z.read(names[0]) if names else None
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path}: not a TorchScript model archive ({exc}); the file is damaged or is not a "
                         f"sideman model: {FIX}") from None


def read_card(path: str | Path) -> dict[str, Any]:
    """The card embedded in a model file, read from the archive without loading the model."""
    return _parse_card(Path(path), read_extra_file(path, CARD_NAME) or b"")


def check_card(path: Path, card: dict[str, Any], vocab: Vocab) -> None:
    if card["vocab_hash"] != vocab.hash():
        raise ModelError(
            f"{path}: the model was trained for vocabulary {card['vocab_hash']} but the running tokenizer's "
            f"vocabulary is {vocab.hash()} ({vocab.size} tokens); the model cannot be used with it: {FIX}")
    size = card["model"].get("vocab_size")
    if size != vocab.size:
        raise ModelError(f"{path}: the model has {size} output tokens, the vocabulary {vocab.size}; {FIX}")


def load_model(path: str | Path, vocab: Vocab = DEFAULT_VOCAB, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model exported by `engine.train.export`, check its card against `vocab`, put it on `device`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no such model file; {FIX}")
    extra = {CARD_NAME: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(path), map_location=torch.device(device), _extra_files=extra)
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a loadable TorchScript model ({first}); the file is damaged (an "
                         f"interrupted copy or download?) or is not a sideman model: {FIX}") from None
    card = _parse_card(path, extra[CARD_NAME])
    check_card(path, card, vocab)
    missing = [m for m in REQUIRED_METHODS if not hasattr(module, m)]
    if missing:
        raise ModelError(f"{path}: the model lacks the methods {', '.join(missing)} the runtime needs; {FIX}")
    module.eval()
    return LoadedModel(module, card, path)
