"""Decode benchmark: what one generated token costs, against the honest baselines, in one run.

    sideman bench decode [--json] [--device cpu|cuda] [--tokens 200] [--threads 2] [--repeats 20]
    python -m engine.bench.decode ...

For the default model size (random weights: this measures speed only, not quality):
- per-token latency with the KV cache (p50 / p99, after an untimed warm-up) at contexts 256 and 1024,
  on the path the runtime takes (the native kernel when it is built, else TorchScript), and on the
  TorchScript step for comparison;
- full recompute of the whole context at the same contexts;
- the same-size Hugging Face GPT2LMHeadModel with its KV cache (if `transformers` is installed);
- the machine's weight-streaming floor, measured now: a mat-vec over as many fp32 bytes as the
  model has weights (a batch-1 decode step must read every weight once), by torch.mv (MKL) and by the
  native kernel's own mat-vec on its own threads; the floor is the faster of the two in each round
  (the kernel's is ~2x faster than torch.mv here: a floor measured by torch.mv alone would be
  inflated, and a step could come out "below the floor");
- prefill throughput, and the per-token latency after a simulated hour-long session (100k+
  positions slid through the ring) against a fresh one;
- the machine's own tail (CPU), two references sampled like the steps: a fixed amount of work as long
  as a decode step (sha256 over an L2-resident buffer, one core), and the floor's mat-vec itself (the
  model's weight bytes streamed from L3 by the kernel's threads); their p99/p50 is what interruptions
  and neighbours alone do to an operation that long (on the 2-vCPU VM every timer tick costs 20-100 us,
  on both vCPUs at once, and the L3 is shared with other tenants);
- a feed of a few tokens (a played note, an answer's prefix): the native kernel's batched feed against
  TorchScript's prefill of the same tokens, at ctx 1024 (CPU, native kernel only);
- the ratios.

Every measurement is sampled `--tokens` times in each of `--repeats` rounds, round-robin, so that a
machine whose speed drifts (a shared VM: its neighbours come and go) drifts under all of them alike.
The table shows the median over rounds of each round's p50 (p99) and the spread (min..max of the
rounds' p50); a ratio is the median over rounds of that round's ratio. Each timed step runs the same
work: decode at a fixed context, then an untimed rollback (or cache crop for GPT-2) so the context
stays the same for every sample.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable

from engine.errors import SidemanError
from engine.music.vocab import DEFAULT_VOCAB

# torch and the model are imported inside the functions: the CLI builds its parser from this module,
# and commands that never touch a model (`sideman ports`) must not import torch.

log = logging.getLogger(__name__)

CONTEXTS = (256, 1024)
SLIDE_POSITIONS = 100_000  # about an hour at ~28 tokens/s
RECOMPUTE_EVERY = 4  # rounds between full-recompute (and prefill) measurements
FEED_TOKENS = 8  # a played chord or an answer's prefix: what the daemon feeds between steps


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device, threads: int) -> str:
    import torch

    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_name()}, {threads} threads of {os.cpu_count()} cores"


class Timer:
    """Per-call latency samples in ms; CUDA work is synchronized inside the timed region."""

    def __init__(self, device) -> None:
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def samples(self, step: Callable[[], object], n: int, warmup: int, after: Callable[[], object] | None = None) -> list[float]:
        for _ in range(warmup):
            step()
            if after is not None:
                after()
        self.sync()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            step()
            self.sync()
            out.append((time.perf_counter() - t0) * 1e3)
            if after is not None:
                after()
        return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


DEFAULT_MODEL = str(Path(__file__).resolve().parents[2] / "models" / "continuation.pt")  # the shipped model


def default_config(model_path: str | None):
    """The architecture of the shipped default model (its card), or ModelConfig's defaults without one."""
    from engine.model.modelfile import read_card
    from engine.train.model import ModelConfig

    if model_path and Path(model_path).exists():
        return ModelConfig.from_dict(read_card(model_path)["model"]), model_path
    return ModelConfig(vocab_size=DEFAULT_VOCAB.size), "ModelConfig defaults"


