"""The variable-order Markov baseline: a proper distribution, consistent scoring, learns structure."""

import numpy as np
import pytest

from engine.train.markov import MarkovModel


def test_next_distribution_sums_to_one_and_matches_scoring():
    rng = np.random.default_rng(0)
    seqs = [rng.integers(0, 20, size=300) for _ in range(5)]
    m = MarkovModel(20, order=4).fit(seqs)
    probe = rng.integers(0, 20, size=50)
    p_vec = m.token_probabilities(probe, start=1)
    for i in (1, 2, 5, 30, 49):
        dist = m.next_distribution(probe[:i])
        assert dist.sum() == pytest.approx(1.0, abs=1e-9)
        assert dist[probe[i]] == pytest.approx(p_vec[i - 1], rel=1e-9)


def test_learns_a_repeating_pattern_and_beats_unigrams():
    pattern = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    train = [np.tile(pattern, 50)]
    m = MarkovModel(10, order=3).fit(train)
    assert m.next_distribution([4, 1, 5])[9] > 0.9
    unigram_only = MarkovModel(10, order=0).fit(train)
    test = [np.tile(pattern, 5)]
    assert m.loss(test) < 0.2 < unigram_only.loss(test)


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    seqs = [rng.integers(0, 30, size=200) for _ in range(3)]
    m = MarkovModel(30, order=3).fit(seqs)
    m.save(tmp_path / "m.npz")
    m2 = MarkovModel.load(tmp_path / "m.npz")
    probe = rng.integers(0, 30, size=40)
    assert np.allclose(m.token_probabilities(probe), m2.token_probabilities(probe))
