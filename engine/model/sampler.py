"""Sampling: temperature, top-k, top-p, seeded; musical constraints as masks; beam search offline.

    sampler = Sampler(SamplingConfig(temperature=0.9, top_p=0.95, seed=1))
    constraints = Constraints.parse(key="D minor", low=48, high=84, max_polyphony=3)
    tokens = generate(session, state, sampler, 64, role=1, constraints=constraints)

Masks are bool tensors over the vocabulary (True = allowed). The grammar mask (engine.model.grammar) keeps
the stream well formed; `constraint_mask` adds the musical constraints, which only ever remove
note-ons, so a shift or BAR always stays allowed and sampling never gets stuck.

The per-token path (masks, then sampling) runs in numpy on the vocabulary's few hundred floats: a torch
operator costs ~10 us of dispatch here, and the path had ~20 of them per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Callable

import numpy as np
import torch

from engine.model.grammar import GrammarState, apply_mask, grammar_mask_np
from engine.music.vocab import DEFAULT_VOCAB, Vocab

NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SCALES: dict[str, tuple[int, ...]] = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "natural minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic minor": (0, 2, 3, 5, 7, 8, 11),
    "melodic minor": (0, 2, 3, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "locrian": (0, 1, 3, 5, 6, 8, 10),
    "major pentatonic": (0, 2, 4, 7, 9),
    "minor pentatonic": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
    "chromatic": tuple(range(12)),
}


def parse_key(name: str) -> frozenset[int]:
    """'D minor', 'F# dorian', 'Bb major pentatonic', 'c' (major) -> the scale's pitch classes."""
    parts = name.strip().split(None, 1)
    if not parts:
        raise ValueError("empty key name; write a tonic and a scale, e.g. 'D minor'")
    tonic, scale = parts[0], (parts[1].strip().lower() if len(parts) > 1 else "major")
    letter = tonic[:1].upper()
    if letter not in NOTE_NAMES or any(c not in "#b" for c in tonic[1:]):
        raise ValueError(f"unknown tonic {tonic!r} in key {name!r}; use C, C#, Db, ... B")
    pc = (NOTE_NAMES[letter] + tonic[1:].count("#") - tonic[1:].count("b")) % 12
    scale = " ".join(scale.split())
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r} in key {name!r}; known scales: {', '.join(SCALES)}")
    return frozenset((pc + i) % 12 for i in SCALES[scale])


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0 or self.top_k < 0 or not 0.0 < self.top_p <= 1.0:
            raise ValueError("temperature >= 0, top_k >= 0 and 0 < top_p <= 1 are required")


@dataclass(frozen=True)
class Constraints:
    """Musical constraints on generated note-ons. `pitch_classes` None = any key."""

    pitch_classes: frozenset[int] | None = None
    low: int = 0
    high: int = 127
    max_polyphony: int = 0  # 0 = unlimited
    max_note_ticks: int = 0  # the longest a note may be held, in ticks; 0 = unlimited

    @classmethod
    def parse(cls, key: str | None = None, low: int = 0, high: int = 127, max_polyphony: int = 0) -> "Constraints":
        if not 0 <= low <= high <= 127:
            raise ValueError(f"pitch range {low}..{high} is not within 0..127 with low <= high")
        if max_polyphony < 0:
            raise ValueError("max_polyphony must be >= 0 (0 = unlimited)")
        return cls(parse_key(key) if key else None, low, high, max_polyphony)


def follow_texture(constraints: Constraints | None, phrase_voices: int, extra_voices: int | None) -> Constraints | None:
    """The constraints for an answer at most `extra_voices` voices thicker than the phrase it answers
    (`phrase_voices`: the most notes the phrase held together, engine.music.texture; counted as at
    least 1). `extra_voices` None: as thick as the model likes, up to the constraints' max_polyphony.
    A one-voice tune gets a one- or two-voice answer; a chordal phrase may get chords."""
    if extra_voices is None:
        return constraints
    base = constraints if constraints is not None else Constraints()
    limit = max(1, phrase_voices) + extra_voices
    if base.max_polyphony:
        limit = min(limit, base.max_polyphony)
    return replace(base, max_polyphony=limit)


