"""`sideman eval --task restyle`: the restyle model on held-out phrases, every source -> target style pair.

For each style, `per_style` phrases of the test split (1-4 bars, the top voice) are restyled into each other
style, from the phrase as written (clean) and as a person plays it (`play_melody`). Reported:

    ceiling            the independent classifier's accuracy on held-out real phrases (its card)
    target accuracy    the share of restyled phrases the classifier calls the target style (over all pairs,
                       and per pair); also relative to the ceiling
    chroma             Groove2Groove's chroma similarity to the source as written (engine.music.similarity)
    onsets             onset-pattern similarity to the source
    baselines          the source copied (all content, no style) and a random real phrase of the target style
                       (all style, no content), through the same measures
    reconstruction     teacher-forced token accuracy of the decoder given z and the phrase's own style
                       (same style in and out), and amount 0 sampled: chroma to the source
    critic             the same with `candidates` sampled, the one kept best by the critic's probability of the
                       target plus its chroma similarity to the source (kept only if it helps); with the file's
                       n-gram critic (engine.model.style_ngram) the two critics' mean, and the pick by the
                       model's own critic alone beside it (`model_token_critic`)
    keep               the knobs: the phrase's rhythm kept (the model picks the pitches), its pitches kept
                       (the model picks when each sounds)
    disentanglement    a probe (an MLP trained on every z of train phrases: one a bar, or one a phrase)
                       predicting the phrase's style from each z of test phrases: for the model, and for the
                       ablation trained without the adversary; and the same probe on each bar's own content
                       (`bar_content`: its pitch classes by half bar and its onsets, what z must keep for the
                       chroma and onset measures), how much style a z that keeps the bar cannot help carrying
    given the meter    the restyle keeps the phrase's meter (the decoder's grammar writes bars of the source's
                       length) and its key and register, and the judge hears neither (no meter feature; every
                       phrase it learned from transposed). The meter alone tells the style (a 4/2 phrase is
                       Renaissance), so "chance" for a probe that may read it is the probe on the meter alone.
                       Measured on phrases transposed as the judge's are: the probe on the meter alone, on
                       [z, meter], and what z adds beyond the meter (their difference), for the model, the
                       ablation and each bar's own content. For a model with the anchor (the phrase's
                       pitch-class shares, mean pitch and range, handed to the decoder beside z), the same
                       probes on the anchor alone and on [z, anchor], everything the decoder reads
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from engine.corpus.dataset import Corpus
from engine.corpus.phrases import StyledPhrase, corpus_phrases, style_corpus
from engine.model.modelfile import load_model
from engine.model.restyler import Restyler, RestyleSettings
from engine.model.sampler import SamplingConfig
from engine.model.session import ModelSession
from engine.music.melody import Melody, encode_melody
from engine.music.metrics import Note, listener_metrics
from engine.music.similarity import chroma_similarity, onset_similarity
from engine.music.styles import STYLE_NAMES
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.humanize import play_melody
from engine.train.restyle_model import bar_condition
from engine.train.style_classifier import DEFAULT_PATH as CLASSIFIER_PATH
from engine.train.style_classifier import load_classifier

log = logging.getLogger("sideman.eval.restyle")
REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "restyle.pt"


def _phrases(corpus: Corpus, per_style: int, seed: int, split: str = "test") -> list[StyledPhrase]:
    out = []
    for p in corpus_phrases(corpus, split, None, seed=seed):
        if len(encode_melody(p.melody)) <= 256:
            out.append(p)
    rng = np.random.default_rng(seed)
    chosen = []
    for s in range(len(STYLE_NAMES)):
        pool = [p for p in out if p.style == s]
        if not pool:
            continue
        idx = rng.choice(len(pool), min(per_style, len(pool)), replace=False)
        chosen += [pool[i] for i in sorted(idx)]
    return chosen


def _similarity(sources: list[Melody], outputs: list[Melody]) -> tuple[float, float]:
    chroma = [chroma_similarity(a, b) for a, b in zip(sources, outputs)]
    onsets = [onset_similarity(a, b) for a, b in zip(sources, outputs)]
    return float(np.mean(chroma)), float(np.mean(onsets))


def _register(sources: list[Melody], outputs: list[Melody]) -> tuple[float, float]:
    """(the mean share of output notes more than an octave outside the source's range, the median over phrases
    of the register distance): the continuation eval's listener metrics (engine.music.metrics)."""
    def notes(m: Melody) -> list[Note]:
        return [Note(int(on), int(off), int(p), int(vel), 0) for on, off, p, vel in m.notes.tolist()]

    heard = [listener_metrics(notes(a), a.length_ticks(), notes(b), b.length_ticks(), a.bar_ticks())
             for a, b in zip(sources, outputs)]
    heard = [m for m in heard if not np.isnan(m.out_of_range)]  # an empty phrase or output: nothing to hear
    if not heard:
        return 0.0, 0.0
    return float(np.mean([m.out_of_range for m in heard])), float(np.median([m.register_distance for m in heard]))


