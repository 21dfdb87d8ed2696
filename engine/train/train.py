"""The training loop: AdamW, warm-up then cosine decay, clipping, AMP on GPU, exact resume, early
stopping, adversarial training on embeddings, DDP under torchrun (gloo on CPU, NCCL on GPU).

Run it with `sideman train --config NAME`, or on several processes with
`torchrun --nproc_per_node 2 -m engine.train.train --config NAME`.
Outputs go to runs/NAME/: checkpoint.pt (resumable), log.jsonl, curves.png, and the exported
TorchScript model NAME.pt with its card NAME.card.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler

from engine.corpus.piece import task_of
from engine.train.arguments import add_arguments
from engine.train.config import TrainConfig, load_config
from engine.train.data import TokenData, load_token_data
from engine.train.model import ModelConfig, TransformerLM, count_parameters
from engine.music.vocab import DEFAULT_VOCAB

log = logging.getLogger("sideman.train")


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    if "RANK" not in os.environ or dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else Dist()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    d = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if torch.cuda.is_available():
        torch.cuda.set_device(d.local_rank)
    return d


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to lr * min_lr_ratio at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per token (nats), PAD targets ignored. logits (B, T, V), targets (B, T)."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), targets.reshape(-1),
                           ignore_index=DEFAULT_VOCAB.pad)


def adversarial_delta(model: TransformerLM, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """A perturbation of x's embeddings within an L-inf ball that raises the loss.

    FGSM: one signed-gradient step of size epsilon; PGD: `adv_steps` steps from a random start.
    Epsilon is relative to the embeddings' RMS. Only the perturbation gets gradients here.
    """
    emb = model.embed(x).detach()  # (B, T, C)
    eps = cfg.adv_epsilon * emb.pow(2).mean().sqrt()
    steps = 1 if cfg.adversarial == "fgsm" else cfg.adv_steps
    alpha = eps if cfg.adversarial == "fgsm" else 2.5 * eps / steps
    delta = torch.zeros_like(emb) if cfg.adversarial == "fgsm" else (torch.rand_like(emb) * 2 - 1) * eps
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = lm_loss(model.forward_embeddings(emb + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
    return delta.detach()


class _Forward(torch.nn.Module):
    """What DDP wraps: one call gives the clean logits and, with `delta`, the perturbed ones too
    (through the live embedding table, so it learns from both)."""

    def __init__(self, model: TransformerLM) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor, delta: torch.Tensor | None = None):
        clean = self.model(tokens)  # (B, T, V)
        if delta is None:
            return clean, None
        return clean, self.model.forward_embeddings(self.model.embed(tokens) + delta)  # (B, T, V)


@torch.no_grad()
def evaluate(model: TransformerLM, data: TokenData, cfg: TrainConfig, device: torch.device,
             batches: int | None = None, split: str = "val") -> float:
    model.eval()
    losses = []
    for x, y in data.val_batches(cfg.batch_size, cfg.seq_len, batches or cfg.eval_batches, split):
        logits = model(x.to(device))
        losses.append(lm_loss(logits, y.to(device)).item())
    model.train()
    return float(np.mean(losses)) if losses else float("nan")


def save_checkpoint(path: Path, model, opt, scaler, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({
        "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None, "state": state,
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a broken checkpoint


def plot_curves(log_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    tr = [(r["step"], r["train_loss"]) for r in rows if "train_loss" in r]
    va = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if tr:
        ax.plot(*zip(*tr), label="train", alpha=0.7)
    if va:
        ax.plot(*zip(*va), label="validation", marker="o")
    ax.set_xlabel("step")
    ax.set_ylabel("loss per token (nats)")
    ax.set_title(log_path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def init_weights(model: TransformerLM, path: str) -> None:
    """The weights of an exported model (TorchScript) into `model`; the shapes must match."""
    import warnings

    file = Path(path) if Path(path).is_absolute() else Path(__file__).resolve().parents[2] / path
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        scripted = torch.jit.load(str(file), map_location="cpu")
    state = {k: v for k, v in scripted.state_dict().items() if k in model.state_dict()}
    missing = [k for k in model.state_dict() if k not in state]
    if missing:
        raise ValueError(f"{file}: no weights for {', '.join(missing[:5])}: not a model of this config's shapes")
    model.load_state_dict(state, strict=False)


def train(cfg: TrainConfig, resume: bool = True, export: bool = True, progress: bool = True,
          halt_at: int | None = None) -> dict:
    """Train (or resume) a model; returns a summary dict. Safe under torchrun.

    `halt_at` stops after that step as an interruption would (checkpoint written, no export).
    """
    d = setup_distributed()
    device = torch.device(f"cuda:{d.local_rank}" if torch.cuda.is_available() else "cpu")
    out = Path(cfg.out_dir) / cfg.name
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    log_path = out / "log.jsonl"

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    data = load_token_data(cfg)
    model_cfg = ModelConfig(vocab_size=DEFAULT_VOCAB.size, **cfg.model_fields())
    model = TransformerLM(model_cfg).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    use_amp = device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if use_amp and amp_dtype == torch.float16 else None

    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "best_val": float("inf"), "bad_evals": 0,
             "tokens": 0, "wall": 0.0, "best_step": 0}
    if resume and ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if scaler is not None and ck["scaler"]:
            scaler.load_state_dict(ck["scaler"])
        state = ck["state"]
        torch.set_rng_state(ck["rng"]["torch"])
        np.random.set_state(ck["rng"]["numpy"])
        random.setstate(ck["rng"]["python"])
        if ck["rng"]["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        if d.main:
            log.info("resumed %s at step %d", ckpt_path, state["step"])
    else:
        if cfg.init_from:
            init_weights(model, cfg.init_from)
            if d.main:
                log.info("weights from %s (fine-tuning)", cfg.init_from)
        if d.main and log_path.exists():
            log_path.unlink()

    fwd = _Forward(model)
    ddp = DistributedDataParallel(fwd, device_ids=[d.local_rank] if device.type == "cuda" else None) \
        if d.world > 1 else fwd
    windows = data.train_windows(cfg.seq_len)
    sampler = DistributedSampler(windows, num_replicas=d.world, rank=d.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    per_rank_batch = max(1, cfg.batch_size // d.world)
    if d.main:
        log.info("model %d parameters; %d training windows of %d tokens; device %s; %d process(es)",
                 count_parameters(model), len(windows), cfg.seq_len, device, d.world)

    bar = None
    if progress and d.main:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=state["step"], unit="step", dynamic_ncols=True)
    t_last = time.monotonic()
    stop = False
    while state["step"] < cfg.max_steps and not stop:
        sampler.set_epoch(state["epoch"])
        order = list(iter(sampler))
        n_batches = len(order) // per_rank_batch
        while state["batch_in_epoch"] < n_batches and state["step"] < cfg.max_steps:
            b = state["batch_in_epoch"]
            idx = order[b * per_rank_batch:(b + 1) * per_rank_batch]
            rng = np.random.default_rng((cfg.seed, state["epoch"], b, d.rank))
            x, y = data.batch([windows[i] for i in idx], rng, cfg)
            x, y = x.to(device), y.to(device)
            for group in opt.param_groups:
                group["lr"] = lr_at(state["step"], cfg)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                delta = adversarial_delta(model, x, y, cfg) if cfg.adversarial != "none" else None
                clean, perturbed = ddp(x, delta)
                loss = lm_loss(clean, y)
                total = loss if perturbed is None else \
                    (1 - cfg.adv_weight) * loss + cfg.adv_weight * lm_loss(perturbed, y)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(total).backward()
                scaler.unscale_(opt)
            else:
                total.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            state["step"] += 1
            state["batch_in_epoch"] += 1
            ntok = int((y != DEFAULT_VOCAB.pad).sum()) * d.world
            state["tokens"] += ntok
            now = time.monotonic()
            state["wall"] += now - t_last
            tok_s = ntok / max(now - t_last, 1e-9)
            t_last = now
            if d.main:
                with log_path.open("a") as f:
                    f.write(json.dumps({"step": state["step"], "train_loss": round(loss.item(), 5),
                                        "lr": opt.param_groups[0]["lr"], "grad_norm": round(float(gnorm), 4),
                                        "tokens_per_s": round(tok_s), "wall": round(state["wall"], 2)}) + "\n")
                if bar is not None:
                    bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{tok_s:,.0f}", refresh=False)
                    bar.update(1)
            if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
                val = evaluate(model, data, cfg, device)
                if d.world > 1:  # every rank evaluates the same batches: the same value, kept in step
                    t = torch.tensor([val], device=device)
                    dist.all_reduce(t)
                    val = t.item() / d.world
                improved = val < state["best_val"] - 1e-4
                if improved:
                    state["best_val"], state["bad_evals"], state["best_step"] = val, 0, state["step"]
                    if d.main:
                        torch.save(model.state_dict(), out / "best.pt")
                else:
                    state["bad_evals"] += 1
                if d.main:
                    row = {"step": state["step"], "val_loss": round(val, 5)}
                    if data.played_val:  # the same model on the validation pieces as played
                        row["val_played_loss"] = round(evaluate(model, data, cfg, device, split="val_played"), 5)
                    with log_path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    log.info("step %d val loss %.4f (best %.4f at %d)%s", state["step"], val, state["best_val"],
                             state["best_step"], f"; as played {row['val_played_loss']:.4f}"
                             if "val_played_loss" in row else "")
                if state["bad_evals"] >= cfg.patience:
                    if d.main:
                        log.info("early stop: %d evaluations without improvement", cfg.patience)
                    stop = True
                    break
            if d.main and state["step"] % cfg.checkpoint_every == 0:
                save_checkpoint(ckpt_path, model, opt, scaler, state)
            if halt_at is not None and state["step"] >= halt_at:
                stop = True
                export = False
                break
        if state["batch_in_epoch"] >= n_batches:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    if bar is not None:
        bar.close()
    summary = {"steps": state["step"], "best_val_loss": state["best_val"], "best_step": state["best_step"],
               "tokens_seen": state["tokens"], "wall_s": round(state["wall"], 1), "epochs": state["epoch"],
               "processes": d.world}
    if d.main:
        save_checkpoint(ckpt_path, model, opt, scaler, state)
        plot_curves(log_path, out / "curves.png")
        if export and (out / "best.pt").exists():
            summary["model"] = str(export_best(cfg, model_cfg, out, summary, data, device))
    if d.world > 1:  # DDP keeps replicas identical: check it, and say so in the summary
        checksum = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(device)
        gathered = [torch.zeros_like(checksum) for _ in range(d.world)]
        dist.all_gather(gathered, checksum)
        summary["replicas_in_sync"] = all(torch.equal(gathered[0], g) for g in gathered[1:])
        dist.barrier()
    return summary


def export_best(cfg: TrainConfig, model_cfg: ModelConfig, out: Path, summary: dict, data: TokenData,
                device: torch.device) -> Path:
    from engine.train.export import export_model

    model = TransformerLM(model_cfg)
    model.load_state_dict(torch.load(out / "best.pt", map_location="cpu"))
    model.eval()
    hw = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    card = {
        "name": cfg.name,
        "task": task_of(cfg.role_mapping),  # what the model's streams are for: the modes that can use it
        "training": {"data": data.describe(), "config": cfg.to_dict(), "steps": summary["steps"],
                     "best_step": summary["best_step"], "tokens_seen": summary["tokens_seen"],
                     "wall_time_s": summary["wall_s"], "hardware": hw, "processes": summary["processes"],
                     "torch": torch.__version__},
        "metrics": {"val_loss": round(summary["best_val_loss"], 4)},
    }
    path = out / f"{cfg.name}.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        export_model(model, path, card)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="train a sideman model (also under torchrun)")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run(args)


def run(args) -> int:
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = load_config(args.config, overrides)
    summary = train(cfg, resume=not args.fresh, progress=not args.no_progress)
    if setup_distributed().main:
        print(json.dumps(summary, indent=2))
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