def follow_note_length(constraints: Constraints | None, phrase_longest: int, bar_ticks: int,
                       longest_bars: int | None) -> Constraints | None:
    """The constraints for an answer whose notes are held no longer than the phrase's longest note or
    `longest_bars` bars, whichever is longer (`phrase_longest` in ticks, engine.model.grammar's
    `player_longest_note`). `longest_bars` None: held as long as the model likes. A note the model would hold
    on is released when it reaches the limit: time cannot move on until it is (`constraint_mask_np`)."""
    if longest_bars is None:
        return constraints
    base = constraints if constraints is not None else Constraints()
    return replace(base, max_note_ticks=max(1, phrase_longest, longest_bars * bar_ticks))


@lru_cache(maxsize=64)
def _constraint_masks(constraints: Constraints, vocab: Vocab) -> tuple[np.ndarray, np.ndarray]:
    """(the note-ons the key and range allow, no note-on at all (polyphony full)) over the vocabulary."""
    allowed = np.ones(vocab.size, dtype=bool)
    ons = allowed[vocab.note_on_base:vocab.note_on_base + vocab.config.n_pitches]  # a view
    full = allowed.copy()
    full[vocab.note_on_base:vocab.note_on_base + vocab.config.n_pitches] = False
    ons[:constraints.low] = False
    ons[constraints.high + 1:] = False
    if constraints.pitch_classes is not None:
        ons &= np.isin(np.arange(vocab.config.n_pitches) % 12, sorted(constraints.pitch_classes))
    allowed.setflags(write=False)
    full.setflags(write=False)
    return allowed, full


def constraint_mask_np(constraints: Constraints, state: GrammarState, role: int) -> np.ndarray:
    """Bool (V,), read-only: False for the note-ons the constraints forbid now, and for the shifts that
    would hold a sounding note past `max_note_ticks`; a note held that long is released next (only its
    note-off, or a BAR or ROLE token the grammar puts first, is allowed); everything else True."""
    allowed, full = _constraint_masks(constraints, state.vocab)
    mask = allowed
    if constraints.max_polyphony and len(state.sounding_pitches(role)) >= constraints.max_polyphony:
        mask = full
    if constraints.max_note_ticks:
        v = state.vocab
        held = {p: state.position - tick for (r, p), tick in state.on_tick.items() if r == role}
        room = constraints.max_note_ticks - max(held.values(), default=0)  # ticks the longest-held may still sound
        if room <= 0:  # released now: nothing else sounds or moves before it (no cluster struck to wait)
            mask = np.zeros(v.size, dtype=bool)
            mask[[v.note_off(p) for p, ticks in held.items() if ticks >= constraints.max_note_ticks]] = True
            mask[v.bar] = mask[v.role(role)] = True
        elif room < v.config.max_shift:
            mask = mask.copy()
            mask[v.shift_base + room:v.shift_base + v.config.max_shift] = False
    return mask


def constraint_mask(constraints: Constraints, state: GrammarState, role: int) -> torch.Tensor:
    """Bool (V,): False for the note-ons the constraints forbid now; everything else True."""
    return torch.from_numpy(constraint_mask_np(constraints, state, role).copy())


def allowed_mask_np(state: GrammarState, role: int, constraints: Constraints | None = None) -> np.ndarray:
    """The grammar's mask and the constraints', a new numpy array."""
    mask = grammar_mask_np(state, role)
    if constraints is not None:
        mask &= constraint_mask_np(constraints, state, role)
    return mask


def allowed_mask(state: GrammarState, role: int, constraints: Constraints | None = None) -> torch.Tensor:
    return torch.from_numpy(allowed_mask_np(state, role, constraints))


