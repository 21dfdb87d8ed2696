"""Token arrays for training: load the cache by split and collection, sample windows, augment.

`Corpus` opens a built cache (see engine.corpus.build) and gives each piece's tokens, notes, and a
`Piece` to re-encode under another role mapping (`Corpus.encode`, e.g. "parts" for soprano vs lower
voices, "call_response" for tunes split into alternating phrases).

`WindowSampler` draws training windows of `length + 1` tokens (inputs [:-1], targets [1:]):
pieces are drawn in proportion to their token counts, a start uniformly inside the piece. A window
that does not start at the beginning of its piece gets the context re-attached: BOS, task, style,
then the ROLE and VEL state in force at the start (so the window reads like a stream), then the
piece's tokens from there; a short piece is padded with PAD. Transposition by k semitones (k in
`transpose`, chosen per window among the shifts that keep every pitch in `pitch_range`) moves every
NOTE_ON/NOTE_OFF token. Everything is numpy and deterministic for a seed; no torch here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from engine.corpus.build import cache_dir
from engine.corpus.piece import Piece, RoleMapping, encode_piece
from engine.errors import DataError
from engine.music.vocab import DEFAULT_VOCAB, Vocab


@dataclass(frozen=True)
class PieceRef:
    collection: str
    index: int  # within its collection's shard
    id: str
    split: str
    n_tokens: int


class Corpus:
    """A built corpus cache, read-only. Shards are loaded on first use."""

    def __init__(self, directory: Path | None = None, vocab: Vocab = DEFAULT_VOCAB) -> None:
        self.dir = Path(directory) if directory is not None else cache_dir(vocab=vocab)
        manifest_path = self.dir / "manifest.json"
        if not manifest_path.exists():
            raise DataError(f"no corpus cache at {self.dir}; build it with `sideman data build`")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest["vocab_hash"] != vocab.hash():
            raise DataError(f"the corpus at {self.dir} was built for vocabulary {self.manifest['vocab_hash']}, "
                            f"not {vocab.hash()}; rebuild with `sideman data build`")
        self.vocab = vocab
        self.collections = tuple(self.manifest["collections"])
        self._meta: dict[str, dict] = {}
        self._arrays: dict[str, dict[str, np.ndarray]] = {}

    def meta(self, collection: str) -> dict:
        if collection not in self._meta:
            path = self.dir / f"{collection}.json"
            if not path.exists():
                raise DataError(f"collection {collection!r} is not in the corpus at {self.dir}; "
                                f"built: {', '.join(self.collections)}")
            self._meta[collection] = json.loads(path.read_text())
        return self._meta[collection]

    def arrays(self, collection: str) -> dict[str, np.ndarray]:
        if collection not in self._arrays:
            self.meta(collection)
            with np.load(self.dir / f"{collection}.npz") as z:
                self._arrays[collection] = {k: z[k] for k in z.files}
        return self._arrays[collection]

    def refs(self, split: str | None = None, collections: Iterable[str] | None = None) -> list[PieceRef]:
        """The pieces of a split (None: all) in the given collections (None: all)."""
        out = []
        for c in collections or self.collections:
            for i, p in enumerate(self.meta(c)["pieces"]):
                if split is None or p["split"] == split:
                    out.append(PieceRef(c, i, p["id"], p["split"], p["tokens"]))
        return out

    def tokens(self, ref: PieceRef) -> np.ndarray:
        a = self.arrays(ref.collection)
        idx = a["token_index"]
        return a["tokens"][idx[ref.index]: idx[ref.index + 1]]

    def piece(self, ref: PieceRef) -> Piece:
        a = self.arrays(ref.collection)
        m = self.meta(ref.collection)["pieces"][ref.index]
        ni, bi = a["note_index"], a["bar_index"]
        return Piece(m["id"], ref.collection, m["source"], a["notes"][ni[ref.index]: ni[ref.index + 1]],
                     tuple(m["part_names"]), a["bars"][bi[ref.index]: bi[ref.index + 1]], m["meter_changes"])

    def encode(self, ref: PieceRef, mapping: str | RoleMapping = "melody", task: str | None = None) -> np.ndarray:
        """The piece's tokens under another role mapping or task (the cache holds "melody", CONTINUE)."""
        return encode_piece(self.piece(ref), self.vocab, mapping, task)


# ---- augmentation -----------------------------------------------------------------------------


def note_mask(tokens: np.ndarray, vocab: Vocab = DEFAULT_VOCAB) -> np.ndarray:
    return (tokens >= vocab.note_on_base) & (tokens < vocab.size)


def pitch_span(tokens: np.ndarray, vocab: Vocab = DEFAULT_VOCAB) -> tuple[int, int] | None:
    """Lowest and highest pitch of the note tokens, or None when there are none."""
    notes = tokens[note_mask(tokens, vocab)].astype(np.int64)
    if not len(notes):
        return None
    pitches = (notes - vocab.note_on_base) % vocab.config.n_pitches
    return int(pitches.min()), int(pitches.max())


def allowed_shifts(tokens: np.ndarray, shifts: Iterable[int], pitch_range: tuple[int, int],
                   vocab: Vocab = DEFAULT_VOCAB) -> list[int]:
    """The shifts that keep every pitch inside pitch_range; [0] when none does (the data stays as it is)."""
    span = pitch_span(tokens, vocab)
    if span is None:
        return [0]
    lo, hi = span
    ok = [k for k in shifts if pitch_range[0] <= lo + k and hi + k <= pitch_range[1]]
    return ok or [0]


