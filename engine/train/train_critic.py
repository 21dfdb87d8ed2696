"""Retrain a restyle model's critic alone, on real phrases barred at random: `sideman train --config restyle-critic`.

The critic (a small encoder inside the restyle model, `engine.train.restyle_model`) hears a phrase's style:
the runtime asks it for the phrase's own style (the guidance's contrast, amount 0) and it picks the best of
the offline candidates. Trained with the model, on real phrases in their collections' meters, it learned the
bar lines as well as the notes (a chorale is 4/4, a Renaissance line 4/2) and on generated lines it agreed
with the independent classifier at a correlation of only 0.29. Here it goes on from the model's weights, on
real phrases only (never the classifier, never generated ones), each drawn phrase barred another way half
the time (its bars cut in two or three, or two or three joined: the same notes), so that what it hears is
the notes in time, as a listener does and as the player's clock bars them. The decoder and the encoder are
not touched; the model file is written again with the new critic and its card says so. `restyle-critic-gan`
also shows it phrases the model itself restyled, as a sixth class (the GAN's discriminator; measured, not
shipped: `docs/benchmarks.md`).

    sideman train --config restyle-critic     # models/restyle.pt -> runs/restyle-critic/restyle.pt (+ card)
    python -m engine.train.train_critic runs/restyle-critic/restyle.pt --eval eval.json   # -> models/restyle.pt
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from engine.corpus.phrases import PhraseSampler, corpus_phrases, style_corpus
from engine.errors import ModelError
from engine.model.modelfile import load_model
from engine.model.style_ngram import read_style_ngram
from engine.music.melody import Melody, encode_melody
from engine.music.styles import STYLE_NAMES
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.export import export_model
from engine.train.humanize import play_melody
from engine.train.restyle_model import RestyleLM
from engine.train.train_restyle import RestyleTrainConfig, eval_metrics, pad_batch, with_overrides
from engine.train.train_style_ngram import attach_style_ngram, carry_style_ngram

log = logging.getLogger("sideman.train.critic")
REPO = Path(__file__).resolve().parents[2]
CARD_KEYS = ("name", "kind", "task", "styles", "restyle", "training", "metrics", "critic", "picks", "back")  # what a file keeps


@dataclass(frozen=True)
class CriticConfig:
    name: str = "restyle-critic"
    model: str = "models/restyle.pt"  # whose critic is retrained (relative to the repository)
    # another restyle file whose critic this one starts from instead of the model's own (the critic is a
    # classifier of real phrases, apart from the encoder and the decoder: a critic retrained for one model
    # serves another of the same vocabulary and phrase length); with steps = 0 it is moved over as it is
    critic_from: str = ""
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    pool: int = 24000  # real train phrases drawn once (styles equally often), as played half the time
    played_share: float = 0.5
    rebar_share: float = 0.5  # phrases barred another way
    transpose: tuple[int, int] = (-5, 6)
    test_per_style: int = 120
    seed: int = 5
    data_limit: int = 0  # pieces per style (tiny runs for tests)
    threads: int = 2
    # the GAN part: phrases the model itself restyled (train phrases into the other styles, the live settings)
    # as a class of their own, "generated", beside the five real styles (a K+1 critic: the generated class's
    # logit is fixed at 0, so the file's five logits keep their shape and the runtime's softmax over them is
    # still the style of a real phrase). 0: real phrases only. Measured and not shipped (docs/benchmarks.md,
    # "Restyle: a critic trained against the model's own phrases"): read as P(real, target) its pick was
    # worse, read as the five styles no better than the shipped critic's.
    generated: int = 0
    generated_weight: float = 1.0


PRESETS = {
    "restyle-critic": CriticConfig(),
    # the shipped critic on, against the model's own restyled phrases as well
    "restyle-critic-gan": CriticConfig(name="restyle-critic-gan", steps=800, pool=12000, generated=3000, lr=2e-4),
    "tiny-restyle-critic": CriticConfig(name="tiny-restyle-critic", steps=6, batch_size=8, pool=64,
                                        test_per_style=4, data_limit=24, threads=1),
    "tiny-restyle-critic-gan": CriticConfig(name="tiny-restyle-critic-gan", steps=6, batch_size=8, pool=64,
                                            test_per_style=4, data_limit=24, threads=1, generated=6),
}


def with_generated_class(logits: torch.Tensor) -> torch.Tensor:
    """(B, S) style logits -> (B, S + 1): the generated class's logit, fixed at 0, appended last."""
    return torch.cat([logits, logits.new_zeros(logits.shape[0], 1)], dim=1)


