"""What a bar's content tells of its phrase's style, taken apart: the eval's probe (an MLP on 1,500 train
phrases, balanced accuracy on 500 test phrases, `engine.train.evaluate_restyle`) on parts of `bar_content`
and on the phrase's meter alone.

    python scripts/experiment_probe_content.py [raw ks onsets pcs pcs_ks meter]

    raw      pitch classes by half bar and onsets on a 16-step grid (the eval's bar_content)
    ks       the same, pitch classes turned to the phrase's key (Krumhansl-Schmuckler profiles)
    onsets   the onsets alone
    pcs      the pitch classes alone;  pcs_ks: turned to the key
    meter    the phrase's meter as a one-hot, one row a bar
"""

from __future__ import annotations

import sys

import numpy as np

from engine.corpus.phrases import corpus_phrases, style_corpus
from engine.music.melody import encode_melody
from engine.train.evaluate_restyle import bar_content, probe_accuracy

MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def tonic(melody) -> int:
    """The phrase's key's tonic pitch class (the best-correlated major or minor profile, by sounding time)."""
    hist = np.zeros(12)
    np.add.at(hist, melody.notes[:, 2] % 12, melody.notes[:, 1] - melody.notes[:, 0])
    scores = [(np.corrcoef(hist, np.roll(profile, k))[0, 1], k) for k in range(12) for profile in (MAJOR, MINOR)]
    return max(scores)[1]


def features(phrases, kind: str, meters: list) -> tuple[np.ndarray, np.ndarray]:
    x, y = bar_content(phrases)
    rows, i = [], 0
    for p in phrases:
        k = tonic(p.melody)
        for _ in range(p.melody.bars):
            chroma, onsets = x[i, :24].reshape(2, 12), x[i, 24:]
            i += 1
            turned = np.roll(chroma, -k, axis=1).ravel()
            meter = np.eye(len(meters))[meters.index(p.melody.meter)]
            rows.append({"raw": x[i - 1], "ks": np.concatenate([turned, onsets]), "onsets": onsets,
                         "pcs": chroma.ravel(), "pcs_ks": turned, "meter": meter}[kind])
    return np.asarray(rows), y


def main() -> None:
    kinds = sys.argv[1:] or ["raw", "ks", "onsets", "pcs", "pcs_ks", "meter"]
    corpus = style_corpus(0)
    train = [p for p in corpus_phrases(corpus, "train", 300, seed=5) if len(encode_melody(p.melody)) <= 256]
    test = [p for p in corpus_phrases(corpus, "test", 100, seed=6) if len(encode_melody(p.melody)) <= 256]
    meters = sorted({p.melody.meter for p in train + test}, key=lambda m: (m.numerator, m.denominator))
    for kind in kinds:
        print(kind, round(probe_accuracy(*features(train, kind, meters), *features(test, kind, meters), 0), 4),
              flush=True)


if __name__ == "__main__":
    main()
