"""Training data for the loop: the corpus cache re-encoded under the config's role mapping, cut
into windows that a DistributedSampler shards across processes, augmented per batch.

Windows start every `seq_len // 2` tokens of every training piece (so each epoch sees every token
about twice, each time in a different context); a window that starts mid-piece gets its context
re-attached (BOS, task, style, current role and velocity: `WindowSampler.window`). Each window is
transposed by a random shift that keeps it on the piano, and optionally given live-input noise.
Validation uses fixed windows of untransposed validation pieces, so the numbers are comparable.

With `human_playing` > 0 a share of the windows comes from the same piece with its player's part as a
person plays it (`engine.train.humanize.encode_as_played`, `human_variants` seeded encodings per piece,
cached); validation then also has as-played windows ("val_played"), from seeds training never uses.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.corpus.build import BuildConfig, build, cache_dir
from engine.corpus.dataset import Corpus, WindowConfig, WindowSampler, allowed_shifts, transpose
from engine.errors import DataError
from engine.train.config import TrainConfig
from engine.train.humanize import HumanPlaying, encode_as_played, encode_swung
from engine.train.noise import add_live_noise
from engine.music.vocab import DEFAULT_VOCAB

log = logging.getLogger("sideman.train.data")
STYLE_DROPOUT = 0.2  # share of windows whose style token becomes STYLE_none
EVAL_SEED_BASE = 1000  # as-played validation and evaluation seeds start here; training uses 0..variants-1


@dataclass
class TokenData:
    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]
    mapping: str
    collections: tuple[str, ...]
    source: str
    played_train: list[list[np.ndarray]] = field(default_factory=list)  # per training piece: its as-played encodings
    played_val: list[np.ndarray] = field(default_factory=list)  # one as-played encoding per validation piece
    sampler: WindowSampler = field(init=False)

    def __post_init__(self) -> None:
        if not self.train or not self.val:
            raise DataError("the corpus has no training or validation pieces; build it with `sideman data build`")
        self.sampler = WindowSampler(self.train, WindowConfig(length=16), DEFAULT_VOCAB)

    def train_windows(self, seq_len: int) -> list[tuple[int, int]]:
        stride = max(1, seq_len // 2)
        out = []
        for i, p in enumerate(self.train):
            out += [(i, s) for s in range(0, max(1, len(p) - seq_len // 4), stride)]
        return out

    def _window(self, piece: np.ndarray, start: int, seq_len: int) -> np.ndarray:
        sampler = WindowSampler([piece], WindowConfig(length=seq_len), DEFAULT_VOCAB)
        return sampler.window(piece, start if start > 3 else 0)

    def batch(self, windows: list[tuple[int, int]], rng: np.random.Generator, cfg: TrainConfig):
        """(x, y) long tensors (B, T): inputs and next-token targets."""
        rows = []
        for i, start in windows:
            piece = self.train[i]
            if self.played_train and rng.random() < cfg.human_playing:
                variants = self.played_train[i]
                played = variants[int(rng.integers(len(variants)))]
                start = int(round(start * len(played) / max(1, len(piece))))  # about the same place in the piece
                piece = played
            w = self._window(piece, start, cfg.seq_len)
            lo, hi = cfg.transpose
            k = int(rng.choice(allowed_shifts(w, range(lo, hi + 1), (21, 108))))
            w = transpose(w, k)
            if rng.random() < STYLE_DROPOUT and w[2] != DEFAULT_VOCAB.pad and DEFAULT_VOCAB.is_style(int(w[2])):
                w[2] = DEFAULT_VOCAB.style("none")  # so the model also plays with no style asked for
            if cfg.live_noise > 0 and rng.random() < cfg.live_noise:
                w = add_live_noise(w, rng)
            rows.append(w)
        a = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T + 1)
        return a[:, :-1], a[:, 1:]

    def val_batches(self, batch_size: int, seq_len: int, n_batches: int, split: str = "val"):
        """Fixed batches of `split`: "val", "test", or "val_played" (validation pieces as played)."""
        pieces = {"val": self.val, "test": self.test, "val_played": self.played_val}[split]
        windows = []
        for p in pieces:
            windows += [self._window(p, s, seq_len) for s in range(0, max(1, len(p) - seq_len // 4), seq_len)]
        rng = np.random.default_rng(0)  # a fixed subset: comparable across evaluations and models
        order = rng.permutation(len(windows))[: batch_size * n_batches]
        for b in range(0, len(order), batch_size):
            a = torch.from_numpy(np.stack([windows[j] for j in order[b:b + batch_size]]).astype(np.int64))
            yield a[:, :-1], a[:, 1:]

    def describe(self) -> dict:
        return {"source": self.source, "collections": list(self.collections), "role_mapping": self.mapping,
                "pieces": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
                "tokens": {"train": int(sum(map(len, self.train))), "val": int(sum(map(len, self.val))),
                           "test": int(sum(map(len, self.test)))}}


def _encoded_split(corpus: Corpus, split: str, collections: tuple[str, ...], mapping: str) -> list[np.ndarray]:
    """The split's pieces under `mapping`, cached beside the corpus (re-encoding 20k pieces takes a while)."""
    path = corpus.dir / f"encoded-{mapping}-{split}-{'+'.join(collections)}.npz"
    return _cached_arrays(path, lambda: [corpus.tokens(r) if mapping == "melody" else corpus.encode(r, mapping)
                                         for r in corpus.refs(split, collections)])