def generated_phrases(path: Path, sampler: PhraseSampler, n: int, rng: np.random.Generator, cfg: CriticConfig,
                      max_len: int) -> list[list[int]]:
    """`n` phrases the model in `path` restyled: train phrases (transposed, as played half the time) into
    another style drawn at random, with the live mode's settings (one sample, guidance, register), written as
    the model wrote them (the target's bar lines), as the pick hears its candidates."""
    from engine.model.restyler import Restyler, RestyleSettings
    from engine.model.session import ModelSession

    restyler = Restyler(ModelSession(load_model(path, DEFAULT_VOCAB), device="cpu", threads=cfg.threads),
                        DEFAULT_VOCAB)
    lo, hi = cfg.transpose
    out: list[list[int]] = []
    while len(out) < n:
        m, style = sampler.draw()
        m = m.transposed(int(rng.integers(lo, hi + 1)))
        if rng.random() < cfg.played_share:
            m = play_melody(m, rng)
        target = int(rng.choice([s for s in range(len(STYLE_NAMES)) if s != style]))
        decode = restyler.begin(m, RestyleSettings(style=STYLE_NAMES[target]), seed=int(rng.integers(2**31)))
        decode.run()
        heard = Melody(decode.result().notes, decode.meter, decode.bars)
        if len(heard.notes):
            out.append(encode_melody(heard)[:max_len])
        if len(out) % 500 == 0 and out:
            log.info("generated %d of %d phrases", len(out), n)
    return out


def generated_share(model: RestyleLM, phrases: list[list[int]]) -> float:
    """The share of `phrases` the critic calls generated (a K+1 critic: P(generated) > 1/2)."""
    model.critic.eval()
    with torch.no_grad():
        return float(np.mean([float(model.critic(torch.tensor([t]))[0].logsumexp(0)) < 0.0 for t in phrases]))


