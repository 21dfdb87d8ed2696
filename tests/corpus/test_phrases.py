"""Melody phrases from the real corpus (a small cache of every style's collections, built by music21):
whole bars of the top voice, one line, in one meter, every style drawn, as-played variants on whole ticks."""

from __future__ import annotations

import numpy as np
import pytest

from engine.corpus.phrases import MAX_BARS, PhraseSampler, corpus_phrases, style_corpus
from engine.music.melody import encode_melody
from engine.music.styles import STYLE_NAMES
from engine.train.humanize import play_melody

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus():
    return style_corpus(24)


def test_phrases_are_whole_bars_of_one_line_with_notes_inside(corpus):
    phrases = corpus_phrases(corpus, "train", 40, seed=0)
    assert {p.style for p in phrases} == set(range(len(STYLE_NAMES)))
    for p in phrases:
        m = p.melody
        assert 1 <= m.bars <= MAX_BARS and len(m.notes) >= 2
        n = m.notes
        assert (n[:, 0] >= 0).all() and (n[:, 1] <= m.length_ticks()).all() and (n[:, 1] > n[:, 0]).all()
        assert (n[1:, 0] >= n[:-1, 1]).all(), "one line: a note ends before the next begins"
        assert sum(1 for t in encode_melody(m) if t == 4) == m.bars + 1  # every bar line, the closing one too (BAR: id 4)


def test_the_sampler_draws_every_style_about_equally(corpus):
    sampler = PhraseSampler(corpus, "train", seed=3)
    counts = np.bincount([sampler.draw()[1] for _ in range(500)], minlength=5)
    assert counts.min() > 60, counts


def test_a_phrase_as_played_moves_its_notes_off_the_grid_and_keeps_its_pitches(corpus):
    rng = np.random.default_rng(0)
    moved = 0
    for p in corpus_phrases(corpus, "val", 10, seed=1, strict=False):
        played = play_melody(p.melody, rng)
        assert played.pitches.tolist() == p.melody.pitches.tolist()
        assert (played.notes[:, 0] >= 0).all()
        moved += int((played.notes[:, :2] != p.melody.notes[:, :2]).any())
    assert moved >= 5
