"""Variable-order Markov model over tokens: the classic realtime continuation technique, and the
baseline the transformer must beat.

Interpolated Witten-Bell smoothing over orders 0..K (the order-0 model is add-one unigrams):

    P_k(w | h_k) = (c(h_k, w) + u(h_k) * P_{k-1}(w | h_{k-1})) / (c(h_k) + u(h_k))

where c counts n-grams in the training tokens and u(h) is the number of distinct tokens seen after
context h; an unseen context falls back to the lower order. Counts are kept as sorted uint64 hashes
in numpy arrays (no Python dict per n-gram), so millions of tokens fit in a few hundred MB.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

_MUL = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant for the rolling hash
_TOKEN_SALT = np.uint64(0xC2B2AE3D27D4EB4F)


def _context_hashes(tokens: np.ndarray, k: int) -> np.ndarray:
    """hash of tokens[i-k:i] for every i in k..len: shape (len - k + 1,)."""
    n = len(tokens)
    h = np.zeros(n - k + 1, dtype=np.uint64)
    t = tokens.astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        for j in range(k):
            h = h * _MUL + t[j: n - k + 1 + j]
        return h + np.uint64(k)


def _pair_hash(ctx: np.ndarray, w: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (ctx ^ (w.astype(np.uint64) * _TOKEN_SALT)) * _MUL + np.uint64(7)


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(sorted_keys, query)
    idx = np.minimum(idx, len(sorted_keys) - 1)
    found = sorted_keys[idx] == query if len(sorted_keys) else np.zeros(len(query), bool)
    return np.where(found, values[idx] if len(values) else 0, 0)


@dataclass
class _Order:
    ctx_keys: np.ndarray  # sorted context hashes
    ctx_count: np.ndarray  # c(h)
    ctx_types: np.ndarray  # u(h): distinct followers
    pair_keys: np.ndarray  # sorted (context, token) hashes
    pair_count: np.ndarray  # c(h, w)


class MarkovModel:
    def __init__(self, vocab_size: int, order: int = 6) -> None:
        self.vocab_size = vocab_size
        self.order = order
        self.unigram = np.ones(vocab_size)
        self.orders: list[_Order] = []

    # ---- training ---------------------------------------------------------------------
    def fit(self, sequences: Sequence[np.ndarray]) -> "MarkovModel":
        """Count n-grams within each sequence (never across pieces)."""
        self.unigram = np.ones(self.vocab_size)
        for s in sequences:
            self.unigram += np.bincount(np.asarray(s, dtype=np.int64), minlength=self.vocab_size)
        self.orders = []
        for k in range(1, self.order + 1):
            ctxs, pairs = [], []
            for s in sequences:
                s = np.asarray(s, dtype=np.int64)
                if len(s) <= k:
                    continue
                ctx = _context_hashes(s, k)[:-1]  # contexts that have a next token
                ctxs.append(ctx)
                pairs.append(_pair_hash(ctx, s[k:]))
            ctx_all = np.concatenate(ctxs) if ctxs else np.zeros(0, np.uint64)
            pair_all = np.concatenate(pairs) if pairs else np.zeros(0, np.uint64)
            ctx_keys, ctx_count = np.unique(ctx_all, return_counts=True)
            pair_keys, first, pair_count = np.unique(pair_all, return_index=True, return_counts=True)
            types_keys, types_count = np.unique(ctx_all[first], return_counts=True)
            ctx_types = _lookup(types_keys, types_count, ctx_keys)
            self.orders.append(_Order(ctx_keys, ctx_count, ctx_types, pair_keys, pair_count))
        return self

    # ---- scoring ----------------------------------------------------------------------
    def token_probabilities(self, seq: np.ndarray, start: int = 1) -> np.ndarray:
        """P(seq[i] | seq[:i]) for i in start..len-1, vectorized over positions."""
        seq = np.asarray(seq, dtype=np.int64)
        pos = np.arange(start, len(seq))
        w = seq[pos]
        p = self.unigram[w] / self.unigram.sum()
        for k, o in enumerate(self.orders, start=1):
            ok = pos >= k
            if not ok.any():
                break
            ctx = _context_hashes(seq, k)  # ctx[i - k] is the context ending before i
            pk = pos[ok]
            h = ctx[pk - k]
            c = _lookup(o.ctx_keys, o.ctx_count, h).astype(np.float64)
            u = _lookup(o.ctx_keys, o.ctx_types, h).astype(np.float64)
            cw = _lookup(o.pair_keys, o.pair_count, _pair_hash(h, w[ok])).astype(np.float64)
            seen = c > 0
            new = p[ok].copy()
            new[seen] = (cw[seen] + u[seen] * new[seen]) / (c[seen] + u[seen])
            p[ok] = new
        return p

    def loss(self, sequences: Sequence[np.ndarray], start: int = 1) -> float:
        """Mean negative log-likelihood per token (nats), comparable to a model's cross-entropy."""
        total, count = 0.0, 0
        for s in sequences:
            if len(s) <= start:
                continue
            p = self.token_probabilities(np.asarray(s), start)
            total += float(-np.log(p).sum())
            count += len(p)
        return total / max(count, 1)

    def next_distribution(self, context: Sequence[int]) -> np.ndarray:
        """P(w | context) for every token w: shape (vocab_size,)."""
        ctx = np.asarray(context, dtype=np.int64)
        w = np.arange(self.vocab_size)
        p = self.unigram / self.unigram.sum()
        for k, o in enumerate(self.orders, start=1):
            if len(ctx) < k:
                break
            h = _context_hashes(ctx[-k:], k)[:1]
            c = float(_lookup(o.ctx_keys, o.ctx_count, h)[0])
            if c == 0:
                break  # a longer context that was never seen cannot have been seen either
            u = float(_lookup(o.ctx_keys, o.ctx_types, h)[0])
            cw = _lookup(o.pair_keys, o.pair_count, _pair_hash(np.repeat(h, self.vocab_size), w))
            p = (cw + u * p) / (c + u)
        return p

    # ---- persistence ------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        arrays = {"unigram": self.unigram}
        for k, o in enumerate(self.orders, start=1):
            for name in ("ctx_keys", "ctx_count", "ctx_types", "pair_keys", "pair_count"):
                arrays[f"o{k}_{name}"] = getattr(o, name)
        meta = json.dumps({"vocab_size": self.vocab_size, "order": self.order})
        np.savez_compressed(path, meta=np.frombuffer(meta.encode(), dtype=np.uint8), **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "MarkovModel":
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            m = cls(meta["vocab_size"], meta["order"])
            m.unigram = z["unigram"]
            m.orders = [
                _Order(*(z[f"o{k}_{name}"] for name in ("ctx_keys", "ctx_count", "ctx_types", "pair_keys",
                                                        "pair_count")))
                for k in range(1, m.order + 1)
            ]
        return m