def rebarred_at_random(m: Melody, rng: np.random.Generator, share: float) -> Melody:
    """The same notes with other bar lines (`share` of the time): each bar cut into 2 or 3 equal bars (of at
    least a beat and a half, on the 8th grid), or 2 or 3 bars joined into one."""
    if rng.random() < 1.0 - share:
        return m
    bar = m.bar_ticks()
    options = []
    for k in (2, 3):
        if bar % (24 * k) == 0 or (bar % (12 * k) == 0 and bar // k >= 36):
            options.append(("split", k))
        if m.bars % k == 0:
            options.append(("join", k))
    if not options:
        return m
    kind, k = options[int(rng.integers(len(options)))]
    ticks = bar // k if kind == "split" else bar * k
    meter = Meter(ticks // 24, 4) if ticks % 24 == 0 else Meter(ticks // 12, 8)
    return Melody(m.notes, meter, m.bars * k if kind == "split" else m.bars // k)


def load_restyle_model(path: Path) -> tuple[RestyleLM, dict]:
    """The eager model with the weights of a shipped TorchScript restyle file, and its card."""
    loaded = load_model(path, DEFAULT_VOCAB)  # the runtime's loader: its checks and its messages
    card = loaded.card
    if card.get("task") != "RESTYLE":
        raise ModelError(f"{path}: a {card.get('task', 'CONTINUE')} model; the critic belongs to a RESTYLE model")
    cfg = RestyleTrainConfig.from_dict(card["training"]["config"])
    model = RestyleLM(cfg.model_config(), cfg.restyle_config(), DEFAULT_VOCAB.pad)
    model.load_state_dict({k: v for k, v in loaded.module.state_dict().items() if k in model.state_dict()})
    model.eval()
    return model, card


def take_critic(model: RestyleLM, path: Path) -> None:
    """The critic of the restyle file at `path` into `model` (a clear error where its shape differs)."""
    donor, _ = load_restyle_model(path)
    ours, theirs = model.critic.state_dict(), donor.critic.state_dict()
    if set(ours) != set(theirs) or any(ours[k].shape != theirs[k].shape for k in ours):
        raise ModelError(f"{path}: its critic is shaped otherwise than this model's (critic_d, critic_layers, "
                         "max_len, vocabulary); take the critic of a file trained with the same restyle settings")
    model.critic.load_state_dict(theirs)


def critic_accuracy(model: RestyleLM, melodies, styles) -> float:
    """Balanced accuracy of the critic on `melodies` with their `styles`."""
    model.critic.eval()
    with torch.no_grad():
        pred = np.array([int(model.critic(torch.tensor([encode_melody(m)[: model.restyle.max_len]]))[0].argmax())
                         for m in melodies])
    y = np.asarray(styles)
    return float(np.mean([(pred[y == s] == s).mean() for s in range(len(STYLE_NAMES)) if (y == s).any()]))


def train_critic(cfg: CriticConfig, out: Path | None = None) -> dict:
    t0 = time.monotonic()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model, card = load_restyle_model(REPO / cfg.model)
    if cfg.critic_from:
        take_critic(model, REPO / cfg.critic_from)
    max_len = model.restyle.max_len
    corpus = style_corpus(cfg.data_limit)
    rng = np.random.default_rng(cfg.seed)
    sampler = PhraseSampler(corpus, "train", seed=cfg.seed, limit=cfg.data_limit)
    pool: list[tuple[list[int], int]] = []
    lo, hi = cfg.transpose
    while len(pool) < cfg.pool:
        m, style = sampler.draw()
        m = m.transposed(int(rng.integers(lo, hi + 1)))
        if rng.random() < cfg.played_share:
            m = play_melody(m, rng)
        m = rebarred_at_random(m, rng, cfg.rebar_share)
        pool.append((encode_melody(m)[:max_len], style))
    test = corpus_phrases(corpus, "test", cfg.test_per_style, seed=cfg.seed + 1, strict=not cfg.data_limit)
    test = [p for p in test if len(encode_melody(p.melody)) <= max_len]
    test_rng = np.random.default_rng(cfg.seed + 2)
    sets = {"clean": [p.melody for p in test], "played": [play_melody(p.melody, test_rng) for p in test]}
    sets["rebarred"] = [rebarred_at_random(m, test_rng, 1.0) for m in sets["clean"]]
    styles = [p.style for p in test]
    before = {k: round(critic_accuracy(model, v, styles), 4) for k, v in sets.items()}
    fakes, fakes_test = [], []
    if cfg.generated:
        made = generated_phrases(REPO / cfg.model, sampler, cfg.generated + max(1, cfg.generated // 10), rng, cfg,
                                max_len)  # a tenth held out
        fakes, fakes_test = made[: cfg.generated], made[cfg.generated:]
    opt = torch.optim.AdamW(model.critic.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for step in range(cfg.steps):
        model.critic.train()
        idx = rng.integers(len(pool), size=cfg.batch_size)
        x = pad_batch([pool[i][0] for i in idx], DEFAULT_VOCAB.pad)  # (B, T)
        y = torch.tensor([pool[i][1] for i in idx])  # (B,)
        if fakes:  # K+1 classes: the real phrases' styles, and "generated" (index S)
            loss = F.cross_entropy(with_generated_class(model.critic(x)), y)
            jdx = rng.integers(len(fakes), size=cfg.batch_size)
            xf = pad_batch([fakes[j] for j in jdx], DEFAULT_VOCAB.pad)  # (B, T)
            yf = torch.full((cfg.batch_size,), len(STYLE_NAMES))  # (B,)
            loss = loss + cfg.generated_weight * F.cross_entropy(with_generated_class(model.critic(xf)), yf)
        else:
            loss = F.cross_entropy(model.critic(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.critic.parameters(), cfg.grad_clip)
        opt.step()
        if step % 500 == 0:
            log.info("step %d: critic loss %.3f (%.0f s)", step, loss.item(), time.monotonic() - t0)
    model.eval()
    after = {k: round(critic_accuracy(model, v, styles), 4) for k, v in sets.items()}
    log.info("critic balanced accuracy on held-out real phrases, before -> after: %s -> %s", before, after)
    path = out or REPO / "runs" / cfg.name / "restyle.pt"
    card = {k: card[k] for k in CARD_KEYS if k in card}
    card["critic"] = {"retrained": "alone, on real train phrases barred at random (engine.train.train_critic)",
                      "config": asdict(cfg), "test_accuracy_before": before, "test_accuracy_after": after,
                      "test_phrases": len(test), "wall_time_s": round(time.monotonic() - t0, 1)}
    if cfg.critic_from:
        from_card = load_model(REPO / cfg.critic_from, DEFAULT_VOCAB).card.get("critic") or {}
        card["critic"]["taken_from"] = {"file": cfg.critic_from, "its_critic": from_card}
        origin = from_card.get("retrained", "as trained with its model")
        more = f", then {cfg.steps} steps more on real train phrases barred at random" if cfg.steps else ""
        card["critic"]["retrained"] = f"taken from {cfg.critic_from} (its critic: {origin}){more}"
    if fakes:
        card["critic"]["generated_class"] = True  # a sixth class at logit 0 (the runtime reads the five styles)
        card["critic"]["retrained"] += ", and against the model's own restyled phrases as a class of their own"
        card["critic"]["held_out_generated_called_generated"] = round(generated_share(model, fakes_test), 4)
        log.info("held-out generated phrases called generated: %.3f",
                 card["critic"]["held_out_generated_called_generated"])
    export_model(model, path, card)
    carry_style_ngram(REPO / cfg.model, path)
    log.info("exported %s", path)
    return {"path": str(path), **card["critic"]}


def ship(path: Path, evaluation: dict | None = None, out: Path | None = None) -> Path:
    """A restyle file with a retrained critic as models/restyle.pt, its card's metrics from the evaluation
    (`sideman eval --task restyle --json` of that file; the probe's figures it has not got, e.g. the ablation's,
    kept from the file's card)."""
    model, card = load_restyle_model(Path(path))
    if evaluation is not None:
        old = card.get("metrics", {})
        metrics = eval_metrics(evaluation)
        metrics["probe"] = {**(old.get("probe") or {}), **(metrics.get("probe") or {})}  # the ablation's kept
        card["metrics"] = {"val_recon_best": old.get("val_recon_best"), **metrics}
    out = out or REPO / "models" / "restyle.pt"
    card = {k: card[k] for k in CARD_KEYS if k in card}
    ngram = read_style_ngram(Path(path))  # read before the export: `out` may be `path`
    export_model(model, out, card)
    if ngram is not None:
        attach_style_ngram(out, ngram, out)
    return out


def load_critic_config(name: str, overrides: dict | None = None) -> CriticConfig:
    return with_overrides(PRESETS[name], overrides, "critic setting", ModelError)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description="ship a restyle file with a retrained critic as models/restyle.pt")
    p.add_argument("path")
    p.add_argument("--eval", default=None, help="the JSON of `sideman eval --task restyle --json` of that file")
    args = p.parse_args()
    print(ship(Path(args.path), json.loads(Path(args.eval).read_text()) if args.eval else None))


__all__ = ["CriticConfig", "PRESETS", "load_critic_config", "load_restyle_model", "rebarred_at_random", "ship",
           "take_critic", "train_critic"]


if __name__ == "__main__":
    main()
