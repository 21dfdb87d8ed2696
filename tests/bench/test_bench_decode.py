"""The decode benchmark runs end to end on the shipped model's architecture and reports what the issue asks for.

Speed itself is not asserted here (a noisy shared machine): `sideman bench decode` prints the numbers.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from engine.bench import decode
from engine.model.modelfile import read_card

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "continuation.pt"
REQUIRED = ("cached_ms_p50", "cached_ms_p99", "recompute_ms_p50_ctx1024", "hf_gpt2_ms_p50", "floor_ms", "device")


@pytest.fixture(scope="module")
def model_path() -> Path:
    return SHIPPED


@pytest.fixture(scope="module")
def result(model_path):
    return decode.run_benchmark("cpu", tokens=10, threads=1, repeats=1, slide_positions=2048,
                                model_path=str(model_path))


def test_json_has_the_required_fields(result):
    for key in REQUIRED:
        assert key in result
    if result["hf_gpt2_ms_p50"] is None:  # transformers is an optional bench dependency
        assert result["targets"]["cached_over_hf_gpt2 <= 0.25"] is None
    numbers = [v for k, v in result.items() if k.endswith(("_p50", "_p99")) and v is not None]
    assert numbers and all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in numbers)
    json.dumps(result)  # --json prints it as one object


def test_measures_the_shipped_architecture(result, model_path):
    card = read_card(model_path)["model"]
    for key in ("d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff", "window"):
        assert result["model"][key] == card.get(key, 0), key
    assert result["model"]["architecture_from"] == str(model_path)
    table = decode.format_table(result)
    assert "weight-streaming floor" in table and "targets" in table


def test_measures_the_path_the_runtime_takes(result):
    """The headline is the native kernel when it is built (as sessions use it), with the TorchScript step
    beside it; the floor is the faster of torch.mv and the kernel's own mat-vec."""
    from engine.model.native.kernel import available

    assert result["kernel"] == ("native" if available() else "torchscript")
    assert result["torchscript_ms_p50_ctx1024"] > 0
    if result["kernel"] == "native":
        assert 0 < result["floor_kernel_mv_ms"]
        assert result["floor_ms"] <= max(result["floor_torch_mv_ms"], result["floor_kernel_mv_ms"])
