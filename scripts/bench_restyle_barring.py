"""Restyler.begin (the encode, the critic, both conditions, the headers: what a phrase end costs before the
first decode step) with the target style's bar lines and without, side by side on the same phrases: real
3/4 phrases of the small cache barred as 3/2 (a clock in 3/2), into chorale (the model reads 3/4 bars)."""
import time, warnings, numpy as np, torch
warnings.filterwarnings("ignore")
from engine.corpus.phrases import corpus_phrases, style_corpus
from engine.model.modelfile import load_model
from engine.model.restyler import Restyler, RestyleSettings
from engine.model.session import ModelSession
from engine.music.melody import Melody
from engine.music.tokens import Meter
r = Restyler(ModelSession(load_model("models/restyle.pt"), device="cpu", threads=1))
ph = [Melody(p.melody.notes, Meter(3, 2), p.melody.bars // 2) for p in corpus_phrases(style_corpus(24), "test", 60, seed=0)
      if p.melody.meter == Meter(3, 4) and p.melody.bars % 2 == 0][:10]
settings = {"rebar": RestyleSettings(style="chorale"), "no rebar": RestyleSettings(style="chorale", rebar=False)}
assert r.begin(ph[0], settings["rebar"]).meter == Meter(3, 4)
times = {k: [] for k in settings}
for rep in range(30):
    for m in ph:
        for k, s in settings.items():
            t = time.perf_counter(); r.begin(m, s, seed=0); times[k].append((time.perf_counter() - t) * 1e3)
for k, v in times.items():
    print(f"{k:<10} p50 {np.percentile(v, 50):.2f} ms  p99 {np.percentile(v, 99):.2f} ms  (n {len(v)}, {len(ph)} phrases)")
print("ratio p50 rebar / no rebar", round(np.percentile(times["rebar"], 50) / np.percentile(times["no rebar"], 50), 3))
