"""Export and loading: the card travels with the model, loading in a fresh process gives the same
logits, and every unusable file gives a ModelError that names the file and the fix."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from engine.errors import ModelError
from engine.model.modelfile import load_model, read_card
from engine.train.export import card_path, export_model
from engine.train.model import ModelConfig, TransformerLM
from engine.music.vocab import DEFAULT_VOCAB, Vocab, VocabConfig

REPO = Path(__file__).resolve().parents[2]
CFG = ModelConfig(vocab_size=DEFAULT_VOCAB.size, d_model=64, n_layers=2, n_heads=4, d_ff=128, window=32, max_rollback=16)
TOKENS = [1, 5, 9] + [(i * 37) % DEFAULT_VOCAB.size for i in range(60)]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return TransformerLM(CFG).eval()


@pytest.fixture()
def exported(tmp_path, model):
    path = tmp_path / "models" / "tiny.pt"
    card = export_model(model, path, {"training": {"data": "unit test", "steps": 0}, "metrics": {"nll": 5.9}})
    return path, card


def run_module(module, tokens):
    with torch.inference_mode():
        module.reset()
        out = [module.prefill(torch.tensor([tokens[:16]]), 0)]
        out += [module.decode(t, p) for p, t in enumerate(tokens[16:], start=16)]
    return torch.stack(out)


def test_card_embedded_and_beside(exported, model):
    path, card = exported
    beside = json.loads(card_path(path).read_text())
    assert card_path(path).name == "tiny.card.json"
    assert beside == card == read_card(path)
    assert card["name"] == "tiny" and card["vocab_hash"] == DEFAULT_VOCAB.hash()
    assert Vocab.from_json(json.dumps(card["vocab"])) == DEFAULT_VOCAB
    assert ModelConfig.from_dict(card["model"]) == CFG
    assert card["training"]["data"] == "unit test" and card["training"]["hardware"]
    assert card["metrics"] == {"nll": 5.9} and card["parameters"] > 0


def test_load_equals_eager_even_with_deprecation_warnings_as_errors(exported, model):
    path, _ = exported
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # loading must not trip on TorchScript's warnings
        loaded = load_model(path, DEFAULT_VOCAB, "cpu")
    assert (run_module(loaded.module, TOKENS) - run_module(model, TOKENS)).abs().max().item() < 1e-5


def test_save_load_in_fresh_process_equals(exported, model, tmp_path):
    path, _ = exported
    out = tmp_path / "logits.pt"
    code = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from engine.model.modelfile import load_model\n"
        "m = load_model(sys.argv[1]).module\n"
        f"toks = {TOKENS!r}\n"
        "with torch.inference_mode():\n"
        "    m.reset(); out = [m.prefill(torch.tensor([toks[:16]]), 0)]\n"
        "    out += [m.decode(t, p) for p, t in enumerate(toks[16:], start=16)]\n"
        "    full = m(torch.tensor([toks]))[0]\n"
        "torch.save({'cached': torch.stack(out), 'full': full}, sys.argv[2])\n"
        "print('ok', 'engine.train' in sys.modules)\n"
    )
    res = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", code, str(path), str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["ok", "False"]  # the runtime never imported the training code
    got = torch.load(out)
    assert (got["cached"] - run_module(model, TOKENS)).abs().max().item() < 1e-5
    with torch.inference_mode():
        assert (got["full"] - model(torch.tensor([TOKENS]))[0]).abs().max().item() < 1e-5


def expect_model_error(path, *fragments, vocab=DEFAULT_VOCAB):
    with pytest.raises(ModelError) as info:
        load_model(path, vocab, "cpu")
    msg = str(info.value)
    assert str(path) in msg and "sideman train" in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_missing_file(tmp_path):
    expect_model_error(tmp_path / "nope.pt", "no such model file")


def test_truncated_file(exported, tmp_path):
    path, _ = exported
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    expect_model_error(bad, "damaged")


def test_random_bytes(tmp_path):
    bad = tmp_path / "random.pt"
    bad.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).to(torch.uint8).numpy().tobytes())
    expect_model_error(bad, "damaged")
    with pytest.raises(ModelError, match="not a TorchScript model archive"):
        read_card(bad)


def test_file_without_card(model, tmp_path):
    bare = tmp_path / "bare.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(model), str(bare))
    expect_model_error(bare, "no model card")


def test_vocabulary_mismatch(tmp_path):
    other = Vocab(VocabConfig(velocity_bins=16))
    torch.manual_seed(0)
    m = TransformerLM(ModelConfig(vocab_size=other.size, d_model=32, n_layers=1, n_heads=2, d_ff=64, window=16, max_rollback=8))
    path = tmp_path / "other.pt"
    export_model(m, path, vocab=other)
    msg = expect_model_error(path, other.hash(), DEFAULT_VOCAB.hash())
    assert "vocabulary" in msg
    load_model(path, other, "cpu")  # fine with its own vocabulary


def test_export_refuses_wrong_vocab_size(tmp_path):
    m = TransformerLM(ModelConfig(vocab_size=100, d_model=32, n_layers=1, n_heads=2, d_ff=64))
    with pytest.raises(ModelError, match="vocab_size"):
        export_model(m, tmp_path / "x.pt")
