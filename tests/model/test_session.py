"""The session over a real exported model file: feed, append, rollback and sliding equal the full
recompute; rollback limits are errors; memory is bounded."""

from __future__ import annotations

import random

import pytest
import torch
from pathlib import Path

from engine.errors import ModelError
from engine.model.modelfile import load_model
from engine.model.session import ModelSession, resolve_device
from engine.train.export import export_model
from engine.train.model import ModelConfig, TransformerLM
from engine.music.vocab import DEFAULT_VOCAB

V = DEFAULT_VOCAB.size
CFG = ModelConfig(vocab_size=V, d_model=64, n_layers=2, n_heads=4, d_ff=128, window=32, max_rollback=16)
TOL = 1e-4


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = TransformerLM(CFG).eval()
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    export_model(model, path)
    return path, model


@pytest.fixture()
def session(model_file):
    return ModelSession(load_model(model_file[0]), device="cpu", threads=1)


def reference(model, seq):
    seq = seq[-(CFG.n_layers * (CFG.window - 1) + 1):]  # all that reaches the last position (ALiBi)
    with torch.inference_mode():
        return model(torch.tensor([seq]))[0, -1]


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="--device cpu"):
            resolve_device("cuda")


def test_session_equals_recompute_across_rollback_and_slides(session, model_file):
    model = model_file[1]
    rng = random.Random(0)
    seq: list[int] = []
    worst = 0.0
    for _ in range(300):
        r = rng.random()
        if r < 0.15 and seq:
            pos = rng.randint(session.min_rollback_position, session.position)
            session.rollback(pos)
            del seq[pos:]
        elif r < 0.35:
            toks = [rng.randrange(V) for _ in range(rng.randint(1, 40))]  # longer than a prefill chunk
            session.feed(toks)
            seq += toks
        else:
            t = rng.randrange(V)
            session.append(t)
            seq.append(t)
        assert session.position == len(seq)
        assert session.history == seq[-CFG.window:]
        if seq:
            worst = max(worst, (session.logits - reference(model, seq)).abs().max().item())
    assert len(seq) > 5 * CFG.slots and worst < TOL


def test_step_returns_current_logits_without_compute(session):
    assert session.step() is None
    a = session.feed([1, 5, 9, 200])
    assert session.step() is a and a.dtype == torch.float32 and a.shape == (V,)


def test_rollback_limits(session):
    session.feed(list(range(10, 60)))
    assert session.min_rollback_position == 50 - CFG.max_rollback
    with pytest.raises(ModelError, match="keeps only the last 16"):
        session.rollback(session.min_rollback_position - 1)
    with pytest.raises(ModelError, match="is at 50"):
        session.rollback(51)
    session.rollback(session.min_rollback_position)
    assert session.position == 34
    assert session.tokens_since(30) == list(range(40, 44))


def test_rollback_restores_exact_state(session, model_file):
    toks = [random.Random(5).randrange(V) for _ in range(70)]
    session.feed(toks)
    before = session.logits.clone()
    session.append(7)
    session.append(8)
    session.rollback(70)
    assert (session.logits - before).abs().max().item() < TOL
    assert (session.append(7) - reference(model_file[1], toks + [7])).abs().max().item() < TOL


def test_memory_bounded_and_position_grows(session):
    def cache_shapes():
        return {n: tuple(b.shape) for n, b in session.module.named_buffers() if n.endswith((".kv", ".kv_pair", "alibi"))}

    sizes = cache_shapes()
    assert len(sizes) == 2 * CFG.n_layers + 1
    for i in range(6 * CFG.slots):
        session.append(i % V)
    assert session.position == 6 * CFG.slots
    assert cache_shapes() == sizes
    assert len(session.history) == CFG.window


def test_reset_and_bad_tokens(session):
    session.feed([1, 2, 3])
    session.reset()
    assert session.position == 0 and session.logits is None and session.history == []
    with pytest.raises(ModelError, match="out of range"):
        session.append(V)
    with pytest.raises(ModelError, match="out of range"):
        session.feed([1, -1])


def test_condition_needs_a_conditional_model(session):
    with pytest.raises(ModelError, match="cond_dim 0"):
        session.set_condition([0.0] * 4)


def test_conditional_session(tmp_path):
    cfg = ModelConfig(vocab_size=V, d_model=32, n_layers=1, n_heads=2, d_ff=64, window=16, max_rollback=8, cond_dim=3)
    torch.manual_seed(1)
    model = TransformerLM(cfg).eval()
    export_model(model, tmp_path / "cond.pt")
    s = ModelSession(load_model(tmp_path / "cond.pt"), device="cpu", threads=1)
    z = torch.tensor([0.5, -1.0, 2.0])
    s.set_condition(z)
    toks = [random.Random(2).randrange(V) for _ in range(40)]
    got = s.feed(toks)
    with torch.inference_mode():
        ref = model(torch.tensor([toks]), z[None])[0, -1]
    assert (got - ref).abs().max().item() < TOL
    s.reset()  # the condition survives a reset
    assert (s.feed(toks) - ref).abs().max().item() < TOL


def test_a_twin_has_its_own_cache_and_condition_and_decodes_as_the_session_does():
    """The restyler's guidance decodes a second condition beside the first: the twin's cache and condition
    are its own (the TorchScript module holds both), and the same tokens under the same condition give the
    same logits."""
    import warnings

    V = DEFAULT_VOCAB
    restyle = Path(__file__).resolve().parents[2] / "models" / "restyle.pt"
    if not restyle.exists():
        pytest.skip("no conditional model shipped")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        session = ModelSession(load_model(restyle, V), device="cpu", threads=1)
    twin = session.twin()
    assert twin is session.twin() and twin.module is not session.module
    cond = session.cond_dim
    tokens = [V.bos, V.task("RESTYLE"), V.style("none"), V.bar, V.note_on(62), V.shift(12)]
    first = torch.zeros(cond)
    first[-5] = 1.0
    second = torch.zeros(cond)
    second[-1] = 1.0
    session.set_condition(first)
    session.reset()
    twin.set_condition(second)
    twin.reset()
    a = session.feed(tokens).clone()
    b = twin.feed(tokens).clone()
    assert not torch.allclose(a, b)  # each its own condition, though fed the same tokens
    twin.set_condition(first)
    twin.reset()
    assert torch.equal(twin.feed(tokens), a)
    assert torch.equal(session.append(V.note_off(62)), twin.append(V.note_off(62)))
