"""Training configurations: frozen dataclasses, named presets, and TOML/JSON files that override them."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from engine.errors import SidemanError


@dataclass(frozen=True)
class TrainConfig:
    name: str = "continuation"
    # model
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 0  # key/value heads; 1 = multi-query attention (a 4x smaller cache to read per token); 0 = n_heads
    d_ff: int = 1024
    window: int = 1024
    max_rollback: int = 256
    dropout: float = 0.1
    # data
    collections: tuple[str, ...] = ("bach", "essen", "oneill", "ryan", "aird", "palestrina")
    role_mapping: str = "call_response"  # how a piece's notes become roles (see engine.corpus.piece)
    seq_len: int = 512
    transpose: tuple[int, int] = (-5, 6)  # semitones, inclusive, drawn per window
    live_noise: float = 0.0  # share of windows given live-input noise (timing jitter, wrong notes, velocity)
    human_playing: float = 0.0  # share of windows whose player's part is as a person plays it (engine.train.humanize)
    human_variants: int = 4  # as-played encodings of each training piece (cached beside the corpus)
    # optimisation
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.05  # cosine decays to lr * this
    warmup_steps: int = 200
    max_steps: int = 6000
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    # adversarial training on the token embeddings
    adversarial: str = "none"  # none | fgsm | pgd
    adv_epsilon: float = 0.05  # L-inf radius, relative to the embedding RMS
    adv_steps: int = 3  # PGD steps
    adv_weight: float = 0.5  # loss = (1 - w) * clean + w * adversarial
    # bookkeeping
    eval_every: int = 250
    eval_batches: int = 20
    patience: int = 6  # evaluations without improvement before early stopping
    checkpoint_every: int = 250
    seed: int = 1234
    out_dir: str = "runs"
    data_limit: int = 0  # pieces per collection; 0 = all (tiny runs for tests)
    init_from: str = ""  # a model file (TorchScript, same shapes) whose weights start a fresh run: fine-tuning

    def __post_init__(self) -> None:
        if self.adversarial not in ("none", "fgsm", "pgd"):
            raise SidemanError(f"train config: adversarial must be none, fgsm or pgd, not {self.adversarial!r}")
        if not 0.0 <= self.human_playing <= 1.0 or self.human_variants < 1:
            raise SidemanError("train config: human_playing must be in [0, 1] and human_variants >= 1")
        if self.seq_len > self.window:
            raise SidemanError(f"train config: seq_len {self.seq_len} must be <= window {self.window}")

    def model_fields(self) -> dict:
        return dict(d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                    n_kv_heads=self.n_kv_heads, d_ff=self.d_ff,
                    window=self.window, max_rollback=self.max_rollback, dropout=self.dropout)

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, TrainConfig] = {
    # the shipped call-and-response continuation model
    # (one core of a 2-core CPU for about an hour: 7.2 M tokens, ~2.4 passes over the folk collections and chorales)
    "continuation": TrainConfig(collections=("bach", "essen", "oneill", "ryan", "aird"), seq_len=256, n_kv_heads=1,
                                batch_size=16, max_steps=2400, warmup_steps=50, eval_every=100,
                                eval_batches=10, checkpoint_every=50, dropout=0.0),
    # the same with adversarial training on embeddings and live-noise augmentation
    "continuation-robust": TrainConfig(name="continuation-robust", collections=("bach", "essen", "oneill", "ryan",
                                       "aird"), seq_len=256, n_kv_heads=1, batch_size=16, max_steps=1500, warmup_steps=100,
                                       eval_every=150, eval_batches=10, checkpoint_every=50, dropout=0.0,
                                       adversarial="pgd", live_noise=0.25),
    # the human-playing issue: the shipped model's size and schedule, phrases of 1-8 bars, half the windows as
    # a person plays the player's part; then the same with adversarial training on the embeddings
    "continuation-human": TrainConfig(name="continuation-human", collections=("bach", "essen", "oneill", "ryan",
                                      "aird"), seq_len=256, n_kv_heads=1, batch_size=16, max_steps=4000,
                                      warmup_steps=50, eval_every=100, eval_batches=10, checkpoint_every=50,
                                      dropout=0.0, role_mapping="call_response_varied", human_playing=0.5),
    # the human-playing model trained on from the shipped one (its checkpoint is not kept across machines):
    # 1,500 more steps at a third of the learning rate, warm-up then cosine, the same data and schedule shape
    "continuation-human-more": TrainConfig(name="continuation-human-more", collections=("bach", "essen", "oneill",
                                           "ryan", "aird"), seq_len=256, n_kv_heads=1, batch_size=16, max_steps=1500,
                                           warmup_steps=50, lr=3e-4, eval_every=100, eval_batches=10,
                                           checkpoint_every=50, dropout=0.0, role_mapping="call_response_varied",
                                           human_playing=0.5, init_from="models/continuation.pt"),
    # the full-size comparison's adversarial arm, matched step for step with the shipped model: the same
    # 4,000-step human-playing model (cc1ec31's models/continuation.pt, which
    # scripts/experiment_full_size_robustness.sh takes out of git) trained the same 1,500 steps on, with FGSM
    # on the embeddings as the only difference
    "continuation-human-fgsm-more": TrainConfig(name="continuation-human-fgsm-more", collections=("bach", "essen",
                                                "oneill", "ryan", "aird"), seq_len=256, n_kv_heads=1, batch_size=16,
                                                max_steps=1500, warmup_steps=50, lr=3e-4, eval_every=100,
                                                eval_batches=10, checkpoint_every=50, dropout=0.0,
                                                role_mapping="call_response_varied", human_playing=0.5,
                                                adversarial="fgsm", adv_epsilon=0.03,
                                                init_from="runs/full-size/continuation-human-4000.pt"),
    "continuation-human-adv": TrainConfig(name="continuation-human-adv", collections=("bach", "essen", "oneill",
                                          "ryan", "aird"), seq_len=256, n_kv_heads=1, batch_size=16, max_steps=2400,
                                          warmup_steps=50, eval_every=100, eval_batches=10, checkpoint_every=50,
                                          dropout=0.0, role_mapping="call_response_varied", human_playing=0.5,
                                          adversarial="fgsm", adv_epsilon=0.03),
    # the accompaniment issue: the polyphonic collections, the top voice as played by a person, the lower
    # voices (alto, tenor, bass; or a motet's) as the sideman's roles 1-3, the sideman's events first at a tick
    "accompaniment": TrainConfig(name="accompaniment", collections=("bach", "palestrina", "monteverdi", "trecento"),
                                 seq_len=512, n_kv_heads=1, batch_size=8, max_steps=3000, warmup_steps=50,
                                 eval_every=100, eval_batches=10, checkpoint_every=50, dropout=0.0,
                                 role_mapping="accompany", human_playing=0.5),
    # the human-playing issue's comparison at a small size (d 128, 3 layers, 800 steps each): plain (the scores
    # as written), the human-playing augmentation, and the augmentation with FGSM on the embeddings
    **{name: TrainConfig(name=name, d_model=128, n_layers=3, n_heads=4, n_kv_heads=1, d_ff=512, seq_len=256,
                         batch_size=16, max_steps=800, warmup_steps=50, eval_every=100, eval_batches=10,
                         checkpoint_every=100, dropout=0.0, collections=("bach", "essen", "oneill", "ryan", "aird"),
                         role_mapping="call_response_varied", **extra)
       for name, extra in (("ablation-plain", {}), ("ablation-human", {"human_playing": 0.5}),
                           ("ablation-human-fgsm", {"human_playing": 0.5, "adversarial": "fgsm",
                                                    "adv_epsilon": 0.03}))},
    # the robustness experiment: the same small model trained plain and adversarially, side by side
    "robust-plain": TrainConfig(name="robust-plain", d_model=128, n_layers=3, n_heads=4, d_ff=512, seq_len=256,
                                batch_size=16, max_steps=300, warmup_steps=30, eval_every=100, eval_batches=10,
                                checkpoint_every=50, dropout=0.0, collections=("essen", "oneill")),
    "robust-fgsm": TrainConfig(name="robust-fgsm", d_model=128, n_layers=3, n_heads=4, d_ff=512, seq_len=256,
                               batch_size=16, max_steps=300, warmup_steps=30, eval_every=100, eval_batches=10,
                               checkpoint_every=50, dropout=0.0, collections=("essen", "oneill"),
                               adversarial="fgsm", adv_epsilon=0.03),
    # seconds on a CPU: for tests and smoke runs
    "tiny": TrainConfig(name="tiny", d_model=64, n_layers=2, n_heads=2, d_ff=128, window=128, max_rollback=32,
                        seq_len=128, batch_size=8, max_steps=30, warmup_steps=5, eval_every=10, eval_batches=2,
                        checkpoint_every=10, collections=("essen", "bach"), data_limit=20, dropout=0.0),
    # the same for accompaniment: the first 70 chorales (three of them in the test split)
    "tiny-accompany": TrainConfig(name="tiny-accompany", d_model=64, n_layers=2, n_heads=2, d_ff=128, window=128,
                                  max_rollback=32, seq_len=128, batch_size=8, max_steps=30, warmup_steps=5,
                                  eval_every=10, eval_batches=2, checkpoint_every=10, collections=("bach",),
                                  data_limit=70, dropout=0.0, role_mapping="accompany", human_playing=0.5),
}


def load_config(name_or_path: str, overrides: dict | None = None) -> TrainConfig:
    """A preset name, or a .toml/.json file whose keys override the `base` preset (default continuation)."""
    path = Path(name_or_path)
    if name_or_path in PRESETS:
        cfg = PRESETS[name_or_path]
    elif path.suffix in (".toml", ".json") and path.exists():
        raw = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        base = raw.pop("base", "continuation")
        if base not in PRESETS:
            raise SidemanError(f"{path}: base {base!r} is not a preset; choose one of {', '.join(PRESETS)}")
        cfg = _apply(PRESETS[base], raw, str(path))
    else:
        raise SidemanError(f"no training config {name_or_path!r}: use a preset ({', '.join(PRESETS)}) "
                           "or a .toml/.json file")
    return _apply(cfg, overrides or {}, "command line")


def _apply(cfg: TrainConfig, raw: dict, where: str) -> TrainConfig:
    known = {f.name: f for f in fields(TrainConfig)}
    values = {}
    for key, value in raw.items():
        if key not in known:
            raise SidemanError(f"{where}: unknown training field {key!r}; known: {', '.join(sorted(known))}")
        current = getattr(cfg, key)
        if isinstance(current, tuple):
            value = tuple(value.split(",")) if isinstance(value, str) else tuple(value)
            if current and isinstance(current[0], int):
                value = tuple(int(v) for v in value)
        elif isinstance(current, bool):
            value = str(value).lower() in ("1", "true", "yes") if isinstance(value, str) else bool(value)
        else:
            try:
                value = type(current)(value)
            except (TypeError, ValueError):
                raise SidemanError(f"{where}: {key} must be {type(current).__name__}, not {value!r}") from None
        values[key] = value
    return replace(cfg, **values)
