"""Does the restyle work hold the GIL long enough to delay another thread (the scheduler)? A probe thread
sleeps 1 ms in a loop and records how late it wakes while the main thread runs each piece of a live restyle
candidate's work (switch interval 0.5 ms, as the daemon sets it), and each part of a decode step.

    python scripts/experiment_gil_probe.py
"""
import sys
import threading
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")
sys.setswitchinterval(0.0005)
from engine.model.modelfile import load_model
from engine.model.session import ModelSession
from engine.model.restyler import Restyler, RestyleSettings
from engine.music.melody import Melody, encode_melody
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB as V
r = Restyler(ModelSession(load_model("models/restyle.pt", V), device="cpu", threads=1), V)
notes = np.array([[0,12,62,80],[12,24,66,80],[24,36,69,80],[36,48,74,80],[48,60,73,80],[60,72,71,80],[72,84,69,80],[84,96,66,80]]*1, dtype=np.int32)
m = Melody(notes, Meter(4,4), 1)
s = RestyleSettings(style="fiddle")
def probe(stop, out):
    while not stop.is_set():
        t = time.perf_counter(); time.sleep(0.001); out.append(time.perf_counter() - t - 0.001)
def measure(name, f, n):
    stop, out = threading.Event(), []
    th = threading.Thread(target=probe, args=(stop, out)); th.start()
    t0 = time.perf_counter()
    for _ in range(n): f()
    el = time.perf_counter() - t0
    stop.set(); th.join()
    a = np.array(out) * 1000
    print(f"{name:28s} {el/n*1000:7.2f} ms each; probe wake-up lateness p99 {np.percentile(a,99):.2f} max {a.max():.2f} ms (n {len(a)})")
measure("idle", lambda: time.sleep(0.01), 100)
tok = encode_melody(m, V)
measure("own_style (critic)", lambda: r.own_style(tok), 200)
measure("latent (encoder)", lambda: r.session.module.encode(r._tensor(tok)), 200)
def cand():
    d = r.begin(m, s); d.run(); r.score(m, d)
measure("whole candidate + score", cand, 30)
r._encoded = None
def first():
    r._encoded = None; r.begin(m, s)
measure("begin, not memo'd", first, 100)
# the parts of one decode step of a candidate: the grammar's mask, the sampler, the guided append (two native
# kernel steps and the guidance's mix); a fresh begin every 100 appends keeps the position inside the window
d = r.begin(m, s, seed=1)
measure("a step's mask", d._mask, 3000)
logits, mask = d._logits, d._mask()
measure("a step's sample", lambda: d.sampler.sample(logits, mask), 3000)
fresh = {"i": 0, "d": d}
def append():
    fresh["i"] += 1
    if fresh["i"] % 100 == 0:
        fresh["d"] = r.begin(m, s, seed=1)
    fresh["d"].model.append(V.shift_base + 1)
measure("a step's append (guided)", append, 2000)
measure("idle again", lambda: time.sleep(0.002), 1000)