def transpose(tokens: np.ndarray, k: int, vocab: Vocab = DEFAULT_VOCAB) -> np.ndarray:
    """Every NOTE_ON/NOTE_OFF moved by k semitones; other tokens unchanged. Raises if a pitch leaves 0..127."""
    if k == 0:
        return tokens.copy()
    out = tokens.astype(np.int64)
    mask = note_mask(tokens, vocab)
    n = vocab.config.n_pitches
    pitch = (out[mask] - vocab.note_on_base) % n + k
    if len(pitch) and (pitch.min() < 0 or pitch.max() >= n):
        raise ValueError(f"transposing by {k} takes a pitch outside 0..{n - 1}")
    out[mask] += k
    return out.astype(tokens.dtype)


# ---- windows ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowConfig:
    length: int = 512  # tokens per window (the model's context); a sample is length + 1
    transpose: tuple[int, int] = (-5, 6)  # inclusive range of semitone shifts
    pitch_range: tuple[int, int] = (21, 108)  # a shift must keep every pitch here (the piano)
    seed: int = 0
    context: bool = True  # re-attach BOS/task/style and the ROLE/VEL state to mid-piece windows

    def __post_init__(self) -> None:
        if self.length < 8:
            raise ValueError("window length must be at least 8")
        if self.transpose[0] > 0 or self.transpose[1] < 0:
            raise ValueError("the transpose range must include 0")
        if not 0 <= self.pitch_range[0] <= self.pitch_range[1] <= 127:
            raise ValueError("pitch_range must be within 0..127")


HEADER = 3  # BOS, task, style at the start of every cached piece


def state_at(tokens: np.ndarray, start: int, vocab: Vocab = DEFAULT_VOCAB) -> list[int]:
    """The last ROLE and VEL tokens before `start`: the state a window starting there needs."""
    head = tokens[:start]
    out = []
    for lo, hi in ((vocab.role_base, vocab.style_base), (vocab.vel_base, vocab.shift_base)):
        hits = np.flatnonzero((head >= lo) & (head < hi))
        if len(hits):
            out.append(int(head[hits[-1]]))
    return out


@dataclass
class WindowSampler:
    """Random training windows from a list of pieces' token arrays; deterministic for a seed."""

    pieces: list[np.ndarray]
    config: WindowConfig = field(default_factory=WindowConfig)
    vocab: Vocab = DEFAULT_VOCAB

    def __post_init__(self) -> None:
        if not self.pieces:
            raise DataError("no pieces to sample windows from; check the split and collections")
        lengths = np.asarray([len(p) for p in self.pieces], dtype=np.float64)
        self.weights = lengths / lengths.sum()
        self.rng = np.random.default_rng(self.config.seed)

    def window(self, piece: np.ndarray, start: int) -> np.ndarray:
        """length + 1 tokens of `piece` from `start` (context re-attached when start > HEADER)."""
        n = self.config.length + 1
        prefix: list[int] = []
        if start <= HEADER:
            body = piece
        elif not self.config.context:
            body = piece[start:]
        else:
            prefix = [int(t) for t in piece[:HEADER]] + state_at(piece, start, self.vocab)
            body = piece[start:]
        out = np.full(n, self.vocab.pad, dtype=np.int64)
        take = min(n - len(prefix), len(body))
        out[: len(prefix)] = prefix
        out[len(prefix): len(prefix) + take] = body[:take]
        return out

    def sample(self) -> np.ndarray:
        """One augmented window: int64 array of length + 1."""
        return self.draw()[0]

    def draw(self) -> tuple[np.ndarray, int]:
        """One augmented window and the semitones it was transposed by."""
        i = int(self.rng.choice(len(self.pieces), p=self.weights))
        piece = self.pieces[i]
        body_len = self.config.length + 1 - HEADER - 2
        last = max(HEADER, len(piece) - body_len)
        start = int(self.rng.integers(HEADER, last + 1))
        w = self.window(piece, start)
        lo, hi = self.config.transpose
        shifts = allowed_shifts(w, range(lo, hi + 1), self.config.pitch_range, self.vocab)
        k = int(self.rng.choice(shifts))
        return transpose(w, k, self.vocab), k

    def batch(self, size: int) -> np.ndarray:
        """(size, length + 1) int64."""
        return np.stack([self.sample() for _ in range(size)])

    def batches(self, size: int) -> Iterator[np.ndarray]:
        while True:
            yield self.batch(size)


def load_split(split: str, collections: Iterable[str] | None = None, directory: Path | None = None,
               vocab: Vocab = DEFAULT_VOCAB, mapping: str | RoleMapping | None = None,
               task: str = "CONTINUE") -> list[np.ndarray]:
    """Token arrays of every piece in a split: the cached ones, or re-encoded under `mapping`/`task`."""
    corpus = Corpus(directory, vocab)
    refs = corpus.refs(split, collections)
    if mapping is None and task == "CONTINUE":
        return [corpus.tokens(r) for r in refs]
    return [corpus.encode(r, mapping or "melody", task) for r in refs]

