"""Does a style classifier hear the bar lines? Real held-out phrases judged as written and with the same
notes barred another way, by each classifier given. A path ending in ":bar-phase" is a classifier of the
first feature set (features 46-54 were the onsets' place in the bar, 8 bins of the bar, where today's are
8 bins of two beats), e.g. the first shipped one:

    git show c75c213:models/style-classifier.pt > /tmp/first.pt
    python scripts/experiment_judge_barring.py models/style-classifier.pt /tmp/first.pt:bar-phase
"""
import sys
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
from engine.corpus.phrases import corpus_phrases, style_corpus  # noqa: E402
from engine.music.melody import Melody  # noqa: E402
from engine.music.tokens import Meter  # noqa: E402
from engine.music.melody import ON  # noqa: E402
from engine.train.style_classifier import load_classifier  # noqa: E402
from engine.train.style_features import feature_matrix  # noqa: E402

PHASE = slice(46, 54)  # the 8 metric-phase features

phrases = corpus_phrases(style_corpus(0), "test", 300, seed=6)


def meter_of(p):
    return (p.melody.meter.numerator, p.melody.meter.denominator)


CASES = (
    ("chorale 4/4 as written", lambda p: p.style == 0 and meter_of(p) == (4, 4), lambda m: m),
    ("the same notes barred 2/4", lambda p: p.style == 0 and meter_of(p) == (4, 4),
     lambda m: Melody(m.notes, Meter(2, 4), m.bars * 2)),
    ("chorale 4/4 (even bars) barred 4/2", lambda p: p.style == 0 and meter_of(p) == (4, 4) and p.melody.bars % 2 == 0,
     lambda m: Melody(m.notes, Meter(4, 2), m.bars // 2)),
    ("renaissance 4/2 as written", lambda p: p.style == 3 and meter_of(p) == (4, 2), lambda m: m),
    ("the same notes barred 4/4", lambda p: p.style == 3 and meter_of(p) == (4, 2),
     lambda m: Melody(m.notes, Meter(4, 4), m.bars * 2)),
    ("folksong 2/4 (even bars) as written", lambda p: p.style == 1 and meter_of(p) == (2, 4) and p.melody.bars % 2 == 0,
     lambda m: m),
    ("the same notes barred 4/4", lambda p: p.style == 1 and meter_of(p) == (2, 4) and p.melody.bars % 2 == 0,
     lambda m: Melody(m.notes, Meter(4, 4), m.bars // 2)),
)
def first_features(melodies) -> np.ndarray:
    x = feature_matrix(melodies)
    for row, m in zip(x, melodies):
        bar = m.bar_ticks()
        h = np.bincount(np.minimum((m.notes[:, ON] % bar) * 8 // bar, 7), minlength=8).astype(np.float64)
        row[PHASE] = h / h.sum() if h.sum() else h
    return x


def judge_of(arg: str):
    path, _, kind = arg.partition(":")
    module = load_classifier(path).module
    features = first_features if kind == "bar-phase" else feature_matrix

    def predict(melodies) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(features(melodies))).argmax(-1).numpy()
    return predict


judges = [(arg, judge_of(arg)) for arg in sys.argv[1:] or ["models/style-classifier.pt"]]
print(f"{'phrases':<40}{'n':>5}" + "".join(f"{path[-40:]:>42}" for path, _ in judges))
for name, select, barring in CASES:
    chosen = [p for p in phrases if select(p)]
    y = np.array([p.style for p in chosen])
    row = f"{name:<40}{len(chosen):>5}"
    for _, judge in judges:
        row += f"{float(np.mean(judge([barring(p.melody) for p in chosen]) == y)):>42.3f}"
    print(row)
