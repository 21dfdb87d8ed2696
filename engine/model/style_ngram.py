"""A second style critic for the restyle pick: per-style trigram models over a melody's notes in order.

The restyle model's own critic (a small transformer over tokens) hears the style of whole phrases but agrees
with the independent classifier at a correlation of only ~0.3 on the model's candidates. This one hears
something else: the order of the notes, each as its melodic interval and the time since the previous onset

    symbol = (interval clipped to +-12: 25 values) x (log2 of the inter-onset time, 1/8 to 8 beats: 9 values)

with no pitch class, register or metric position (a key-, register- and meter-free view; the restyle keeps
the phrase's meter). Each style's model is an interpolated trigram over these symbols, counted on real train
phrases only (`engine.train.train_style_ngram`); the posterior over the styles (uniform prior) is the
critic's verdict. The pick scores a candidate by the two critics' mean p(target) plus its chroma to the
phrase (`engine.model.restyler.Restyler.score`).

It travels inside the restyle model file, as the TorchScript archive's extra file `style_ngram.npz`, and the
card's `restyle.ngram_critic` says so; `read_style_ngram` reads it from the archive without loading the model.

    ngram = read_style_ngram("models/restyle.pt")   # None for a file without one
    ngram.probabilities(melody)                    # (S,)
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import ModelError
from engine.model.modelfile import read_extra_file
from engine.music.melody import ON, PITCH, Melody
from engine.music.vocab import DEFAULT_VOCAB, Vocab

EXTRA_NAME = "style_ngram.npz"  # the extra file's name inside the model archive
N_INTERVALS, N_TIMES = 25, 9
N_SYMBOLS = N_INTERVALS * N_TIMES  # 225
LAMBDAS = (0.2, 0.35, 0.45)  # unigram, bigram, trigram weights of the interpolation
UNIGRAM_PSEUDO = 0.5  # add-0.5 unigrams: no symbol has probability 0


def melody_symbols(m: Melody, vocab: Vocab = DEFAULT_VOCAB) -> np.ndarray:
    """(N - 1,) int64: one symbol for each note after the first (see the module docstring)."""
    notes = m.notes
    if len(notes) < 2:
        return np.zeros(0, np.int64)
    steps = np.clip(np.diff(notes[:, PITCH].astype(np.int64)), -12, 12) + 12
    ioi = np.maximum(np.diff(notes[:, ON].astype(np.int64)), 1) / vocab.config.ticks_per_beat
    times = np.clip(np.rint(np.log2(ioi) + 3), 0, N_TIMES - 1).astype(np.int64)
    return steps * N_TIMES + times


@dataclass(frozen=True)
class StyleCounts:
    """One style's counts: n-gram codes (sorted) and their counts, and the contexts' totals."""
    unigram: np.ndarray  # (V,) counts of each symbol
    bigram_keys: np.ndarray  # (B,) a * V + b, sorted
    bigram_counts: np.ndarray  # (B,)
    trigram_keys: np.ndarray  # (T,) (a * V + b) * V + c, sorted
    trigram_counts: np.ndarray  # (T,)

    def contexts(self, keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The totals of each (n-1)-gram context: (sorted context codes, their counts)."""
        ctx = keys // N_SYMBOLS
        uniq, inverse = np.unique(ctx, return_inverse=True)
        return uniq, np.bincount(inverse, weights=counts).astype(np.int64)


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The counts of `query` codes in a sorted table (0 where absent)."""
    if len(keys) == 0:
        return np.zeros(len(query), np.int64)
    i = np.clip(np.searchsorted(keys, query), 0, len(keys) - 1)
    return np.where(keys[i] == query, counts[i], 0)


class StyleNgram:
    """The per-style trigram critic (read-only once built)."""

    def __init__(self, styles: list[str], counts: list[StyleCounts], card: dict) -> None:
        self.styles = list(styles)
        self.card = card
        self._tables = []
        for c in counts:
            b_ctx, b_tot = c.contexts(c.bigram_keys, c.bigram_counts)
            t_ctx, t_tot = c.contexts(c.trigram_keys, c.trigram_counts)
            self._tables.append((c, b_ctx, b_tot, t_ctx, t_tot))
        self.counts = counts

    def log_likelihoods(self, symbols: np.ndarray) -> np.ndarray:
        """(S,): the symbols' log-likelihood under each style's model."""
        out = np.zeros(len(self._tables))
        if len(symbols) == 0:
            return out
        prev1 = np.concatenate([[-1], symbols[:-1]])  # (N,) the symbol before (-1: none)
        prev2 = np.concatenate([[-1, -1], symbols[:-2]])[: len(symbols)]
        for s, (c, b_ctx, b_tot, t_ctx, t_tot) in enumerate(self._tables):
            p1 = (c.unigram[symbols] + UNIGRAM_PSEUDO) / (c.unigram.sum() + UNIGRAM_PSEUDO * N_SYMBOLS)
            has1 = prev1 >= 0
            bi_ctx = _lookup(b_ctx, b_tot, np.where(has1, prev1, 0))
            bi = _lookup(c.bigram_keys, c.bigram_counts, np.where(has1, prev1, 0) * N_SYMBOLS + symbols)
            p2 = np.where(has1 & (bi_ctx > 0), bi / np.maximum(bi_ctx, 1), p1)
            has2 = prev2 >= 0
            ctx2 = np.where(has2, prev2 * N_SYMBOLS + np.maximum(prev1, 0), 0)
            tri_ctx = _lookup(t_ctx, t_tot, ctx2)
            tri = _lookup(c.trigram_keys, c.trigram_counts, ctx2 * N_SYMBOLS + symbols)
            p3 = np.where(has2 & (tri_ctx > 0), tri / np.maximum(tri_ctx, 1), p2)
            out[s] = float(np.log(LAMBDAS[0] * p1 + LAMBDAS[1] * p2 + LAMBDAS[2] * p3).sum())
        return out

    def probabilities(self, melody: Melody, vocab: Vocab = DEFAULT_VOCAB) -> np.ndarray:
        """(S,): the posterior over the styles of a phrase (uniform prior; uniform for fewer than 2 notes)."""
        ll = self.log_likelihoods(melody_symbols(melody, vocab))
        e = np.exp(ll - ll.max())
        return e / e.sum()

    def to_bytes(self) -> bytes:
        arrays = {"card": np.frombuffer(json.dumps({**self.card, "styles": self.styles}).encode(), np.uint8)}
        for s, c in enumerate(self.counts):
            arrays[f"{s}_unigram"] = c.unigram.astype(np.int32)
            arrays[f"{s}_bigram_keys"] = c.bigram_keys.astype(np.int32)
            arrays[f"{s}_bigram_counts"] = c.bigram_counts.astype(np.int32)
            arrays[f"{s}_trigram_keys"] = c.trigram_keys.astype(np.int32)
            arrays[f"{s}_trigram_counts"] = c.trigram_counts.astype(np.int32)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "the n-gram critic") -> "StyleNgram":
        try:
            with np.load(io.BytesIO(data)) as z:
                card = json.loads(bytes(z["card"]).decode())
                styles = list(card.pop("styles"))
                counts = [StyleCounts(*(z[f"{s}_{k}"].astype(np.int64) for k in
                                        ("unigram", "bigram_keys", "bigram_counts", "trigram_keys",
                                         "trigram_counts"))) for s in range(len(styles))]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{where}: the style n-gram critic is damaged ({type(exc).__name__}: {exc}); "
                             "attach it again with `sideman train --config style-ngram`") from None
        for c in counts:
            if c.unigram.shape != (N_SYMBOLS,):
                raise ModelError(f"{where}: the style n-gram critic has {c.unigram.shape[0]} symbols, the runtime "
                                 f"{N_SYMBOLS}; attach it again with `sideman train --config style-ngram`")
        return cls(styles, counts, card)


def read_style_ngram(path: str | Path) -> StyleNgram | None:
    """The n-gram critic inside a restyle model file (None when the file has none)."""
    data = read_extra_file(path, EXTRA_NAME)
    return None if data is None else StyleNgram.from_bytes(data, str(path))


__all__ = ["EXTRA_NAME", "StyleCounts", "StyleNgram", "melody_symbols", "read_style_ngram"]
