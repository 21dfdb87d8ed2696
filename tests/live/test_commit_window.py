"""The accompaniment's commit window: fixed, or following the model thread's measured lag."""

import pytest

from engine.live.commit_window import CommitWindow


def test_a_fixed_window_is_always_the_presets():
    w = CommitWindow(50.0, adaptive=False)
    for i in range(100):
        w.observe(0.5, i * 0.01)
    assert w.ms(1.0) == 50.0


def test_the_adaptive_window_keeps_the_ceiling_until_it_has_seen_enough_lags():
    w = CommitWindow(50.0, warmup=32)
    for i in range(31):
        w.observe(1.0, i * 0.01)
    assert w.ms(0.31) == 50.0
    w.observe(1.0, 0.32)
    assert w.ms(0.32) == pytest.approx(15.0)  # 2 x 1 + 5 = 7, below the floor


def test_the_adaptive_window_is_twice_the_longest_recent_lag_plus_headroom_within_floor_and_ceiling():
    w = CommitWindow(50.0, warmup=1)
    w.observe(4.0, 0.0)
    w.observe(9.0, 0.5)
    w.observe(2.0, 1.0)
    assert w.longest_lag_ms(1.0) == 9.0
    assert w.ms(1.0) == pytest.approx(2 * 9.0 + 5.0)
    w.observe(30.0, 2.0)  # a stall widens it at once, to the ceiling at most
    assert w.ms(2.0) == 50.0


def test_a_stall_is_forgotten_after_the_memory_and_the_window_narrows_again():
    w = CommitWindow(50.0, warmup=1, memory_s=20.0)
    w.observe(30.0, 0.0)
    t = 0.0
    while t < 25.0:
        t += 0.1
        w.observe(3.0, t)
        if t < 19.9:
            assert w.ms(t) == 50.0
    assert w.longest_lag_ms(t) == 3.0
    assert w.ms(t) == pytest.approx(2 * 3.0 + 5.0 if 2 * 3.0 + 5.0 > 15.0 else 15.0)


def test_the_sliding_maximum_is_the_true_maximum_of_the_memory():
    import random

    rng = random.Random(3)
    w = CommitWindow(500.0, warmup=1, memory_s=1.0, floor_ms=0.0, headroom_ms=0.0, margin=1.0)
    seen = []
    for i in range(2000):
        t, lag = i * 0.01, rng.expovariate(0.5)
        w.observe(lag, t)
        seen.append((t, lag))
        assert w.longest_lag_ms(t) == max(x for s, x in seen if s >= t - 1.0)


def test_a_ceiling_at_or_below_the_floor_is_the_window():
    w = CommitWindow(10.0, warmup=1)
    w.observe(0.1, 0.0)
    assert w.ms(0.0) == 10.0


def test_new_settings_keep_what_was_measured():
    w = CommitWindow(50.0, warmup=1)
    w.observe(8.0, 0.0)
    w.configure(30.0, True, 10.0)
    assert w.ms(0.0) == pytest.approx(21.0)
    w.configure(30.0, False, 10.0)
    assert w.ms(0.0) == 30.0