def build_model(device, cfg):
    """A model of the given size, random init, scripted as the runtime runs it (float32 CPU, half on CUDA)."""
    import torch

    from engine.train.model import TransformerLM, count_parameters

    torch.manual_seed(0)
    model = TransformerLM(cfg).eval()
    n_params = count_parameters(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.script(model)
    scripted = scripted.to(device)
    if device.type == "cuda":
        scripted = scripted.half()
    for p in scripted.parameters():
        p.requires_grad_(False)
    return scripted, cfg, n_params


def fill(module, ctx: int, start: int = 0) -> None:
    """Prefill `ctx` random tokens at positions start.. (chunks of max_rollback)."""
    import torch

    g = torch.Generator().manual_seed(ctx)
    toks = torch.randint(0, DEFAULT_VOCAB.size, (1, ctx), generator=g).to(module.wte.weight.device)
    chunk = int(module.max_rollback)
    for i in range(0, ctx, chunk):
        module.prefill(toks[:, i:i + chunk], start + i)


def hf_gpt2(cfg, device):
    import torch

    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError:
        return None
    torch.manual_seed(0)
    conf = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.slots, n_embd=cfg.d_model, n_layer=cfg.n_layers,
                      n_head=cfg.n_heads, n_inner=cfg.d_ff, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(conf).eval().to(device)
    return model.half() if device.type == "cuda" else model


def native_decoders(dev, modules, threads: int) -> list:
    """One native decoder per module (bound to its cache), or [] when the kernel cannot run here."""
    if dev.type != "cpu":
        return []
    from engine.model.native.kernel import NativeDecoder, NativeKernelUnavailable

    try:
        return [NativeDecoder(m, threads=threads) for m in modules]
    except NativeKernelUnavailable as exc:
        log.warning("native decode kernel unavailable (%s): measuring the TorchScript step only", exc)
        return []


def fixed_work_like(timer: Timer, step: Callable[[], object], after: Callable[[], object] | None = None
                    ) -> Callable[[], object]:
    """A fixed amount of plain work (sha256 over a buffer that stays in L2, one core) that takes about as
    long as `step` does now: sampled beside the steps, its p99/p50 is the machine's own tail for an
    operation of that length (what interrupts and preemption alone do), not the code's."""
    import hashlib

    target_ms = statistics.median(timer.samples(step, 101, 20, after))
    probe = bytes(64 * 1024)
    per_byte_ms = statistics.median(timer.samples(lambda: hashlib.sha256(probe).digest(), 101, 5)) / len(probe)
    buf = bytes(max(4096, min(int(target_ms / per_byte_ms), 768 * 1024)))  # L2 is 1 MB per core here
    return lambda: hashlib.sha256(buf).digest()


def run_benchmark(device: str = "cpu", tokens: int = 200, threads: int = 2, repeats: int = 20,
                  slide_positions: int = SLIDE_POSITIONS, model_path: str | None = DEFAULT_MODEL) -> dict:
    """Every measurement sampled in each of `repeats` rounds, round-robin, so that a machine whose speed
    drifts (a shared VM) drifts under all of them alike; a ratio is the median of its per-round ratios."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SidemanError("--device cuda: torch sees no CUDA GPU here; run with --device cpu")
    if dev.type == "cpu":
        torch.set_num_threads(threads)
    timer = Timer(dev)
    top = CONTEXTS[-1]  # the headline context
    cfg, cfg_source = default_config(model_path)
    module, cfg, n_params = build_model(dev, cfg)
    gpt2 = hf_gpt2(cfg, dev)
    floor_w = torch.randn(max(1, n_params // 1024), 1024, device=dev)  # as many fp32 bytes as the weights
    floor_x = torch.randn(1024, device=dev)  # torch.mv: w (rows, 1024) @ x
    floor_xt = torch.randn(floor_w.shape[0], device=dev)  # the kernel's: xt @ w, the model's (in, out) layout
    recompute_reps = 2
    rounds: list[dict[str, list[float]]] = []

    with torch.inference_mode():
        # one session per context, filled once; every timed step decodes the same position again
        # (decode, then an untimed rollback), so the context stays the same for every sample
        fresh = {ctx: build_model(dev, cfg)[0] for ctx in CONTEXTS}
        for ctx, m in fresh.items():
            m.reset()
            fill(m, ctx)
        # the slid session: every slot of the ring overwritten ~80 times, positions past 100k,
        # a full window behind every token, as at ctx 1024. Its "fresh" twin is the same module with the
        # cache as it was at ctx 1024 (copied back in place, untimed): the same weights and cache memory,
        # so the ratio sees only the slide (two modules' memory layouts differ by up to ~15 % here)
        long_session = build_model(dev, cfg)[0]
        long_session.reset()
        caches = [b for name, b in long_session.named_buffers() if name.endswith(".kv")]
        t0 = time.perf_counter()
        fill(long_session, top)
        timer.sync()
        slide_prefill_s = time.perf_counter() - t0
        at_top = [c.clone() for c in caches]
        t0 = time.perf_counter()
        fill(long_session, slide_positions - top, start=top)
        timer.sync()
        slide_prefill_s += time.perf_counter() - t0
        at_slid = [c.clone() for c in caches]

        def restore(snapshot):
            for c, saved in zip(caches, snapshot):
                c.copy_(saved)

        slid_pos = slide_positions
        if int(long_session.origin) != 0 or slid_pos < cfg.window:
            raise SidemanError("the slid session must attend a full window")
        kernels = native_decoders(dev, [*fresh.values(), long_session], threads)
        k_top, k_slid = (kernels[len(CONTEXTS) - 1], kernels[-1]) if kernels else (None, None)
        fixed_work = None
        if dev.type == "cpu":
            step = (lambda: k_top.step(7, top)) if kernels else (lambda: fresh[top].decode(7, top))
            fixed_work = fixed_work_like(timer, step, None if kernels else (lambda: fresh[top].rollback(top)))
        seqs = {ctx: torch.randint(0, cfg.vocab_size, (1, ctx + 1), device=dev) for ctx in CONTEXTS}
        hf_state = {}
        if gpt2 is not None:
            for ctx in CONTEXTS:  # GPT-2's cache of the context; each timed step is cropped off again
                hf_state[ctx] = gpt2(input_ids=seqs[ctx][:, :ctx], use_cache=True).past_key_values

        for rep in range(repeats):
            log.info("round %d/%d", rep + 1, repeats)
            r: dict[str, list[float]] = {}
            r["floor_torch_mv"] = timer.samples(lambda: torch.mv(floor_w, floor_x), tokens, 20)
            if kernels:
                k0 = kernels[0]
                r["floor_kernel_mv"] = timer.samples(lambda: k0.matvec(floor_w, floor_xt), tokens, 20)
            r["floor"] = min((r[k] for k in ("floor_torch_mv", "floor_kernel_mv") if k in r), key=lambda xs: pct(xs, 0.5))
            if fixed_work is not None:
                r["fixed_work"] = timer.samples(fixed_work, tokens, 20)
            for i, ctx in enumerate(CONTEXTS):
                m = fresh[ctx]
                r[f"torchscript_{ctx}"] = timer.samples(lambda: m.decode(7, ctx), tokens, 20, lambda: m.rollback(ctx))
                if kernels:
                    k = kernels[i]
                    r[f"cached_{ctx}"] = timer.samples(lambda: k.step(7, ctx), tokens, 20)
                else:
                    r[f"cached_{ctx}"] = r[f"torchscript_{ctx}"]
            if kernels:  # a few tokens at once: the native feed (caller thread) against TorchScript's prefill
                m, feed = fresh[top], list(range(3, 3 + FEED_TOKENS))
                feed_t = torch.tensor([feed], device=dev)
                r["feed"] = timer.samples(lambda: k_top.feed(feed, top), tokens // 4, 5)
                r["feed_torchscript"] = timer.samples(lambda: m.prefill(feed_t, top), tokens // 4, 5,
                                                      lambda: m.rollback(top))
            for key, snapshot, pos in (("slid_fresh", at_top, top), ("slid", at_slid, slid_pos)):
                restore(snapshot)
                if kernels:
                    r[key] = timer.samples(lambda: k_slid.step(7, pos), tokens, 20)
                else:
                    r[key] = timer.samples(lambda: long_session.decode(7, pos), tokens, 20,
                                           lambda: long_session.rollback(pos))
            for ctx in CONTEXTS:
                if gpt2 is not None:
                    past, tok = hf_state[ctx], seqs[ctx][:, ctx:]
                    r[f"hf_{ctx}"] = timer.samples(lambda: gpt2(input_ids=tok, past_key_values=past, use_cache=True),
                                                   tokens, 5, lambda: past.crop(-1))
            if rep % RECOMPUTE_EVERY == 0:  # slow (100+ ms): every few rounds keeps each round short
                for ctx in CONTEXTS:
                    seq = seqs[ctx]
                    r[f"recompute_{ctx}"] = timer.samples(lambda: module(seq)[0, -1], recompute_reps, 1)
                module.reset()
                t0 = time.perf_counter()
                fill(module, cfg.window)
                timer.sync()
                r["prefill_s"] = [time.perf_counter() - t0]
            rounds.append(r)
        for k in kernels:
            k.close()

    def per_round(key: str, q: float = 0.5) -> list[float]:
        return [pct(r[key], q) for r in rounds if key in r]

    def med(key: str, q: float = 0.5) -> float:
        return statistics.median(per_round(key, q))

    def spread(key: str) -> list[float]:
        xs = per_round(key)
        return [round(min(xs), 4), round(max(xs), 4)]

    def ratio(num: str, den: str, qn: float = 0.5, qd: float = 0.5) -> float:
        both = [r for r in rounds if num in r and den in r]
        return statistics.median(pct(r[num], qn) / pct(r[den], qd) for r in both)

    res: dict = {
        "device": device_name(dev, threads),
        "note": "random-init weights: a SPEED benchmark only",
        "model": {**cfg.to_dict(), "parameters": n_params, "weight_mb_fp32": round(n_params * 4 / 1e6, 2),
                  "architecture_from": cfg_source},
        "tokens_per_measurement": tokens,
        "repeats": repeats,
        "torch": torch.__version__,
        "kernel": "native" if kernels else "torchscript",
    }
    for ctx in CONTEXTS:
        res[f"cached_ms_p50_ctx{ctx}"] = round(med(f"cached_{ctx}"), 4)
        res[f"cached_ms_p99_ctx{ctx}"] = round(med(f"cached_{ctx}", 0.99), 4)
        res[f"cached_ms_p50_spread_ctx{ctx}"] = spread(f"cached_{ctx}")
        res[f"torchscript_ms_p50_ctx{ctx}"] = round(med(f"torchscript_{ctx}"), 4)
        res[f"torchscript_ms_p99_ctx{ctx}"] = round(med(f"torchscript_{ctx}", 0.99), 4)
        res[f"recompute_ms_p50_ctx{ctx}"] = round(med(f"recompute_{ctx}"), 3)
        if gpt2 is not None:
            res[f"hf_gpt2_ms_p50_ctx{ctx}"] = round(med(f"hf_{ctx}"), 4)
            res[f"hf_gpt2_ms_p50_spread_ctx{ctx}"] = spread(f"hf_{ctx}")
    res["cached_ms_p50"] = res[f"cached_ms_p50_ctx{top}"]  # the headline: a full window, a long session's steady state
    res["cached_ms_p99"] = res[f"cached_ms_p99_ctx{top}"]
    res["hf_gpt2_ms_p50"] = res.get(f"hf_gpt2_ms_p50_ctx{top}")
    res["floor_ms"] = round(med("floor"), 4)
    res["floor_ms_spread"] = spread("floor")
    res["floor_ms_p99"] = round(med("floor", 0.99), 4)
    res["floor_torch_mv_ms"] = round(med("floor_torch_mv"), 4)
    res["floor_kernel_mv_ms"] = round(med("floor_kernel_mv"), 4) if kernels else None
    if any("fixed_work" in r for r in rounds):
        res["fixed_work_ms_p50"] = round(med("fixed_work"), 4)
        res["fixed_work_ms_p99"] = round(med("fixed_work", 0.99), 4)
    if kernels:
        res[f"feed_ms_p50_n{FEED_TOKENS}"] = round(med("feed"), 4)
        res[f"feed_torchscript_ms_p50_n{FEED_TOKENS}"] = round(med("feed_torchscript"), 4)
    res["slid_fresh_ms_p50"] = round(med("slid_fresh"), 4)
    res["slid_ms_p50"] = round(med("slid"), 4)
    res["slid_ms_p99"] = round(med("slid", 0.99), 4)
    res["slid_position"] = slid_pos
    res["slide_prefill_tokens_per_s"] = round(slide_positions / slide_prefill_s)
    res["prefill_tokens_per_s"] = round(cfg.window / statistics.median(r["prefill_s"][0] for r in rounds
                                                                        if "prefill_s" in r))
    res["ratios"] = {
        "recompute_over_cached_ctx1024": round(ratio(f"recompute_{top}", f"cached_{top}"), 1),
        "cached_over_hf_gpt2": round(ratio(f"cached_{top}", f"hf_{top}"), 3) if gpt2 is not None else None,
        "cached_over_hf_gpt2_ctx256": round(ratio("cached_256", "hf_256"), 3) if gpt2 is not None else None,
        "cached_over_floor": round(ratio(f"cached_{top}", "floor"), 2),
        "cached_ctx256_over_floor": round(ratio("cached_256", "floor"), 2),
        "p99_over_p50": round(ratio(f"cached_{top}", f"cached_{top}", 0.99, 0.5), 2),
        "fixed_work_p99_over_p50": (round(ratio("fixed_work", "fixed_work", 0.99, 0.5), 2)
                                    if "fixed_work_ms_p50" in res else None),
        "floor_p99_over_p50": round(ratio("floor", "floor", 0.99, 0.5), 2),
        f"feed_torchscript_over_native_n{FEED_TOKENS}": (round(ratio("feed_torchscript", "feed"), 2)
                                                         if kernels else None),
        "slid_over_fresh": round(ratio("slid", "slid_fresh"), 3),
        "torchscript_over_cached_ctx1024": round(ratio(f"torchscript_{top}", f"cached_{top}"), 2),
        "torchscript_over_floor": round(ratio(f"torchscript_{top}", "floor"), 2),
    }
    ra = res["ratios"]
    res["targets"] = {
        "recompute_over_cached_ctx1024 >= 50": ra["recompute_over_cached_ctx1024"] >= 50,
        "cached_over_hf_gpt2 <= 0.25": None if gpt2 is None else ra["cached_over_hf_gpt2"] <= 0.25,
        "cached_over_floor <= 1.5": ra["cached_over_floor"] <= 1.5,
        "cached_ctx256_over_floor <= 1.5": ra["cached_ctx256_over_floor"] <= 1.5,
        "p99_over_p50 <= 1.5": ra["p99_over_p50"] <= 1.5,
        "slid_over_fresh within 10 %": abs(ra["slid_over_fresh"] - 1.0) <= 0.1,
    }
    return res


def format_table(r: dict) -> str:
    lines = [
        f"sideman decode benchmark -- {r['device']}, torch {r['torch']}",
        f"model ({r['model']['architecture_from']}): d_model {r['model']['d_model']}, {r['model']['n_layers']} layers, "
        f"{r['model']['n_heads']} heads / {r['model']['n_kv_heads'] or r['model']['n_heads']} kv heads, "
        f"window {r['model']['window']}, {r['model']['parameters']:,} parameters ({r['model']['weight_mb_fp32']} MB fp32); "
        f"{r['note']}",
        f"{r['tokens_per_measurement']} timed steps per measurement in each of {r['repeats']} round-robin rounds "
        "(median over rounds; spread = min..max of the rounds' p50; ratios = median of per-round ratios)",
        "",
        f"{'measurement':44s} {'p50 ms':>9s} {'p99 ms':>9s}  spread",
    ]

    def row(name, p50, p99=None, spread=None):
        p99s = f"{p99:9.3f}" if p99 is not None else " " * 9
        sp = f"  {spread[0]:.3f}..{spread[1]:.3f}" if spread else ""
        lines.append(f"{name:44s} {p50:9.3f} {p99s}{sp}")

    for ctx in CONTEXTS:
        row(f"sideman, KV cache, ctx {ctx} ({r['kernel']})", r[f"cached_ms_p50_ctx{ctx}"], r[f"cached_ms_p99_ctx{ctx}"],
            r[f"cached_ms_p50_spread_ctx{ctx}"])
    if r["kernel"] == "native":
        for ctx in CONTEXTS:
            row(f"sideman, KV cache, ctx {ctx} (torchscript)", r[f"torchscript_ms_p50_ctx{ctx}"],
                r[f"torchscript_ms_p99_ctx{ctx}"])
    row(f"sideman, after {r['slid_position']:,} positions (slid)", r["slid_ms_p50"], r["slid_ms_p99"])
    row(f"  the same module at ctx {CONTEXTS[-1]} (fresh)", r["slid_fresh_ms_p50"])
    if "fixed_work_ms_p50" in r:
        row("fixed work as long as a step (1 core)", r["fixed_work_ms_p50"], r["fixed_work_ms_p99"])
    if f"feed_ms_p50_n{FEED_TOKENS}" in r:
        row(f"feed {FEED_TOKENS} tokens at ctx {CONTEXTS[-1]} (native)", r[f"feed_ms_p50_n{FEED_TOKENS}"])
        row(f"feed {FEED_TOKENS} tokens at ctx {CONTEXTS[-1]} (torchscript prefill)",
            r[f"feed_torchscript_ms_p50_n{FEED_TOKENS}"])
    for ctx in CONTEXTS:
        row(f"sideman, full recompute, ctx {ctx}", r[f"recompute_ms_p50_ctx{ctx}"])
    for ctx in CONTEXTS:
        if f"hf_gpt2_ms_p50_ctx{ctx}" in r:
            row(f"HF GPT2LMHeadModel, KV cache, ctx {ctx}", r[f"hf_gpt2_ms_p50_ctx{ctx}"], None,
                r[f"hf_gpt2_ms_p50_spread_ctx{ctx}"])
    if r["hf_gpt2_ms_p50"] is None:
        lines.append("HF GPT-2: not measured (pip install 'sideman[bench]' for transformers)")
    row("weight-streaming floor (fp32 mat-vec, faster)", r["floor_ms"], r["floor_ms_p99"], r["floor_ms_spread"])
    row("  by torch.mv", r["floor_torch_mv_ms"])
    if r["floor_kernel_mv_ms"] is not None:
        row("  by the native kernel's mat-vec", r["floor_kernel_mv_ms"])
    lines.append(f"prefill: {r['prefill_tokens_per_s']:,} tokens/s (a {r['model']['window']}-token window in "
                 f"chunks of {r['model']['max_rollback']}); {r['slide_prefill_tokens_per_s']:,} tokens/s over the "
                 f"{r['slid_position']:,}-position slide")
    lines.append("")
    lines.append("ratios (headline: ctx 1024)")
    for k, v in r["ratios"].items():
        lines.append(f"  {k:34s} {v}")
    lines.append("targets")
    for k, v in r["targets"].items():
        note = ""
        if k.startswith("p99_over_p50") and r["ratios"].get("fixed_work_p99_over_p50") is not None:
            note = (f"  (step {r['ratios']['p99_over_p50']}; the machine's own: fixed work as long "
                    f"{r['ratios']['fixed_work_p99_over_p50']}, the floor's mat-vec {r['ratios']['floor_p99_over_p50']})")
        lines.append(f"  {k:34s} {'n/a' if v is None else ('met' if v else 'NOT met')}{note}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where to run (default cpu)")
    parser.add_argument("--tokens", type=int, default=200,
                        help="timed steps per measurement and round (default 200: a p99 needs more than 50)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="rounds, each sampling every measurement (default 20)")
    parser.add_argument("--slide", type=int, default=SLIDE_POSITIONS, help="positions of the simulated long session")
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="measure a model of this file's architecture (random weights; default: the shipped model)")


def main(args: argparse.Namespace) -> int:
    if args.tokens < 10 or args.repeats < 1 or args.threads < 1 or args.slide < 2048:
        raise SidemanError("--tokens >= 10, --repeats >= 1, --threads >= 1 and --slide >= 2048 are required")
    res = run_benchmark(args.device, args.tokens, args.threads, args.repeats, args.slide, args.model)
    print(json.dumps(res) if args.json else format_table(res))
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m engine.bench.decode", description=__doc__.splitlines()[0])
    add_arguments(p)
    raise SystemExit(main(p.parse_args()))
