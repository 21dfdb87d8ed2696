"""Melody phrases from the corpus, with their style: what the style classifier and the restyle model learn from.

A phrase is 1-4 whole bars of a piece's top voice (part 0: the chorale's soprano, the tune, the motet's
cantus) as one line, from a bar line, inside one meter, with at least two notes. Its ticks count from
its first bar line; a note that crosses the phrase's end is cut there, one tied in from before is left out.

    phrases = corpus_phrases(corpus, "val")           # deterministic: each piece cut into 1-4 bar phrases
    sampler = PhraseSampler(corpus, "train", seed=1)   # random phrases, the styles drawn equally often
    melody, style = sampler.draw()
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.corpus.dataset import Corpus, PieceRef
from engine.corpus.piece import OFF, ON, PART, PITCH, VELOCITY, Piece, piece_rng
from engine.music.melody import Melody, one_line
from engine.music.styles import STYLE_NAMES, STYLES
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB, Vocab

MAX_BARS = 4
MIN_NOTES = 2


@dataclass(frozen=True)
class StyledPhrase:
    melody: Melody
    style: int  # index into STYLE_NAMES
    piece_id: str
    bar: int  # the phrase's first bar in the piece


def top_line(piece: Piece) -> np.ndarray:
    """Part 0's notes as one line: (N, 4) on, off, pitch, velocity."""
    notes = piece.notes[piece.notes[:, PART] == 0][:, [ON, OFF, PITCH, VELOCITY]]
    return one_line(notes)


def bar_grid(piece: Piece, vocab: Vocab = DEFAULT_VOCAB) -> list[tuple[int, Meter]]:
    """Every bar of the piece as (start tick, meter), up to the end of its last note."""
    tpb = vocab.config.ticks_per_beat
    rows = piece.bars.tolist()
    end = piece.end_tick
    out: list[tuple[int, Meter]] = []
    for i, (tick, num, den) in enumerate(rows):
        stop = rows[i + 1][0] if i + 1 < len(rows) else end
        meter = Meter(int(num), int(den))
        step = meter.bar_ticks(tpb)
        last = i + 1 == len(rows)
        t = int(tick)
        while (t < stop) if last else (t + step <= stop):  # a short measure before a change is left out
            out.append((t, meter))
            t += step
    return out


def phrase_at(line: np.ndarray, grid: list[tuple[int, Meter]], bar: int, bars: int,
              vocab: Vocab = DEFAULT_VOCAB) -> Melody | None:
    """The phrase of `bars` bars from bar index `bar`, or None (too few notes, a meter change inside)."""
    if bar + bars > len(grid):
        return None
    start, meter = grid[bar]
    step = meter.bar_ticks(vocab.config.ticks_per_beat)
    if any(grid[bar + k][1] != meter or grid[bar + k][0] != start + k * step for k in range(bars)):
        return None
    end = start + bars * step
    inside = line[(line[:, 0] >= start) & (line[:, 0] < end)]
    if len(inside) < MIN_NOTES:
        return None
    notes = inside.copy()
    notes[:, 0] -= start
    notes[:, 1] = np.minimum(notes[:, 1], end) - start
    return Melody(notes.astype(np.int32), meter, bars)


def piece_phrases(piece: Piece, style: int, vocab: Vocab = DEFAULT_VOCAB, low: int = 1,
                  high: int = MAX_BARS) -> list[StyledPhrase]:
    """The piece cut into consecutive phrases of 1-4 bars (lengths drawn per phrase, seeded by its id)."""
    line = top_line(piece)
    grid = bar_grid(piece, vocab)
    rng = piece_rng(piece, "restyle-phrases")
    out, bar = [], 0
    while bar < len(grid):
        n = int(rng.integers(low, high + 1))
        m = phrase_at(line, grid, bar, n, vocab)
        if m is not None:
            out.append(StyledPhrase(m, style, piece.id, bar))
        bar += n
    return out


def style_corpus(limit: int = 0, data_dir=None, vocab: Vocab = DEFAULT_VOCAB) -> Corpus:
    """The corpus cache with every style's collections (`limit` pieces each; 0 = all), built first if missing."""
    from engine.corpus.build import BuildConfig, build, cache_dir
    from engine.music.styles import all_collections

    directory = cache_dir(data_dir, vocab, limit or None)
    missing = [c for c in all_collections() if not (directory / f"{c}.npz").exists()]
    if missing:
        build(BuildConfig(collections=all_collections(), limit=limit or None, data_dir=data_dir, vocab=vocab,
                          progress=False))
    return Corpus(directory, vocab)


def style_refs(corpus: Corpus, split: str, strict: bool = True) -> list[list[PieceRef]]:
    """The split's pieces, one list per style (in STYLE_NAMES order); a style without pieces is an error when
    `strict` (a tiny corpus for tests may lack a style in a small split)."""
    out = []
    for s in STYLES:
        refs = corpus.refs(split, [c for c in s.collections if c in corpus.collections])
        out.append(refs)
    missing = [STYLE_NAMES[i] for i, r in enumerate(out) if not r]
    if missing and strict:
        from engine.errors import DataError

        raise DataError(f"the corpus at {corpus.dir} has no {split} pieces of the styles {', '.join(missing)}; "
                        "build them with `sideman data build`")
    return out


def corpus_phrases(corpus: Corpus, split: str, per_style: int | None = None, seed: int = 0,
                   vocab: Vocab = DEFAULT_VOCAB, strict: bool = True) -> list[StyledPhrase]:
    """Deterministic phrases of a split: at most `per_style` of each style (drawn evenly over its pieces)."""
    rng = np.random.default_rng(seed)
    out: list[StyledPhrase] = []
    for style, refs in enumerate(style_refs(corpus, split, strict)):
        pool: list[StyledPhrase] = []
        for ref in refs:
            pool += piece_phrases(corpus.piece(ref), style, vocab)
        if per_style is not None and len(pool) > per_style:
            pool = [pool[i] for i in sorted(rng.choice(len(pool), per_style, replace=False))]
        out += pool
    return out


class PhraseSampler:
    """Random phrases of a split: a style drawn uniformly, then a piece, then a phrase of 1-4 bars in it."""

    def __init__(self, corpus: Corpus, split: str, seed: int = 0, vocab: Vocab = DEFAULT_VOCAB,
                 limit: int = 0) -> None:
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)
        self.pieces: list[list[tuple[np.ndarray, list[tuple[int, Meter]], str]]] = []
        for refs in style_refs(corpus, split):
            refs = refs[:limit] if limit else refs
            loaded = []
            for ref in refs:
                piece = corpus.piece(ref)
                line, grid = top_line(piece), bar_grid(piece, vocab)
                if len(line) >= MIN_NOTES and grid:
                    loaded.append((line, grid, piece.id))
            self.pieces.append(loaded)

    def draw(self) -> tuple[Melody, int]:
        while True:
            style = int(self.rng.integers(len(self.pieces)))
            line, grid, _ = self.pieces[style][int(self.rng.integers(len(self.pieces[style])))]
            bars = int(self.rng.integers(1, MAX_BARS + 1))
            bar = int(self.rng.integers(max(1, len(grid) - bars + 1)))
            m = phrase_at(line, grid, bar, bars, self.vocab)
            if m is not None:
                return m, style


__all__ = ["MAX_BARS", "PhraseSampler", "StyledPhrase", "bar_grid", "corpus_phrases", "phrase_at",
           "piece_phrases", "style_corpus", "style_refs", "top_line"]
