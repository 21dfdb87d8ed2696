"""The model core: cached decode equals the full sliding-window recompute, scripted equals eager."""

from __future__ import annotations

import random
import warnings
from dataclasses import replace

import pytest
import torch

from engine.train.model import ModelConfig, TransformerLM, alibi_slopes, window_bias

V = 382
TOL = 1e-4  # max |logit difference| allowed between the cached paths and the full recompute (fp32)
TINY = ModelConfig(vocab_size=V, d_model=64, n_layers=2, n_heads=4, d_ff=128, window=32, max_rollback=16)


def tiny(cfg: ModelConfig = TINY, seed: int = 0) -> TransformerLM:
    torch.manual_seed(seed)
    return TransformerLM(cfg).eval()


def script(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model)


@pytest.fixture(autouse=True)
def one_thread():
    """The CPU is shared: one thread per test process avoids OpenMP oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference(model, seq: list[int], cond=None) -> torch.Tensor:
    """Logits after the last token by a full recompute (sliding-window causal mask).

    Only the last n_layers * (window - 1) + 1 tokens can reach the last position through the
    windows, and ALiBi is translation invariant, so recomputing over them is exact and cheaper.
    """
    cfg = model.config if hasattr(model, "config") else TINY
    seq = seq[-(cfg.n_layers * (cfg.window - 1) + 1):]
    with torch.inference_mode():
        return model(torch.tensor([seq]), cond)[0, -1]


def run_random_ops(model, ref_model, n_ops: int, seed: int, cfg: ModelConfig = TINY, cond=None) -> tuple[float, int]:
    """Random prefills, decodes and rollbacks against the reference; returns (worst diff, final position)."""
    rng = random.Random(seed)
    seq: list[int] = []
    max_written = -1
    worst = 0.0
    with torch.inference_mode():
        model.reset()
        if cond is not None:
            model.set_condition(cond)
        for _ in range(n_ops):
            r = rng.random()
            if r < 0.15 and seq:
                lowest = max(1, max_written - cfg.max_rollback + 1)
                pos = rng.randint(min(lowest, len(seq)), len(seq))
                # rollback to pos, then the logits after pos - 1 come from re-decoding token pos - 1
                model.rollback(pos - 1)
                logits = model.decode(seq[pos - 1], pos - 1)
                del seq[pos:]
            elif r < 0.35:
                toks = [rng.randrange(V) for _ in range(rng.randint(1, cfg.max_rollback))]
                logits = model.prefill(torch.tensor([toks]), len(seq))
                seq += toks
            else:
                t = rng.randrange(V)
                logits = model.decode(t, len(seq))
                seq.append(t)
            max_written = max(max_written, len(seq) - 1)
            worst = max(worst, (logits - reference(ref_model, seq, cond)[None]).abs().max().item())
    return worst, len(seq)


def test_alibi_slopes_geometric():
    assert alibi_slopes(4) == [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]
    assert len(alibi_slopes(6)) == 6 and all(s > 0 for s in alibi_slopes(6))


def test_window_bias_masks_outside_the_window():
    pos = torch.arange(10)
    b = window_bias(torch.tensor([0.5]), pos, pos, window=3)[0]
    assert torch.isinf(b[5, 6]) and torch.isinf(b[5, 2])  # future, and 3 back (outside)
    assert b[5, 5] == 0 and b[5, 3] == -1.0  # itself, and 2 back (inside): -slope * distance


def test_decode_equals_full_recompute_over_long_sequence():
    model = tiny()
    seq = [random.Random(1).randrange(V) for _ in range(400)]
    with torch.inference_mode():
        ref = model(torch.tensor([seq]))[0]  # (T, V): sliding window of 32, so positions up to 400 slide
        model.reset()
        first = model.prefill(torch.tensor([seq[:5]]), 0)
        out = torch.stack([model.decode(t, p) for p, t in enumerate(seq[5:], start=5)])
    assert (first - ref[4]).abs().max().item() < TOL
    assert (out - ref[5:]).abs().max().item() < TOL


def test_prefill_chunks_equal_full_recompute():
    model = tiny()
    seq = [random.Random(2).randrange(V) for _ in range(300)]
    with torch.inference_mode():
        ref = model(torch.tensor([seq]))[0]
        model.reset()
        for start in range(0, 300, 16):
            logits = model.prefill(torch.tensor([seq[start:start + 16]]), start)
            assert (logits - ref[min(start + 16, 300) - 1]).abs().max().item() < TOL


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_prefill_decode_rollback_across_slides(seed):
    model = tiny(seed=seed)
    worst, length = run_random_ops(model, model, 250, seed)
    assert length > 3 * TINY.slots  # the ring wrapped several times
    assert worst < TOL


@pytest.mark.parametrize("n_kv_heads", [1, 2])
def test_grouped_query_attention_cache_equals_recompute(n_kv_heads):
    """Multi-query (1 kv head) and grouped-query (2 kv heads for 4 query heads): scripted, across slides."""
    cfg = replace(TINY, n_kv_heads=n_kv_heads)
    model = tiny(cfg, seed=n_kv_heads)
    worst, length = run_random_ops(script(model), model, 250, 10 + n_kv_heads, cfg)
    assert length > 3 * cfg.slots
    assert worst < TOL
    model.reset()
    assert model.blocks[0].kv.shape == (2 * cfg.slots, 2 * n_kv_heads * (cfg.d_model // cfg.n_heads))


def test_kv_heads_change_the_model():
    """A grouped model is a different function (not silently MHA): same seed, different logits."""
    seq = torch.randint(0, V, (1, 40), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        outs = [tiny(replace(TINY, n_kv_heads=k), seed=0)(seq) for k in (1, 4)]
    assert outs[0].shape == outs[1].shape and not torch.allclose(outs[0], outs[1])


def test_scripted_equals_eager_including_cache():
    model = tiny()
    scripted = script(model)
    seq = [random.Random(3).randrange(V) for _ in range(120)]
    with torch.inference_mode():
        assert torch.allclose(scripted(torch.tensor([seq])), model(torch.tensor([seq])), atol=1e-5, rtol=0)
        for m in (model, scripted):
            m.reset()
        for p, t in enumerate(seq):
            a, b = model.decode(t, p), scripted.decode(t, p)
            assert (a - b).abs().max().item() < 1e-5
    worst, _ = run_random_ops(scripted, model, 120, 7)
    assert worst < TOL


def test_positions_are_translation_invariant():
    """ALiBi: the same tokens starting at position 10**6 give the same logits as from 0."""
    model = tiny()
    seq = [random.Random(4).randrange(V) for _ in range(80)]
    with torch.inference_mode():
        outs = []
        for origin in (0, 10 ** 6 + 7):
            model.reset()
            model.prefill(torch.tensor([seq[:16]]), origin)
            outs.append(torch.stack([model.decode(t, origin + p) for p, t in enumerate(seq[16:], start=16)]))
    assert (outs[0] - outs[1]).abs().max().item() < 1e-5


def test_conditioning_paths_agree():
    cfg = ModelConfig(vocab_size=V, d_model=64, n_layers=2, n_heads=4, d_ff=128, window=32, max_rollback=16, cond_dim=8)
    model = tiny(cfg)
    z = torch.randn(1, 8)
    worst, _ = run_random_ops(script(model), model, 80, 5, cfg, cond=z)
    assert worst < TOL
    with torch.inference_mode():
        seq = torch.randint(0, V, (1, 20))
        assert not torch.allclose(model(seq, z), model(seq, -z))  # the condition changes the output


def test_no_condition_on_an_unconditional_model():
    with pytest.raises((RuntimeError, torch.jit.Error), match="cond_dim"):
        script(tiny()).set_condition(torch.zeros(4))


def test_forward_embeddings_hook_for_adversarial_training():
    model = tiny().train()
    tokens = torch.randint(0, V, (2, 24))
    emb = model.embed(tokens).detach().requires_grad_(True)
    logits = model.forward_embeddings(emb)
    assert logits.shape == (2, 24, V)
    torch.nn.functional.cross_entropy(logits.reshape(-1, V), tokens.roll(-1, 1).reshape(-1)).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0  # FGSM / PGD can perturb along it
    model.eval()
    with torch.inference_mode():
        assert torch.equal(model.forward_embeddings(model.embed(tokens)), model(tokens))


def test_prefill_rejects_chunks_longer_than_max_rollback():
    model = tiny()
    model.reset()
    with pytest.raises(RuntimeError, match="max_rollback"):
        model.prefill(torch.zeros(1, TINY.max_rollback + 1, dtype=torch.long), 0)


def test_cache_memory_is_bounded():
    model = tiny()
    model.reset()
    sizes = [b.kv.numel() for b in model.blocks]
    with torch.inference_mode():
        for p in range(5 * TINY.slots):
            model.decode(p % V, p)
    assert [b.kv.numel() for b in model.blocks] == sizes
    assert all(b.kv_pair.data_ptr() == b.kv.data_ptr() for b in model.blocks)  # still one buffer, two views
    assert sizes[0] == 2 * 2 * TINY.d_model * TINY.slots  # k and v, each token stored twice


def test_config_validation_kv_heads():
    with pytest.raises(ValueError, match="n_kv_heads"):
        ModelConfig(vocab_size=V, d_model=64, n_heads=4, n_kv_heads=3)
    assert ModelConfig(vocab_size=V).kv_heads == ModelConfig(vocab_size=V).n_heads  # 0 = one kv head per query head


def test_config_validation():
    with pytest.raises(ValueError):
        ModelConfig(vocab_size=V, d_model=65, n_heads=4)
    assert ModelConfig.from_dict(TINY.to_dict()) == TINY
