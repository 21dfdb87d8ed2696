"""Training: a real tiny run from scratch, exact resume, DDP on 2 CPU processes, export and reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from engine.train.config import PRESETS, load_config
from engine.train.train import lr_at, train

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return replace(PRESETS["tiny"], out_dir=str(tmp_path_factory.mktemp("runs")))


def test_tiny_run_learns_and_exports(tiny):
    summary = train(tiny, resume=False, progress=False)
    log = [json.loads(l) for l in open(os.path.join(tiny.out_dir, "tiny", "log.jsonl"))]
    vals = [r["val_loss"] for r in log if "val_loss" in r]
    assert len(vals) == 3 and vals[-1] < vals[0] - 0.2  # it learns something real in 30 steps
    assert os.path.getsize(os.path.join(tiny.out_dir, "tiny", "curves.png")) > 1000
    # the exported file loads with torch.jit.load alone, with its card
    files = {"card.json": ""}
    module = torch.jit.load(summary["model"], _extra_files=files)
    card = json.loads(files["card.json"])
    assert card["training"]["steps"] == 30 and card["metrics"]["val_loss"] == pytest.approx(min(vals), abs=1e-3)
    logits = module.forward(torch.tensor([[1, 5, 12, 4]]))
    assert logits.shape == (1, 4, card["model"]["vocab_size"])


def test_resume_is_exact(tiny, tmp_path):
    straight = replace(tiny, name="straight", out_dir=str(tmp_path), max_steps=20, eval_every=100,
                       checkpoint_every=10)
    train(straight, resume=False, progress=False, export=False)
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    train(replace(straight, name="halted"), resume=False, progress=False, halt_at=10)
    os.rename(tmp_path / "halted", tmp_path / "resumed")
    train(replace(straight, name="resumed"), resume=True, progress=False, export=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_ddp_two_cpu_processes_stay_in_sync(tiny, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29513",
           "-m", "engine.train.train", "--config", "tiny", "--no-progress", "--fresh",
           "--set", f"out_dir={tmp_path}", "--set", "max_steps=6", "--set", "eval_every=3",
           "--set", "name=ddp"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout[out.stdout.index("{"):])
    assert summary["processes"] == 2 and summary["replicas_in_sync"] is True and summary["steps"] == 6


def test_learning_rate_warms_up_then_decays():
    cfg = load_config("continuation")
    lrs = [lr_at(s, cfg) for s in range(cfg.max_steps)]
    assert lrs[0] < lrs[cfg.warmup_steps - 1] == pytest.approx(cfg.lr)
    assert lrs[-1] == pytest.approx(cfg.lr * cfg.min_lr_ratio, rel=0.01)
    assert all(a >= b for a, b in zip(lrs[cfg.warmup_steps:], lrs[cfg.warmup_steps + 1:]))


def test_bad_config_names_the_field(tmp_path):
    from engine.errors import SidemanError

    bad = tmp_path / "bad.toml"
    bad.write_text('base = "tiny"\nlearning_rate = 3\n')
    with pytest.raises(SidemanError, match="learning_rate"):
        load_config(str(bad))


def test_a_run_with_human_playing_trains_on_and_reports_as_played_windows(tiny, tmp_path):
    """Real corpus pieces (the tiny cache), half the windows with the player's part as played, phrases of
    1-8 bars; validation reports the clean and the as-played loss."""
    import numpy as np

    from engine.music.vocab import DEFAULT_VOCAB as V
    from engine.train.data import load_token_data

    cfg = replace(tiny, name="human", out_dir=str(tmp_path), role_mapping="call_response_varied",
                  human_playing=0.5, human_variants=2, max_steps=10, eval_every=10)
    data = load_token_data(cfg)
    assert len(data.played_train) == len(data.train) and all(len(v) == 2 for v in data.played_train)
    assert len(data.played_val) == len(data.val)
    assert any(not np.array_equal(a, b) for a, b in zip(data.played_val, data.val))  # played, not copied
    windows = data.train_windows(cfg.seq_len)[:64]
    fixed = replace(cfg, transpose=(0, 0))  # no transposition: a window differs only if it is played

    def rows(human: float, seed: int):
        x, _ = data.batch(windows, np.random.default_rng(seed), replace(fixed, human_playing=human))
        x[:, 2] = 0  # the style token (dropped out at random) is not what is compared
        return x

    assert (rows(0.0, 0) == rows(0.0, 1)).all()  # clean windows are the same whatever the draws
    played = (rows(1.0, 0) != rows(0.0, 0)).any(dim=1)
    assert played.float().mean() > 0.9  # as played, (nearly) every window differs from the score
    mixed = (rows(0.5, 0) != rows(0.0, 0)).any(dim=1).float().mean()
    assert 0.2 < mixed < 0.8  # about half
    assert int((rows(1.0, 0) == V.turn).sum()) > 0
    train(cfg, resume=False, progress=False)
    log = [json.loads(l) for l in open(os.path.join(tmp_path, "human", "log.jsonl"))]
    evals = [r for r in log if "val_loss" in r]
    assert evals and all(np.isfinite(r["val_played_loss"]) for r in evals)


def test_fgsm_perturbs_the_embeddings_within_its_ball_and_raises_the_loss(tiny):
    """The adversarial arm's perturbation: one signed-gradient step of epsilon x the embeddings' RMS."""
    from engine.train.model import TransformerLM
    from engine.train.train import adversarial_delta, lm_loss

    torch.manual_seed(0)
    cfg = replace(tiny, adversarial="fgsm", adv_epsilon=0.05)
    model = TransformerLM(model_config(cfg)).eval()
    x = torch.randint(4, 60, (4, 48))
    y = x.roll(-1, 1)
    delta = adversarial_delta(model, x, y, cfg)  # (B, T, C)
    emb = model.embed(x).detach()
    eps = cfg.adv_epsilon * float(emb.pow(2).mean().sqrt())
    assert delta.shape == emb.shape and float(delta.abs().max()) <= eps * (1 + 1e-5)
    assert float(delta.abs().min()) == pytest.approx(eps, rel=1e-4)  # FGSM: every coordinate at the edge
    with torch.no_grad():
        clean = float(lm_loss(model.forward_embeddings(emb), y))
        attacked = float(lm_loss(model.forward_embeddings(emb + delta), y))
        noise = float(lm_loss(model.forward_embeddings(emb + delta[torch.randperm(4)].roll(7, 1)), y))
    assert attacked > clean and attacked > noise  # it goes uphill, which a same-sized shuffle does not


def test_a_fine_tuning_run_starts_from_the_file_it_names_and_trains_adversarially(tiny, tmp_path):
    """`init_from` + FGSM, as the full-size comparison's adversarial arm: step 0 is the file's weights."""
    from engine.train.model import TransformerLM
    from engine.train.train import init_weights

    base = train(replace(tiny, name="base", out_dir=str(tmp_path), max_steps=10, eval_every=10), resume=False,
                 progress=False)
    fresh = TransformerLM(model_config(tiny))
    init_weights(fresh, base["model"])
    scripted = torch.jit.load(base["model"]).state_dict()
    assert all(torch.equal(v, scripted[k]) for k, v in fresh.state_dict().items())
    cfg = replace(tiny, name="fgsm", out_dir=str(tmp_path), max_steps=10, eval_every=5, adversarial="fgsm",
                  adv_epsilon=0.03, init_from=base["model"], warmup_steps=2)
    train(cfg, resume=False, progress=False)
    log = [json.loads(l) for l in open(tmp_path / "fgsm" / "log.jsonl")]
    base_log = [json.loads(l) for l in open(tmp_path / "base" / "log.jsonl")]
    first = [r["train_loss"] for r in log if "train_loss" in r][0]
    base_first = [r["train_loss"] for r in base_log if "train_loss" in r][0]
    assert first < base_first - 0.2  # it began where the base run ended, not from random weights


def model_config(cfg):
    from engine.music.vocab import DEFAULT_VOCAB
    from engine.train.model import ModelConfig

    return ModelConfig(vocab_size=DEFAULT_VOCAB.size, **cfg.model_fields())
