"""What the independent style classifier hears is the notes in time, never the bar lines: the same notes
barred another way give the same features, and the shipped classifier the same answer on real phrases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.music.melody import Melody
from engine.music.tokens import Meter
from engine.train.style_features import N_FEATURES, feature_matrix, style_features

REPO = Path(__file__).resolve().parents[2]
CLASSIFIER = REPO / "models" / "style-classifier.pt"


def test_the_same_notes_barred_four_ways_give_the_same_features():
    rng = np.random.default_rng(0)
    lengths = rng.choice([6, 12, 24, 36, 48], 40)
    ons = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    ons = ons[ons < 384]
    offs = np.minimum(ons + lengths[:len(ons)], 384)
    notes = np.stack([ons, offs, rng.integers(55, 80, len(ons)), np.full(len(ons), 80)], 1).astype(np.int32)
    barrings = [(Meter(4, 4), 4), (Meter(2, 4), 8), (Meter(2, 2), 4), (Meter(4, 2), 2), (Meter(8, 8), 4)]
    rows = [style_features(Melody(notes, meter, bars)) for meter, bars in barrings]
    assert rows[0].shape == (N_FEATURES,)
    for r in rows[1:]:
        assert np.array_equal(r, rows[0])


@pytest.mark.skipif(not CLASSIFIER.exists(), reason="no style classifier (sideman train --config style-classifier)")
def test_the_shipped_classifier_calls_real_chorales_barred_as_two_four_what_it_calls_them_as_written():
    """The first feature set placed onsets in the bar: the held-out chorales barred as 2/4 were chorales
    0 % of the time (88 % as written, docs/benchmarks.md), so restyling a 2/4 folksong into a chorale could
    never be heard as one."""
    from engine.corpus.phrases import corpus_phrases, style_corpus
    from engine.train.style_classifier import load_classifier

    judge = load_classifier(CLASSIFIER)
    chorales = [p.melody for p in corpus_phrases(style_corpus(24), "test", 30, seed=0)
                if p.style == 0 and p.melody.meter == Meter(4, 4)]
    assert len(chorales) >= 4
    as_two_four = [Melody(m.notes, Meter(2, 4), m.bars * 2) for m in chorales]
    assert np.array_equal(feature_matrix(chorales), feature_matrix(as_two_four))
    written, barred = judge.predict(chorales), judge.predict(as_two_four)
    assert np.array_equal(written, barred)
    assert (written == 0).mean() >= 0.5, written
