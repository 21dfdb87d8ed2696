"""The native decode kernel (engine/native): it equals the TorchScript decode step, over long sessions
with prefills, rollbacks and ring slides, for every attention layout and thread count; sessions use it
and agree with the TorchScript path token for token; it refuses what it cannot run, by name."""

from __future__ import annotations

import os
import random
import warnings
from pathlib import Path

import pytest
import torch

from engine.errors import ModelError
from engine.model.modelfile import load_model
from engine.model.native import build as native_build
from engine.model.native import kernel as native_kernel
from engine.model.native.kernel import NativeDecoder, NativeKernelUnavailable
from engine.model.sampler import Sampler, SamplingConfig
from engine.model.session import ModelSession
from engine.train.export import export_model
from engine.train.model import ModelConfig, TransformerLM

V = 382
TOL = 1e-4  # max |logit difference| between the kernel and the TorchScript step (fp32; seen ~1e-5)
SHIPPED = Path(__file__).resolve().parents[2] / "models" / "continuation.pt"


@pytest.fixture(scope="module", autouse=True)
def kernel_built():
    """Build the kernel if needed. Without a C compiler the tests skip, except in CI where that fails."""
    path = native_build.build()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but the native decode kernel could not be built (no C compiler)")
        pytest.skip("no C compiler: the native decode kernel is not built")