LATENT_VIEWS = ("z", "anchor", "decoder_input")


def _latents_by_phrase(restyler: Restyler, phrases, rng=None, view: str = "z") -> list[np.ndarray]:
    """Each phrase's latents, one row a bar (or one a phrase): `view` "z" the encoder's (N, Z); for a model
    with the anchor, "anchor" the phrase's anchor on each row (N, A) and "decoder_input" both (N, Z + A),
    everything the decoder reads of the phrase."""
    rows = []
    for p in phrases:
        tokens = encode_melody(play_melody(p.melody, rng) if rng is not None else p.melody)
        if view == "z":
            rows.append(restyler.latent(tokens))
            continue
        both = restyler.decoder_latents(tokens)  # (N, Z + A)
        rows.append(both if view == "decoder_input" else both[:, restyler.z_dim:])
    return rows


def _latents(restyler: Restyler, phrases, rng=None, view: str = "z") -> tuple[np.ndarray, np.ndarray]:
    """Every latent the decoder reads (one a bar, or one a phrase) (M, Z), with its phrase's style (M,)."""
    rows = _latents_by_phrase(restyler, phrases, rng, view)
    return np.concatenate(rows), np.repeat([p.style for p in phrases], [len(z) for z in rows])


def _latents_with_meter(restyler: Restyler, phrases, meters: list[Meter],
                        view: str = "z") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_latents`, with each row's phrase meter as a one-hot (M, len(meters)) between them."""
    rows = _latents_by_phrase(restyler, phrases, view=view)
    counts = [len(z) for z in rows]
    return (np.concatenate(rows), meter_rows(phrases, counts, meters),
            np.repeat([p.style for p in phrases], counts))


def _bar_counts(phrases) -> list[int]:
    """How many rows `bar_content` gives each phrase."""
    return [p.melody.bars for p in phrases]


def bar_content(phrases) -> tuple[np.ndarray, np.ndarray]:
    """Each bar's own content (M, 40): the pitch classes sounding in each of its halves (2 x 12, by sounding
    time, summing to 1 over the bar) and the onsets of its notes on a 16-step grid (16, 0/1); with its
    phrase's style (M,)."""
    rows, styles = [], []
    for p in phrases:
        m = p.melody
        bar = m.bar_ticks()
        on, off, pitch = m.notes[:, 0], m.notes[:, 1], m.notes[:, 2]
        for b in range(m.bars):
            chroma = np.zeros((2, 12))
            for h in range(2):
                lo, hi = b * bar + h * bar // 2, b * bar + (h + 1) * bar // 2
                np.add.at(chroma[h], pitch % 12, np.clip(np.minimum(off, hi) - np.maximum(on, lo), 0, None))
            grid = np.zeros(16)
            starts = on[(on >= b * bar) & (on < (b + 1) * bar)] - b * bar
            grid[np.minimum(15, starts * 16 // bar)] = 1.0
            rows.append(np.concatenate([chroma.ravel() / max(chroma.sum(), 1), grid]))
            styles.append(p.style)
    return np.asarray(rows), np.asarray(styles)


def transposed_phrases(phrases, seed: int, span: tuple[int, int] = (-5, 6)) -> list[StyledPhrase]:
    """Each phrase transposed by a random -5..+6 semitones (the judge's training span): key is not style."""
    rng = np.random.default_rng(seed)
    return [dataclasses.replace(p, melody=p.melody.transposed(int(rng.integers(span[0], span[1] + 1))))
            for p in phrases]


def meter_rows(phrases, rows_per_phrase: list[int], meters: list[Meter]) -> np.ndarray:
    """Each row's phrase meter as a one-hot over `meters` (M, len(meters)); `rows_per_phrase` as `_latents`."""
    out = np.zeros((sum(rows_per_phrase), len(meters)), dtype=np.float32)
    row = 0
    for p, n in zip(phrases, rows_per_phrase):
        out[row:row + n, meters.index(p.melody.meter)] = 1.0
        row += n
    return out


def probe_given_meter(z_train: np.ndarray, meter_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                      meter_test: np.ndarray, y_test: np.ndarray, seed: int = 0) -> dict:
    """The probe on the meter alone, on [z, meter], and what z adds beyond the meter (balanced accuracies)."""
    alone = probe_accuracy(meter_train, y_train, meter_test, y_test, seed)
    both = probe_accuracy(np.hstack([z_train, meter_train]), y_train, np.hstack([z_test, meter_test]), y_test, seed)
    return {"meter": round(alone, 4), "with_meter": round(both, 4), "beyond_meter": round(both - alone, 4)}


def probe_accuracy(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, y_test: np.ndarray,
                   seed: int = 0, epochs: int = 200) -> float:
    """An MLP probe trained on z to predict the style (balanced classes by weighting); test accuracy."""
    torch.manual_seed(seed)
    mean, std = z_train.mean(0), z_train.std(0) + 1e-6
    xt = torch.from_numpy(((z_train - mean) / std).astype(np.float32))
    yt = torch.from_numpy(y_train)
    counts = np.bincount(y_train, minlength=len(STYLE_NAMES)).astype(np.float32)
    weight = torch.from_numpy(counts.sum() / np.maximum(counts, 1) / len(counts))
    probe = nn.Sequential(nn.Linear(z_train.shape[1], 128), nn.GELU(), nn.Linear(128, len(STYLE_NAMES)))
    opt = torch.optim.AdamW(probe.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 256):
            idx = perm[i:i + 256]
            loss = F.cross_entropy(probe(xt[idx]), yt[idx], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        pred = probe(torch.from_numpy(((z_test - mean) / std).astype(np.float32))).argmax(-1).numpy()
    per_class = [float((pred[y_test == s] == s).mean()) for s in range(len(STYLE_NAMES)) if (y_test == s).any()]
    return float(np.mean(per_class))  # balanced accuracy: chance is 1 / styles


def reconstruction_accuracy(restyler: Restyler, phrases, rng=None) -> float:
    """Teacher-forced next-token accuracy of the decoder given z (the phrase as written, or as played when
    `rng`) and the phrase's own style (one-hot), on the phrase as written."""
    module = restyler.session.module
    vocab = DEFAULT_VOCAB
    hits = total = 0
    with torch.inference_mode():
        for p in phrases:
            clean = encode_melody(p.melody)
            src = encode_melody(play_melody(p.melody, rng)) if rng is not None else clean
            z = torch.from_numpy(restyler.decoder_latents(src)).unsqueeze(0)  # (1, N, Z [+ A])
            style = torch.zeros(1, len(STYLE_NAMES))
            style[0, p.style] = 1.0
            inputs = torch.tensor([clean[:-1]])
            cond = bar_condition(z, style, inputs, torch.tensor([z.size(1)]), vocab.bar, vocab.eos, vocab.pad)
            logits = module.forward(inputs, cond)[0]  # (T-1, V)
            target = torch.tensor(clean[1:])
            hits += int((logits.argmax(-1) == target).sum())
            total += len(target)
    return hits / max(total, 1)


def evaluate_restyle(model: str | Path = DEFAULT_MODEL, ablation: str | Path | None = None,
                     classifier: str | Path = CLASSIFIER_PATH, per_style: int = 20, seed: int = 0,
                     temperature: float = 0.8, candidates: int = 16, probe_per_style: int = 300,
                     as_played: bool = True, data_limit: int = 0, probe_only: bool = False, probe_draws: int = 3,
                     guidance: float = RestyleSettings.guidance, rebar: bool = RestyleSettings.rebar) -> dict:
    t0 = time.monotonic()
    corpus = style_corpus(data_limit)
    judge = load_classifier(classifier)
    loaded = load_model(model, DEFAULT_VOCAB)
    session = ModelSession(loaded, device="cpu", threads=1)
    restyler = Restyler(session, DEFAULT_VOCAB)
    ngram = restyler.ngram  # the pick's n-gram critic, when the file has one
    phrases = _phrases(corpus, per_style, seed)
    rng = np.random.default_rng(seed + 1)
    played = {id(p): play_melody(p.melody, rng) for p in phrases}
    k = len(STYLE_NAMES)
    sets = [("clean", lambda p: p.melody)] + ([("as_played", lambda p: played[id(p)])] if as_played else [])
    sets = [] if probe_only else sets
    report: dict = {"task": "restyle", "model": str(model), "classifier": str(classifier),
                    "styles": list(STYLE_NAMES), "per_style": per_style, "temperature": temperature,
                    "candidates": candidates, "guidance": guidance, "register": RestyleSettings.register,
                    "rebar": rebar,
                    "ceiling": {"clean": judge.card["metrics"]["test_accuracy_clean"],
                                "as_played": judge.card["metrics"]["test_accuracy_played"]},
                    "chance": 1.0 / k}
    target_pool = {s: [p for p in corpus_phrases(corpus, "test", 200, seed=seed + 7) if p.style == s]
                   for s in range(k)}
    base_rng = np.random.default_rng(seed + 2)
    for set_name, source_of in sets:
        rows = {"pairs": {}}
        # the model as it plays (guided), the critic choosing among candidates, the knobs; for comparison
        # unguided (guidance 0: the decoder alone) and with the register free (the line may leave it; one
        # sample: the critic's pick with the register free was measured once, docs/eval-restyle-guided.json)
        reg = RestyleSettings.register
        variants = (("model", 1, "nothing", guidance, reg), ("model_critic", candidates, "nothing", guidance, reg),
                    ("keep_rhythm", 1, "rhythm", guidance, reg), ("keep_pitches", 1, "pitches", guidance, reg),
                    ("unguided", 1, "nothing", 0.0, reg), ("unguided_critic", candidates, "nothing", 0.0, reg),
                    ("any_register", 1, "nothing", guidance, None))
        if ngram is not None:  # the pick without the file's n-gram critic: the model's own critic alone
            variants += (("model_token_critic", candidates, "nothing", guidance, reg),)
        for variant, n_cand, keep, push, register in variants:
            restyler.ngram = None if variant == "model_token_critic" else ngram
            sources, outputs, targets = [], [], []
            pair_hits = np.zeros((k, k))
            pair_n = np.zeros((k, k))
            for i, p in enumerate(phrases):
                for t in range(k):
                    if t == p.style:
                        continue
                    settings = RestyleSettings(style=STYLE_NAMES[t], amount=1.0, keep=keep, guidance=push,
                                               register=register, rebar=rebar,
                                               sampling=SamplingConfig(temperature, 0, 0.95, None),
                                               candidates=n_cand)
                    out = restyler.restyle(source_of(p), settings, seed=seed * 1000 + i * 10 + t)
                    sources.append(p.melody)
                    outputs.append(out)
                    targets.append(t)
            pred = judge.predict(outputs)
            targets_a = np.asarray(targets)
            src_styles = np.asarray([p.style for p in phrases for t in range(k) if t != p.style])
            np.add.at(pair_hits, (src_styles, targets_a), (pred == targets_a).astype(float))
            np.add.at(pair_n, (src_styles, targets_a), 1)
            chroma, onsets = _similarity(sources, outputs)
            outside, distance = _register(sources, outputs)
            rows[variant] = {"target_accuracy": round(float((pred == targets_a).mean()), 4),
                             "chroma": round(chroma, 4), "onsets": round(onsets, 4),
                             "out_of_range": round(outside, 4), "register_distance": round(distance, 2),
                             "notes_per_phrase": round(float(np.mean([len(o.notes) for o in outputs])), 2),
                             "source_notes_per_phrase": round(float(np.mean([len(s.notes) for s in sources])), 2)}
            rows["pairs"][variant] = {f"{STYLE_NAMES[a]}->{STYLE_NAMES[b]}": round(pair_hits[a, b] / pair_n[a, b], 3)
                                      for a in range(k) for b in range(k) if a != b and pair_n[a, b]}
            log.info("%s %s: target accuracy %.3f, chroma %.3f, onsets %.3f", set_name, variant,
                     rows[variant]["target_accuracy"], chroma, onsets)
        restyler.ngram = ngram
        # baselines: the source copied; a random real phrase of the target style
        copies, randoms, sources, targets = [], [], [], []
        for p in phrases:
            for t in range(k):
                if t == p.style:
                    continue
                copies.append(source_of(p))
                pool = target_pool[t]
                randoms.append(pool[int(base_rng.integers(len(pool)))].melody)
                sources.append(p.melody)
                targets.append(t)
        targets_a = np.asarray(targets)
        for name, outs in (("copy", copies), ("random_target", randoms)):
            chroma, onsets = _similarity(sources, outs)
            outside, distance = _register(sources, outs)
            rows[name] = {"target_accuracy": round(float((judge.predict(outs) == targets_a).mean()), 4),
                          "chroma": round(chroma, 4), "onsets": round(onsets, 4),
                          "out_of_range": round(outside, 4), "register_distance": round(distance, 2)}
        # amount 0: the phrase's own style (as the critic hears it) -> reconstruction
        outs = [restyler.restyle(source_of(p), RestyleSettings(style=STYLE_NAMES[p.style], amount=0.0, rebar=rebar,
                                 sampling=SamplingConfig(temperature, 0, 0.95, None)), seed=seed + i)
                for i, p in enumerate(phrases)]
        chroma, onsets = _similarity([p.melody for p in phrases], outs)
        rows["amount_0"] = {"chroma": round(chroma, 4), "onsets": round(onsets, 4),
                            "own_style_accuracy": round(float((judge.predict(outs) ==
                                                               np.asarray([p.style for p in phrases])).mean()), 4)}
        r_rng = np.random.default_rng(seed + 3) if set_name == "as_played" else None
        rows["reconstruction_token_accuracy"] = round(reconstruction_accuracy(restyler, phrases, r_rng), 4)
        report[set_name] = rows
    # disentanglement: a probe on z
    train_ph = corpus_phrases(corpus, "train", probe_per_style, seed=seed + 5)
    test_ph = corpus_phrases(corpus, "test", probe_per_style // 3, seed=seed + 6)
    train_ph = [p for p in train_ph if len(encode_melody(p.melody)) <= 256]
    test_ph = [p for p in test_ph if len(encode_melody(p.melody)) <= 256]
    probes: dict = {"given_meter": {}}
    meters = sorted({p.melody.meter for p in train_ph + test_ph}, key=lambda m: (m.numerator, m.denominator))
    # the probe given the meter, on phrases transposed as the judge's: drawn `probe_draws` times (transpositions
    # and the probe's initialisation), averaged, as one draw moves it by about 0.02
    draws = [(transposed_phrases(train_ph, seed + 8 + 10 * d), transposed_phrases(test_ph, seed + 9 + 10 * d))
             for d in range(probe_draws)]
    given: dict[str, list[dict]] = {}
    for name, path in (("model", model), ("ablation", ablation)):
        if path is None:
            continue
        r = restyler if name == "model" else Restyler(ModelSession(load_model(path, DEFAULT_VOCAB), device="cpu",
                                                                   threads=1), DEFAULT_VOCAB)
        probes[f"{name}_path"] = str(path)
        # z; for a model with the anchor (content handed to the decoder openly, beside z) also the anchor and both
        for view in LATENT_VIEWS if r.anchored else LATENT_VIEWS[:1]:
            key = name if view == "z" else f"{name}_{view}"
            probes[key] = round(probe_accuracy(*_latents(r, train_ph, view=view), *_latents(r, test_ph, view=view),
                                               seed), 4)
            for d, (train_tr, test_tr) in enumerate(draws):
                (z_tr, m_tr, y_tr), (z_te, m_te, y_te) = (_latents_with_meter(r, ph, meters, view)
                                                          for ph in (train_tr, test_tr))
                given.setdefault(key, []).append(probe_given_meter(z_tr, m_tr, y_tr, z_te, m_te, y_te, seed + d))
    probes["bar_content"] = round(probe_accuracy(*bar_content(train_ph), *bar_content(test_ph), seed), 4)
    for d, (train_tr, test_tr) in enumerate(draws):
        (c_tr, y_tr), (c_te, y_te) = bar_content(train_tr), bar_content(test_tr)
        given.setdefault("bar_content", []).append(probe_given_meter(
            c_tr, meter_rows(train_tr, _bar_counts(train_tr), meters), y_tr,
            c_te, meter_rows(test_tr, _bar_counts(test_tr), meters), y_te, seed + d))
    for name, rows in given.items():
        probes["given_meter"][name] = {key: round(float(np.mean([row[key] for row in rows])), 4) for key in rows[0]}
        probes["given_meter"][name]["draws"] = [row["beyond_meter"] for row in rows]
    probes["chance"] = round(1.0 / k, 4)
    probes["train_phrases"], probes["test_phrases"] = len(train_ph), len(test_ph)
    report["probe"] = probes
    report["wall_s"] = round(time.monotonic() - t0, 1)
    return report


def format_report(r: dict) -> str:
    lines = [f"restyle eval: {r['model']} ({r['per_style']} test phrases per style, every pair, temperature "
             f"{r['temperature']}, guidance {r.get('guidance', 0)}, the target's bar lines {r.get('rebar', False)}; "
             f"classifier ceiling {r['ceiling']['clean']:.3f} clean / {r['ceiling']['as_played']:.3f} as played)"]
    for set_name in ("clean", "as_played"):
        if set_name not in r:
            continue
        rows = r[set_name]
        lines.append(f"  {set_name}:")
        lines.append(f"    {'':<20}{'target acc':>11}{'chroma':>9}{'onsets':>9}{'outside':>9}{'register':>9}")
        for name in ("model", "model_critic", "model_token_critic", "keep_rhythm", "keep_pitches", "unguided",
                     "unguided_critic", "any_register", "copy", "random_target"):
            if name not in rows:
                continue
            x = rows[name]
            lines.append(f"    {name:<20}{x['target_accuracy']:>11.3f}{x['chroma']:>9.3f}{x['onsets']:>9.3f}"
                         f"{x.get('out_of_range', 0):>9.3f}{x.get('register_distance', 0):>9.1f}")
        a0 = rows["amount_0"]
        lines.append(f"    amount 0: chroma {a0['chroma']:.3f}, onsets {a0['onsets']:.3f}, own style "
                     f"{a0['own_style_accuracy']:.3f}; reconstruction token accuracy "
                     f"{rows['reconstruction_token_accuracy']:.3f}")
    p = r.get("probe", {})
    lines.append(f"  probe on z (balanced accuracy, chance {p.get('chance', 0):.2f}): model {p.get('model', '-')}, "
                 f"ablation (no adversary) {p.get('ablation', '-')}; the same probe on each bar's own content "
                 f"{p.get('bar_content', '-')}")
    for view in LATENT_VIEWS[1:]:
        if f"model_{view}" in p:
            lines.append(f"  the same probe on the model's {view.replace('_', ' ')}: {p[f'model_{view}']}")
    for name, g in p.get("given_meter", {}).items():
        lines.append(f"  given the meter (phrases transposed as the judge's): {name}: "
                     f"the meter alone {g['meter']:.3f}, "
                     f"with it {g['with_meter']:.3f}, beyond the meter {g['beyond_meter']:+.3f} "
                     f"(draws {', '.join(f'{x:+.3f}' for x in g.get('draws', []))})")
    return "\n".join(lines)


__all__ = ["bar_content", "evaluate_restyle", "format_report", "meter_rows", "probe_accuracy", "probe_given_meter",
           "transposed_phrases"]
