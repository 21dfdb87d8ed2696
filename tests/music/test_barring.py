"""A phrase barred for a style: the same notes and length, the style's bar lines where the phrase's bar
splits evenly into one of the style's bars, and the phrase itself otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from engine.music.barring import barred_for
from engine.music.melody import Melody
from engine.music.styles import STYLE_NAMES, STYLES
from engine.music.tokens import Meter


def phrase(meter: Meter, bars: int) -> Melody:
    bar = meter.bar_ticks(24)
    ons = np.arange(0, bar * bars, 24)
    notes = np.stack([ons, ons + 24, 60 + (ons // 24) % 12, np.full_like(ons, 80)], 1).astype(np.int32)
    return Melody(notes, meter, bars)


@pytest.mark.parametrize("meter, bars, style, want, want_bars", [
    (Meter(4, 2), 2, "chorale", Meter(4, 4), 4),     # a Renaissance bar of 8 beats: two chorale bars
    (Meter(3, 1), 1, "chorale", Meter(4, 4), 3),     # 12 beats: three bars of 4/4 (the fewest equal bars)
    (Meter(3, 2), 2, "chorale", Meter(3, 4), 4),     # 6 beats: two bars of 3/4
    (Meter(4, 2), 1, "folksong", Meter(4, 4), 2),
    (Meter(4, 2), 3, "medieval", Meter(2, 2), 6),    # the Trecento's 4-beat bars are 2/2
    (Meter(4, 4), 2, "medieval", Meter(4, 4), 2),    # as long as its 2/2: unchanged (the live default)
    (Meter(9, 8), 1, "fiddle", Meter(9, 8), 1),      # no fiddle bar of 4.5 beats or a half or third of it
    (Meter(3, 2), 1, "fiddle", Meter(6, 8), 2),      # 6 beats: two bars of the fiddle's 6/8
    (Meter(4, 2), 2, "renaissance", Meter(4, 2), 2),  # its own meter: unchanged
    (Meter(2, 4), 3, "chorale", Meter(2, 4), 3),     # 2 beats split into no chorale bar: unchanged
    (Meter(9, 8), 2, "chorale", Meter(9, 8), 2),     # 4.5 beats: none either
    (Meter(2, 2), 2, "chorale", Meter(2, 2), 2),     # the length of a 4/4 bar: nothing to change
])
def test_a_bar_the_style_never_has_is_cut_into_bars_it_has(meter, bars, style, want, want_bars):
    m = phrase(meter, bars)
    view = barred_for(m, style)
    assert (view.meter, view.bars) == (want, want_bars)
    assert view.length_ticks() == m.length_ticks()
    assert np.array_equal(view.notes, m.notes)
    if (want, want_bars) == (meter, bars):
        assert view is m


def test_every_style_keeps_a_phrase_in_each_of_its_own_meters():
    for s in STYLES:
        assert s.meters and s.name in STYLE_NAMES
        for n, d in s.meters:
            m = phrase(Meter(n, d), 2)
            assert barred_for(m, s.name) is m