def scripted(cfg: ModelConfig, seed: int = 0):
    torch.manual_seed(seed)
    model = TransformerLM(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that every tensor the kernel reads matters
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        m = torch.jit.script(model)
    for p in m.parameters():
        p.requires_grad_(False)
    return m


LAYOUTS = {
    # head size 64 (the AVX-512 path) with multi-query, grouped-query and multi-head attention
    "mqa-hs64": ModelConfig(vocab_size=V, d_model=256, n_layers=2, n_heads=4, n_kv_heads=1, d_ff=512,
                            window=40, max_rollback=16),
    "gqa-hs64": ModelConfig(vocab_size=V, d_model=256, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=256,
                            window=37, max_rollback=8),
    "mha-hs64": ModelConfig(vocab_size=V, d_model=128, n_layers=1, n_heads=2, d_ff=256, window=33, max_rollback=8),
    # head size 16 (the portable C path), odd vocabulary and widths not multiples of 16
    "mqa-hs16": ModelConfig(vocab_size=V, d_model=48, n_layers=3, n_heads=3, n_kv_heads=1, d_ff=72,
                            window=21, max_rollback=9),
    "conditional": ModelConfig(vocab_size=V, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                               window=24, max_rollback=8, cond_dim=5),
}


def drive(module, decoder: NativeDecoder, n_ops: int, seed: int) -> tuple[float, int, int, int]:
    """Random prefills, native feeds, decodes (TorchScript and native in turn on the shared cache) and
    rollbacks. Each native step is checked against the TorchScript step at the same position and state,
    each native feed against TorchScript's prefill of the same tokens (then its own cache rows are the
    ones the next steps read). Returns (worst difference, native steps checked, feeds checked, final
    position)."""
    rng = random.Random(seed)
    worst, checked, fed, pos, max_written = 0.0, 0, 0, 0, -1
    max_rb = int(module.max_rollback)
    with torch.inference_mode():
        module.reset()
        module.origin = 0
        decoder.bind(module)
        for _ in range(n_ops):
            op = rng.random()
            if op < 0.1 and pos > 0:  # roll back up to max_rollback positions
                lo = max(0, max_written - max_rb + 1)
                pos = rng.randint(lo, pos)
                module.rollback(pos)
            elif op < 0.2:  # a prefill chunk (TorchScript) on the same cache
                n = rng.randint(2, max_rb)
                toks = torch.randint(0, V, (1, n))
                module.prefill(toks, pos)
                pos += n
            elif op < 0.3:  # a native feed of up to feed_max tokens against prefill's, from the same cache
                n = rng.randint(1, min(decoder.feed_max, max_rb))
                toks = [rng.randrange(V) for _ in range(n)]
                caches = [b for name, b in module.named_buffers() if name.endswith(".kv")]
                before = [c.clone() for c in caches]
                ref = module.prefill(torch.tensor([toks]), pos)
                for c, b in zip(caches, before):  # undone in place: the rows the next steps read are the feed's
                    c.copy_(b)
                out = decoder.feed(toks, pos)
                worst = max(worst, float((ref - out).abs().max()))
                fed += 1
                pos += n
            else:  # one decode step: TorchScript first, then the kernel at the same position
                tok = rng.randrange(V)
                ref = module.decode(tok, pos)
                out = decoder.step(tok, pos)
                worst = max(worst, float((ref - out).abs().max()))
                checked += 1
                pos += 1
            max_written = max(max_written, pos - 1)
    return worst, checked, fed, pos


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_kernel_equals_torchscript_over_long_sessions(layout, threads):
    cfg = LAYOUTS[layout]
    module = scripted(cfg, seed=threads)
    with torch.inference_mode():
        module.reset()
    decoder = NativeDecoder(module, threads=threads)
    try:
        if cfg.cond_dim:
            module.set_condition(torch.randn(cfg.cond_dim))
        worst, checked, fed, pos = drive(module, decoder, n_ops=260, seed=threads)
    finally:
        decoder.close()
    assert checked > 150 and fed > 15
    assert pos > 3 * cfg.slots  # the ring wrapped more than three times: windows over the seam
    assert worst < TOL, f"{layout}, {threads} threads: native differs from TorchScript by {worst}"


def test_kernel_detects_a_wrong_computation():
    """The comparison can fail: a kernel pointed at another model's weights disagrees."""
    cfg = LAYOUTS["mqa-hs64"]
    a, b = scripted(cfg, seed=1), scripted(cfg, seed=2)
    with torch.inference_mode():
        a.reset()
        b.reset()
        a.origin = b.origin = 0
        wrong = NativeDecoder(b)
        ref = a.decode(5, 0)
        out = wrong.step(5, 0)
    wrong.close()
    assert float((ref - out).abs().max()) > 1e-2


def test_condition_is_read_after_rebinding():
    cfg = LAYOUTS["conditional"]
    module = scripted(cfg)
    with torch.inference_mode():
        module.reset()
        module.origin = 0
        decoder = NativeDecoder(module)
        module.set_condition(torch.ones(cfg.cond_dim))
        decoder.bind(module)
        ref = module.decode(3, 0)
        out = decoder.step(3, 0)
    decoder.close()
    assert float((ref - out).abs().max()) < TOL


def test_shipped_model_kernel_equals_torchscript():
    """The shipped model, loaded as the runtime loads it (torch.jit.load), over 1,400 positions."""
    loaded = load_model(SHIPPED)
    module = loaded.module
    g = torch.Generator().manual_seed(3)
    toks = torch.randint(0, V, (1, 1400), generator=g)
    worst = 0.0
    with torch.inference_mode():
        module.reset()
        module.origin = 0
        decoder = NativeDecoder(module, threads=2)
        for i in range(0, 1024, 256):
            module.prefill(toks[:, i:i + 256], i)
        for p in range(1024, 1400):
            t = int(toks[0, p])
            ref = module.decode(t, p)
            worst = max(worst, float((ref - decoder.step(t, p)).abs().max()))
        for n in (1, 2, 5, 16, decoder.feed_max):  # native feeds over a full window, against prefill
            part = toks[0, 1400 - n:1400].tolist()
            ref = module.prefill(torch.tensor([part]), 1400)
            worst = max(worst, float((ref - decoder.feed(part, 1400)).abs().max()))
            module.rollback(1400)
    decoder.close()
    assert worst < TOL


def test_sessions_agree_token_for_token(tmp_path):
    """A native and a TorchScript session sample the same 300 tokens (seeded), across rollbacks and reset."""
    cfg = LAYOUTS["mqa-hs64"]
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    export_model(TransformerLM(cfg).eval(), path)
    sessions = {k: ModelSession(load_model(path), device="cpu", threads=2, kernel=k) for k in ("native", "torchscript")}
    assert sessions["native"].kernel == "native" and sessions["torchscript"].kernel == "torchscript"
    out = {}
    for kind, s in sessions.items():
        sampler = Sampler(SamplingConfig(temperature=1.0, seed=11))
        rng = random.Random(5)
        toks = []
        s.feed([1, 2, 3, 4, 5])
        for i in range(300):
            tok = sampler.sample(s.logits)
            toks.append(tok)
            s.append(tok)
            if rng.random() < 0.05:
                s.rollback(max(s.min_rollback_position, s.position - rng.randint(1, 8)))
            if i == 150:
                s.reset()
                s.feed([7, 8])
        out[kind] = toks
        s.close()
    assert out["native"] == out["torchscript"]


def test_session_kernel_choice_and_fallback(tmp_path, monkeypatch):
    cfg = LAYOUTS["mqa-hs16"]
    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    export_model(TransformerLM(cfg).eval(), path)
    with pytest.raises(ModelError, match="unknown decode kernel"):
        ModelSession(load_model(path), device="cpu", kernel="fast")
    # a kernel that is not built: 'auto' falls back to TorchScript, 'native' says how to build it
    monkeypatch.setattr(native_kernel, "_lib", None)
    monkeypatch.setattr(native_kernel, "LIBRARY", tmp_path / "missing.so")
    monkeypatch.setattr(native_kernel.load_library, "__defaults__", (tmp_path / "missing.so",))
    fallback = ModelSession(load_model(path), device="cpu", kernel="auto")
    assert fallback.kernel == "torchscript"
    assert fallback.feed([1, 2, 3]) is not None and fallback.append(4).shape == (V,)
    with pytest.raises(NativeKernelUnavailable, match="engine.model.native.build"):
        ModelSession(load_model(path), device="cpu", kernel="native")


def test_kernel_refuses_what_it_cannot_run():
    module = scripted(LAYOUTS["mqa-hs16"]).double()
    with torch.inference_mode():
        module.reset()
    with pytest.raises(NativeKernelUnavailable, match="float32"):
        NativeDecoder(module)
    unallocated = scripted(LAYOUTS["mqa-hs16"])
    with pytest.raises(NativeKernelUnavailable, match="reset"):
        NativeDecoder(unallocated)


def test_feed_refuses_what_the_ring_cannot_hold():
    """A feed takes 1 .. feed_max tokens, and no more than max_rollback (as prefill): more could overwrite
    the cache rows the first token attends to."""
    cfg = LAYOUTS["gqa-hs64"]  # max_rollback 8
    module = scripted(cfg)
    with torch.inference_mode():
        module.reset()
        module.origin = 0
        decoder = NativeDecoder(module)
        try:
            assert decoder.feed_max >= 16
            for n in (0, cfg.max_rollback + 1, decoder.feed_max + 1):
                with pytest.raises(ValueError, match="feed"):
                    decoder.feed([1] * n, 0)
            ref = module.prefill(torch.tensor([[1] * cfg.max_rollback]), 0)
            assert float((decoder.feed([1] * cfg.max_rollback, 0) - ref).abs().max()) < TOL
        finally:
            decoder.close()


def test_matvec_is_a_matvec():
    cfg = LAYOUTS["mqa-hs64"]
    module = scripted(cfg)
    with torch.inference_mode():
        module.reset()
    decoder = NativeDecoder(module, threads=2)
    w, x = torch.randn(333, 512), torch.randn(333)
    assert torch.allclose(decoder.matvec(w, x), x @ w, atol=1e-3)
    with pytest.raises(ValueError):
        decoder.matvec(w, torch.randn(5))
    decoder.close()


def test_kernel_brings_no_openmp_runtime():
    """The helpers are the kernel's own threads: the library needs no OpenMP runtime (torch's pool and a
    second pool spinning on a 2-core machine deschedule each other), only `omp simd` hints."""
    import subprocess

    needed = subprocess.run(["ldd", str(native_kernel.LIBRARY)], capture_output=True, text=True).stdout
    assert "libpthread" in needed or "libc.so" in needed, needed
    assert "gomp" not in needed and "libomp" not in needed, needed


STALLS = [(threads, thread, phase) for threads in (2, 3) for thread in (0, 1) for phase in (0, 1, 2, 3, 4, 10)]


@pytest.mark.parametrize("threads,thread,phase", STALLS)
def test_a_stalled_thread_changes_no_result(threads, thread, phase):
    """A thread stalled mid-step (as a preempted thread would be) in any phase, the caller or a helper:
    the others compute its share again, whoever publishes second writes nothing, and a helper that wakes
    up after its step is over writes nothing either: every step still equals TorchScript's."""
    cfg = LAYOUTS["mqa-hs64"]  # 2 layers: phases 0-9, the head is phase 10
    module = scripted(cfg, seed=phase)
    with torch.inference_mode():
        module.reset()
    decoder = NativeDecoder(module, threads=threads)
    decoder.debug_stall(thread, phase, 200e-6)
    try:
        worst, checked, _, _ = drive(module, decoder, n_ops=120, seed=phase)  # feeds right after stalled steps
    finally:
        decoder.close()
    assert checked > 60
    assert worst < TOL, f"thread {thread} stalled in phase {phase}: native differs from TorchScript by {worst}"


def test_a_step_does_not_wait_for_a_descheduled_helper():
    """The helper sleeps 20 ms in every step: the caller finishes the helper's share itself instead of
    waiting (an OpenMP team waited at every barrier: 4 ms steps whenever the OS ran something else)."""
    import time

    cfg = LAYOUTS["mqa-hs64"]
    module = scripted(cfg)
    with torch.inference_mode():
        module.reset()
        decoder = NativeDecoder(module, threads=2)
        try:
            decoder.debug_stall(1, 3, 20e-3)
            ref, out = [], []
            t0 = time.monotonic()
            for pos in range(20):
                out.append(decoder.step(pos % V, pos))
            elapsed = time.monotonic() - t0
            decoder.debug_stall(1, 3, 0)
            module.reset()
            for pos in range(20):
                ref.append(module.decode(pos % V, pos))
        finally:
            decoder.close()
    assert max(float((a - b).abs().max()) for a, b in zip(ref, out)) < TOL
    assert elapsed < 0.2, f"20 steps took {elapsed:.3f} s: the steps waited for the stalled helper (20 ms each)"