def _cached_arrays(path: Path, make) -> list[np.ndarray]:
    """Token arrays stored in one npz (concatenated, with an index): read back, or made once and stored."""
    if path.exists():
        with np.load(path) as z:
            tokens, index = z["tokens"], z["index"]
        return [tokens[index[i]:index[i + 1]] for i in range(len(index) - 1)]
    arrays = make()
    index = np.cumsum([0] + [len(a) for a in arrays])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, tokens=np.concatenate(arrays) if arrays else np.zeros(0, np.uint16), index=index)
    tmp.replace(path)
    return arrays


def load_token_data(cfg: TrainConfig, data_dir: Path | None = None) -> TokenData:
    """The corpus for `cfg`; builds the cache first if it is missing (a tiny config builds a tiny one)."""
    limit = cfg.data_limit or None
    directory = cache_dir(data_dir, DEFAULT_VOCAB, limit)
    missing = [c for c in cfg.collections if not (directory / f"{c}.npz").exists()]
    if missing:
        log.info("building the corpus cache for %s (limit %s) in %s", ", ".join(missing), limit, directory)
        build(BuildConfig(collections=tuple(cfg.collections), limit=limit, data_dir=data_dir))
    corpus = Corpus(directory, DEFAULT_VOCAB)
    cols = tuple(c for c in cfg.collections if c in corpus.collections)
    parts = {s: _encoded_split(corpus, s, cols, cfg.role_mapping) for s in ("train", "val", "test")}
    played_train: list[list[np.ndarray]] = []
    played_val: list[np.ndarray] = []
    if cfg.human_playing > 0:
        k = cfg.human_variants
        flat = _played_split(corpus, "train", cols, cfg.role_mapping, range(k))
        played_train = [flat[i * k:(i + 1) * k] for i in range(len(parts["train"]))]
        played_val = _played_split(corpus, "val", cols, cfg.role_mapping, range(EVAL_SEED_BASE, EVAL_SEED_BASE + 1))
    return TokenData(parts["train"], parts["val"], parts["test"], cfg.role_mapping, cols, str(directory),
                     played_train, played_val)


def _played_split(corpus: Corpus, split: str, collections: tuple[str, ...], mapping: str,
                  seeds: range) -> list[np.ndarray]:
    """Each piece of the split as played with each of `seeds` (piece-major), cached beside the corpus."""
    def encode(piece):
        for seed in seeds:
            rng = np.random.default_rng(zlib.crc32(f"{piece.id}|played|{seed}".encode()))
            yield encode_as_played(piece, rng, mapping=mapping)

    return _cached_variants(corpus, split, collections, f"played-{mapping}",
                            repr((HumanPlaying(), mapping, tuple(seeds))), encode)


def _cached_variants(corpus: Corpus, split: str, collections: tuple[str, ...], name: str, key: str,
                     encode) -> list[np.ndarray]:
    """encode(piece) -> token arrays, for every piece of the split in order, cached under `name` and `key`."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = corpus.dir / f"{name}-{split}-{'+'.join(collections)}-{digest}.npz"
    return _cached_arrays(path, lambda: [a for ref in corpus.refs(split, collections)
                                         for a in encode(corpus.piece(ref))])


def prompt_variants(cfg: TrainConfig, split: str, data_dir: Path | None = None) -> dict[str, list[np.ndarray]]:
    """The split's pieces under the config's mapping, for evaluation prompts: "as_played" (the
    human-playing model, a seed training never uses) and "swing" (a change training never sees)."""
    corpus = Corpus(cache_dir(data_dir, DEFAULT_VOCAB, cfg.data_limit or None), DEFAULT_VOCAB)
    cols = tuple(c for c in cfg.collections if c in corpus.collections)
    seed = range(EVAL_SEED_BASE + 1, EVAL_SEED_BASE + 2)
    swung = _cached_variants(corpus, split, cols, f"swing-{cfg.role_mapping}", cfg.role_mapping,
                             lambda piece: [encode_swung(piece, mapping=cfg.role_mapping)])
    return {"as_played": _played_split(corpus, split, cols, cfg.role_mapping, seed), "swing": swung}
