"""A small model with random weights for the daemon's plumbing tests (never shipped), used until the
trained models/continuation.pt exists (then the tests use that).

Random weights give near-uniform logits: an answer would then mostly pick one of the 96 shift tokens
and rarely its role token or a note, so answers would often be silent. The model is nudged toward
the sideman's role and note-ons (a shared direction added to the final layer norm's bias and to those
tokens' tied embeddings) so that its answers have notes.
"""

from __future__ import annotations

import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = REPO / "models" / "continuation.pt"


def plumbing_model(folder: Path) -> Path:
    """models/continuation.pt if it exists, else a nudged random model exported into `folder`."""
    if SHIPPED_MODEL.exists():
        return SHIPPED_MODEL
    import torch

    from engine.train.export import export_model
    from engine.train.model import ModelConfig, TransformerLM
    from engine.music.vocab import DEFAULT_VOCAB as V

    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=V.size, d_model=64, n_layers=2, n_heads=2, d_ff=128,
                                      window=256, max_rollback=128))
    with torch.no_grad():
        direction = torch.nn.functional.normalize(torch.randn(64), dim=0)
        model.ln_f.bias.copy_(direction)
        model.wte.weight[V.role(1)] += 4.0 * direction
        model.wte.weight[V.note_on_base:V.note_off_base] += 1.5 * direction
        model.wte.weight[V.note_off_base:V.size] += 1.5 * direction
    path = folder / "random-plumbing.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        export_model(model, path, {"name": "random-plumbing"})
    return path
