"""A phrase barred as a style's lines are barred: the same notes, other bar lines.

Bar lines are not heard (two bars of 2/4 and one of 4/4 sound the same), but the restyle model reads them:
its tokens mark each bar, and it learned each style in the meters its collection is written in
(`engine.music.styles`: the chorales in 4/4 and 3/4, the Renaissance lines in 4/2). Asked for a chorale
line in bars of 4/2, which it never saw, it wrote a fast, dense line that no listener would call a chorale
(the independent classifier: 2 of 24 Renaissance phrases; barred as 4/4, 15 of 24, with more of the phrase
kept: chroma 0.49 against 0.29; docs/benchmarks.md). So the model is given the phrase in the target style's
bars where the phrase's bar splits evenly into one of them, and its notes come back in the phrase's meter.

    view = barred_for(melody, "chorale")      # a 2-bar 4/2 phrase -> 4 bars of 4/4, the same notes
"""

from __future__ import annotations

from engine.music.melody import Melody
from engine.music.styles import STYLES, style_index
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB, Vocab

SPLITS = (2, 3, 4)  # a bar may be cut into this many equal bars


def barred_for(melody: Melody, style: str, vocab: Vocab = DEFAULT_VOCAB) -> Melody:
    """The melody with the bar lines of `style`: itself when its bar is one of the style's bar lengths or
    divides into none of them; else each bar cut into the fewest equal bars of a length the style has (its
    most common meter of that length). The notes and the phrase's length are unchanged."""
    tpb = vocab.config.ticks_per_beat
    meters = [Meter(n, d) for n, d in STYLES[style_index(style)].meters]
    bar = melody.bar_ticks(vocab)
    if any(m.bar_ticks(tpb) == bar for m in meters):
        return melody
    for k in SPLITS:
        if bar % k:
            continue
        for m in meters:
            if m.bar_ticks(tpb) * k == bar:
                return Melody(melody.notes, m, melody.bars * k)
    return melody


__all__ = ["SPLITS", "barred_for"]