class Sampler:
    """Draws tokens from logits under a mask; the same seed gives the same tokens."""

    def __init__(self, config: SamplingConfig = SamplingConfig()) -> None:
        self.config = config
        self.rng = np.random.default_rng(config.seed)  # seed None: fresh entropy

    def _probabilities(self, logits: torch.Tensor, mask) -> np.ndarray:
        """The distribution sampled from (after mask, temperature, top-k, top-p); (V,) float64."""
        c = self.config
        x = logits.detach().reshape(-1).float().cpu().numpy().astype(np.float64)
        if mask is not None:
            m = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            x[~m] = -np.inf
        if not np.isfinite(x).any():
            raise ValueError("no token is allowed: the mask excludes every token")
        if c.temperature == 0:
            out = np.zeros_like(x)
            out[int(np.argmax(x))] = 1.0
            return out
        x /= c.temperature
        if c.top_k and c.top_k < x.size:
            kth = np.partition(x, x.size - c.top_k)[x.size - c.top_k]  # the k-th largest
            x[x < kth] = -np.inf
        probs = np.exp(x - x.max())
        probs /= probs.sum()
        if c.top_p < 1.0:
            idx = np.argsort(-probs, kind="stable")
            sorted_p = probs[idx]
            drop = (np.cumsum(sorted_p) - sorted_p) > c.top_p  # keep the smallest prefix whose mass reaches top_p
            probs[idx[drop]] = 0.0
            probs /= probs.sum()
        return probs

    def probabilities(self, logits: torch.Tensor, mask: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
        """The distribution sampled from (after mask, temperature, top-k, top-p); (V,) float32."""
        return torch.from_numpy(self._probabilities(logits, mask).astype(np.float32))

    def sample(self, logits: torch.Tensor, mask: torch.Tensor | np.ndarray | None = None) -> int:
        probs = self._probabilities(logits, mask)
        if self.config.temperature == 0:
            return int(np.argmax(probs))
        cum = np.cumsum(probs)
        i = int(np.searchsorted(cum, self.rng.random() * cum[-1], side="right"))  # never a zero-width token
        return i if i < probs.size else int(np.flatnonzero(probs)[-1])


def generate(session, state: GrammarState, sampler: Sampler, n_tokens: int, role: int,
             constraints: Constraints | None = None, stop: Callable[[int], bool] | None = None) -> list[int]:
    """Sample up to n_tokens in `role`, appending each to the session and the state; `stop(token)` ends early."""
    out: list[int] = []
    for _ in range(n_tokens):
        logits = session.logits
        if logits is None:
            raise ValueError("the session is empty: feed a prompt (at least BOS) before generating")
        token = sampler.sample(logits, allowed_mask_np(state, role, constraints))
        session.append(token)
        state.feed(token)
        out.append(token)
        if stop is not None and stop(token):
            break
    return out


@dataclass
class _Beam:
    tokens: list[int]
    score: float
    state: GrammarState
    logits: torch.Tensor | None = None


def beam_search(session, state: GrammarState, n_tokens: int, role: int, beam_width: int = 4,
                constraints: Constraints | None = None) -> tuple[list[int], float]:
    """The most likely continuation of n_tokens (<= the session's max_rollback) under the masks.

    For offline use: every beam is evaluated in the one session by rolling back to the common prefix
    and feeding the difference. Returns (tokens, log-probability); the session is left after the best
    tokens (the caller feeds them to its own state; `state` is not changed).
    """
    if n_tokens > session.max_rollback:
        raise ValueError(f"beam search over {n_tokens} tokens needs rollback beyond max_rollback "
                         f"{session.max_rollback}; search shorter spans")
    root = session.position
    if session.logits is None:
        raise ValueError("the session is empty: feed a prompt (at least BOS) before searching")
    beams = [_Beam([], 0.0, state.copy(), session.logits)]
    cached: list[int] = []  # tokens after root currently in the session

    def seek(tokens: list[int]) -> torch.Tensor:
        nonlocal cached
        common = 0
        while common < min(len(tokens), len(cached)) and tokens[common] == cached[common]:
            common += 1
        if common < len(cached):
            session.rollback(root + common)
        logits = session.feed(tokens[common:]) if len(tokens) > common else session.logits
        cached = list(tokens)
        return logits

    for _ in range(n_tokens):
        candidates: list[tuple[float, int, int]] = []
        for b_i, beam in enumerate(beams):
            mask = allowed_mask(beam.state, role, constraints)
            logp = torch.log_softmax(apply_mask(beam.logits.float(), mask), dim=-1)
            k = min(beam_width, int(mask.sum()))
            top = torch.topk(logp, k)
            for lp, tok in zip(top.values.tolist(), top.indices.tolist()):
                if math.isfinite(lp):
                    candidates.append((beam.score + lp, b_i, tok))
        candidates.sort(key=lambda c: (-c[0], c[1], c[2]))
        new_beams = []
        for score, b_i, tok in sorted(candidates[:beam_width], key=lambda c: (c[1], c[2])):
            parent = beams[b_i]
            st = parent.state.copy()
            st.feed(tok)
            tokens = parent.tokens + [tok]
            new_beams.append(_Beam(tokens, score, st, seek(tokens)))
        beams = new_beams
    best = max(beams, key=lambda b: b.score)
    seek(best.tokens)
    return best.tokens, best.score
