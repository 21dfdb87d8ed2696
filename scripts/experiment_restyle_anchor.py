"""Content kept by a restyle model, and whether the phrase's first note given to it brings the content back:
for 10 test phrases a style, the amount-0 chroma (the phrase in its own style) and the critic's pick of 4 into
each other style (target style by the independent classifier, chroma), with the decoder free and with its
first note-on held to the phrase's first pitch (the "anchored" rows; a check of the idea, done here by
narrowing `RestyleDecode._mask`, not a runtime option).

    python scripts/experiment_restyle_anchor.py runs/restyle-mmd/restyle-mmd.pt models/restyle.pt
"""

import sys, warnings, numpy as np
warnings.filterwarnings("ignore")
from engine.corpus.phrases import style_corpus
from engine.train.evaluate_restyle import _phrases
from engine.model.modelfile import load_model
from engine.model.session import ModelSession
from engine.model.restyler import Restyler, RestyleSettings, RestyleDecode
from engine.model.sampler import SamplingConfig
from engine.music.similarity import chroma_similarity
from engine.music.styles import STYLE_NAMES
from engine.music.vocab import DEFAULT_VOCAB as V
from engine.train.style_classifier import load_classifier
orig_mask = RestyleDecode._mask
def anchored_mask(self):
    mask = orig_mask(self)
    if not self._entered and len(self.source.notes):
        first = int(self.source.notes[0, 2])
        ons = np.zeros_like(mask); ons[V.note_on_base:V.note_on_base + V.config.n_pitches] = True
        keep = mask & ~ons
        if mask[V.note_on(first)]: keep[V.note_on(first)] = True
        mask = keep
    return mask
corpus = style_corpus(0); phrases = _phrases(corpus, 10, 0)
judge = load_classifier()
for anchored in (False, True):
    RestyleDecode._mask = anchored_mask if anchored else orig_mask
    for path in sys.argv[1:]:
        r = Restyler(ModelSession(load_model(path, V), device="cpu", threads=1), V)
        outs = [r.restyle(p.melody, RestyleSettings(style=STYLE_NAMES[p.style], amount=0.0, sampling=SamplingConfig(0.8, 0, 0.95, None)), seed=i) for i, p in enumerate(phrases)]
        a0 = float(np.mean([chroma_similarity(p.melody, o) for p, o in zip(phrases, outs)]))
        outs, srcs, tg = [], [], []
        for i, p in enumerate(phrases):
            for t in range(5):
                if t == p.style: continue
                outs.append(r.restyle(p.melody, RestyleSettings(style=STYLE_NAMES[t], candidates=4, sampling=SamplingConfig(0.8, 0, 0.95, None)), seed=i*10+t)); srcs.append(p.melody); tg.append(t)
        acc = float((judge.predict(outs) == np.asarray(tg)).mean())
        ch = float(np.mean([chroma_similarity(s, o) for s, o in zip(srcs, outs)]))
        print("anchored" if anchored else "free", path, "amount-0 chroma %.3f; pick of 4: target %.3f chroma %.3f" % (a0, acc, ch), flush=True)
