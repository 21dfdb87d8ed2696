"""The critic's pick on the same candidates: restyle held-out phrases into every other style with one model
(its own critic guiding, as shipped), keep all `candidates` of each pair, and score the pick under each
critic file given (the critic's p(target) + chroma to the source, as Restyler.restyle picks), against the
independent classifier's verdict. Also: the share of pairs with any candidate the classifier calls the
target (what a perfect pick would give), one sample's accuracy, and the correlation of each critic's
p(target) with the verdict across candidates.

    python scripts/experiment_critic_pick.py models/restyle.pt runs/restyle-critic/restyle.pt \\
        [--per-style 8] [--candidates 8] [--seed S] [--as-played] [--json out.json]
        [--guidance G] [--temperature T]  the decoding's (default 1.5, 0.8)
        [--tta=-3,-2,-1,0,1,2,3]   also the critic averaged over transpositions
        [--generative]             also the decoder's own likelihood under each style (a generative classifier)
        [--dump out.npz]           each candidate's pair, critic p(target), chroma, verdict and notes
        [--save out.pkl]           the candidates themselves with each file's critic p(target), to score again
                                   with other critics (scripts/experiment_feature_critic.py)

The first file writes the candidates; every file's critic scores them (only the critic is read of the others).
Candidate c of a pair samples with the pair's eval seed + c, as `Restyler.restyle` drew them when the JSON in
docs/critic-pick/ was made (it now draws seed * candidates + c: other candidates, the same kind of pick).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import torch

from engine.corpus.phrases import style_corpus
from engine.model.modelfile import load_model
from engine.model.restyler import Restyler, RestyleSettings
from engine.model.sampler import SamplingConfig
from engine.model.session import ModelSession
from engine.music.melody import Melody, encode_melody
from engine.music.similarity import chroma_similarity
from engine.music.styles import STYLE_NAMES
from engine.music.vocab import DEFAULT_VOCAB
from engine.train.evaluate_restyle import _phrases
from engine.train.humanize import play_melody
from engine.train.style_classifier import load_classifier


def critic_logits(module, melodies: list[Melody], max_len: int) -> np.ndarray:
    """(N, S) the critic's style logits for each melody."""
    with torch.inference_mode():
        return np.stack([module.critic_logits(torch.tensor([encode_melody(m)[:max_len]])).float().reshape(-1)
                         .numpy() for m in melodies])


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def critic_probs(module, melodies: list[Melody], max_len: int) -> np.ndarray:
    """(N, S) the critic's style probabilities for each melody."""
    return softmax(critic_logits(module, melodies, max_len))


def style_loglik(restyler: Restyler, z: np.ndarray, tokens: list[int], header: int) -> np.ndarray:
    """(S,): the decoder's log-likelihood of a written phrase's tokens (after the header) under each style's
    condition with the same per-bar z: a generative classifier of the candidate, neither critic nor judge."""
    from engine.model.restyler import BarConditions

    out = np.zeros(len(STYLE_NAMES))
    for s in range(len(STYLE_NAMES)):
        style = np.zeros(len(STYLE_NAMES), dtype=np.float32)
        style[s] = 1.0
        cond = BarConditions(restyler.session, z, style)
        cond.start()
        with torch.inference_mode():
            logits = restyler.session.feed(tokens[:header])
            total = 0.0
            for t in tokens[header:]:
                total += float(torch.log_softmax(logits.float(), -1)[t])
                if t == restyler.vocab.bar:
                    cond.next_bar()
                logits = restyler.session.append(t)
        out[s] = total
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--per-style", type=int, default=8)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="the phrases' split (val: to choose a setting without the test phrases)")
    p.add_argument("--as-played", action="store_true", help="the sources as a person plays them (the eval's)")
    p.add_argument("--tta", default="", help="also pick with the critic averaged over these transpositions, e.g. -2,-1,0,1,2")
    p.add_argument("--generative", action="store_true",
                   help="also pick by the decoder's own likelihood of each candidate under each style (slow)")
    p.add_argument("--dump", default=None, help="also save each candidate's pair, critic p(target), chroma and verdict (.npz)")
    p.add_argument("--save", default=None, help="also pickle the candidates and each critic's p(target)")
    p.add_argument("--guidance", type=float, default=RestyleSettings.guidance, help="the decoding's guidance")
    p.add_argument("--anchor-register", action="store_true",
                   help="an anchored model: its anchor's mean pitch moved to the target style's (train phrases)")
    p.add_argument("--anchor-toward", type=float, default=0.0,
                   help="an anchored model: its pitch-class profile blended this far toward the target style's mean "
                        "profile (train phrases, each turned to its most-heard pitch class), turned to the phrase's")
    p.add_argument("--temperature", type=float, default=0.8, help="the sampler's temperature (the eval's: 0.8)")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    warnings.simplefilter("ignore", DeprecationWarning)
    t0 = time.monotonic()
    corpus = style_corpus(0)
    judge = load_classifier()
    loaded = [load_model(m, DEFAULT_VOCAB) for m in a.models]
    restyler = Restyler(ModelSession(loaded[0], device="cpu", threads=1), DEFAULT_VOCAB)
    max_len = int(loaded[0].card["restyle"]["max_len"])
    phrases = _phrases(corpus, a.per_style, a.seed, a.split)
    target_now = [0]
    if a.anchor_register:  # each style's mean note-on pitch over 2,000 train phrases, as the anchor writes it
        from engine.corpus.phrases import PhraseSampler

        sampler = PhraseSampler(corpus, "train", seed=a.seed + 7)
        sums, counts = np.zeros(len(STYLE_NAMES)), np.zeros(len(STYLE_NAMES))
        for _ in range(2000):
            m, s_ = sampler.draw()
            sums[s_] += m.notes[:, 2].mean() if len(m.notes) else 0.0
            counts[s_] += 1 if len(m.notes) else 0
        style_mean = (sums / np.maximum(counts, 1) - 60.0) / 12.0
        plain = restyler.decoder_latents

        def moved(tokens):
            rows = plain(tokens).copy()  # (N, Z + A): the anchor's dim 12 is (mean pitch - 60) / 12
            rows[:, restyler.z_dim + 12] = style_mean[target_now[0]]
            return rows

        restyler.decoder_latents = moved
    if a.anchor_toward:  # each style's mean pitch-class profile relative to its most-heard class
        from engine.corpus.phrases import PhraseSampler

        sampler = PhraseSampler(corpus, "train", seed=a.seed + 7)
        sums, counts = np.zeros((len(STYLE_NAMES), 12)), np.zeros(len(STYLE_NAMES))
        for _ in range(2000):
            m, s_ = sampler.draw()
            if len(m.notes) == 0:
                continue
            prof = np.bincount(m.notes[:, 2] % 12, minlength=12) / len(m.notes)
            sums[s_] += np.roll(prof, -int(np.argmax(prof)))
            counts[s_] += 1
        style_profile = sums / np.maximum(counts, 1)[:, None]
        plain_rows = restyler.decoder_latents

        def toward(tokens):
            rows = plain_rows(tokens).copy()  # (N, Z + A): the anchor's dims 0..11 are the profile
            prof = rows[0, restyler.z_dim:restyler.z_dim + 12]
            tonic = int(np.argmax(prof))
            blended = (1 - a.anchor_toward) * prof + a.anchor_toward * np.roll(style_profile[target_now[0]], tonic)
            rows[:, restyler.z_dim:restyler.z_dim + 12] = blended
            return rows

        restyler.decoder_latents = toward
    rng = np.random.default_rng(a.seed + 1)  # as the eval plays them
    played = {id(ph): play_melody(ph.melody, rng) for ph in phrases}
    k = len(STYLE_NAMES)
    heard, outs, sources, given, targets, pair_of, gen_ll = [], [], [], [], [], [], []
    for i, ph in enumerate(phrases):
        source = played[id(ph)] if a.as_played else ph.melody
        for t in range(k):
            if t == ph.style:
                continue
            settings = RestyleSettings(style=STYLE_NAMES[t], amount=1.0, guidance=a.guidance,
                                       sampling=SamplingConfig(a.temperature, 0, 0.95, None))
            target_now[0] = t
            for c in range(a.candidates):
                decode = restyler.begin(source, settings, seed=a.seed * 1000 + i * 10 + t + c)
                decode.run()
                out = decode.result()
                if a.generative:
                    z = np.stack([r[:-restyler.n_styles].numpy() for r in decode.conditions[0].rows])  # (N, Z [+ A])
                    gen_ll.append(style_loglik(restyler, z, decode.tokens, 4))
                outs.append(out)
                heard.append(Melody(out.notes, decode.meter, decode.bars))
                sources.append(ph.melody)
                given.append(source)
                targets.append(t)
                pair_of.append((i, t))
    verdict = judge.predict(outs) == np.asarray(targets)  # (N,)
    chroma = np.array([chroma_similarity(s, o, DEFAULT_VOCAB) for s, o in zip(sources, outs)])  # the eval's
    chroma_given = np.array([chroma_similarity(s, o, DEFAULT_VOCAB) for s, o in zip(given, outs)])  # the pick's
    pairs = sorted(set(pair_of))
    index = {pr: [j for j, q in enumerate(pair_of) if q == pr] for pr in pairs}
    report = {"models": a.models, "split": a.split, "as_played": a.as_played, "guidance": a.guidance, "temperature": a.temperature,
              "pairs": len(pairs), "anchor_register": a.anchor_register, "anchor_toward": a.anchor_toward,
              "candidates": a.candidates,
              "one_sample": round(float(np.mean([verdict[index[pr][0]] for pr in pairs])), 4),
              "any_candidate": round(float(np.mean([verdict[index[pr]].any() for pr in pairs])), 4),
              "mean_candidate": round(float(verdict.mean()), 4), "critics": {}}
    saved_p = []
    for path, model in zip(a.models, loaded):
        logits = critic_logits(model.module, heard, max_len)  # (N, S)
        probs = softmax(logits)
        p_target = probs[np.arange(len(targets)), targets]
        generated_class = bool((model.card.get("critic") or {}).get("generated_class", False))
        p_style_only = p_target
        if generated_class:  # what the runtime picks by: P(real and of the target), a sixth class at logit 0
            p_target = softmax(np.concatenate([logits, np.zeros((len(logits), 1))], 1))[np.arange(len(targets)),
                                                                                          targets]
        row = {"correlation_with_verdict": round(float(np.corrcoef(p_target, verdict.astype(float))[0, 1]), 4),
               "critic_calls_target": round(float((probs.argmax(1) == np.asarray(targets)).mean()), 4),
               "generated_class": generated_class}
        if generated_class:  # the same critic's five-way softmax, for comparison
            row["style_only_correlation_with_verdict"] = round(float(np.corrcoef(p_style_only,
                                                                                 verdict.astype(float))[0, 1]), 4)
            for lam in (0.0, 0.5, 1.0, 2.0):
                picks = [index[pr][int(np.argmax(p_style_only[index[pr]] + lam * chroma_given[index[pr]]))]
                         for pr in pairs]
                row[f"style_only_pick_chroma{lam:g}"] = {"target_accuracy": round(float(verdict[picks].mean()), 4),
                                                         "chroma": round(float(chroma[picks].mean()), 4)}
        for lam in (0.0, 0.5, 1.0, 2.0):
            picks = [index[pr][int(np.argmax(p_target[index[pr]] + lam * chroma_given[index[pr]]))] for pr in pairs]
            row[f"pick_chroma{lam:g}"] = {"target_accuracy": round(float(verdict[picks].mean()), 4),
                                          "chroma": round(float(chroma[picks].mean()), 4)}
        # the pick among the first n candidates only (the live mode chooses among as many as the silence allowed)
        for n in range(1, a.candidates + 1):
            picks = [index[pr][int(np.argmax(p_target[index[pr]][:n] + chroma_given[index[pr]][:n]))] for pr in pairs]
            row.setdefault("pick_of_first", {})[str(n)] = {"target_accuracy": round(float(verdict[picks].mean()), 4),
                                                           "chroma": round(float(chroma[picks].mean()), 4)}
        if a.tta:
            shifts = [int(x) for x in a.tta.split(",")]
            tta = np.mean([critic_probs(model.module, [m.transposed(k) for m in heard], max_len) for k in shifts], 0)
            p_tta = tta[np.arange(len(targets)), targets]
            row["tta_correlation_with_verdict"] = round(float(np.corrcoef(p_tta, verdict.astype(float))[0, 1]), 4)
            for lam in (0.0, 0.5, 1.0, 2.0):
                picks = [index[pr][int(np.argmax(p_tta[index[pr]] + lam * chroma_given[index[pr]]))] for pr in pairs]
                row[f"tta_pick_chroma{lam:g}"] = {"target_accuracy": round(float(verdict[picks].mean()), 4),
                                                  "chroma": round(float(chroma[picks].mean()), 4)}
        if a.generative and path == a.models[0]:
            ll = np.asarray(gen_ll)  # (N, S)
            post = np.exp(ll - ll.max(1, keepdims=True))
            post /= post.sum(1, keepdims=True)
            p_gen = post[np.arange(len(targets)), targets]
            row["generative_correlation_with_verdict"] = round(float(np.corrcoef(p_gen, verdict.astype(float))[0, 1]), 4)
            for name, score in (("generative", p_gen), ("critic_and_generative", 0.5 * (p_gen + p_target))):
                for lam in (0.0, 0.5, 1.0):
                    picks = [index[pr][int(np.argmax(score[index[pr]] + lam * chroma_given[index[pr]]))] for pr in pairs]
                    row[f"{name}_pick_chroma{lam:g}"] = {"target_accuracy": round(float(verdict[picks].mean()), 4),
                                                         "chroma": round(float(chroma[picks].mean()), 4)}
        report["critics"][path] = row
        if a.dump and path == a.models[0]:
            np.savez(a.dump, pair=np.asarray([pairs.index(pr) for pr in pair_of]), p_target=p_target,
                     chroma=chroma, chroma_given=chroma_given, verdict=verdict, target=np.asarray(targets),
                     notes=np.asarray([len(o.notes) for o in outs]),
                     source_notes=np.asarray([len(s.notes) for s in given]))
        saved_p.append(p_target)
    if a.save:
        import pickle

        with open(a.save, "wb") as f:
            pickle.dump({"outs": outs, "heard": heard, "sources": sources, "given": given, "targets": targets,
                         "pair_of": pair_of, "critic_p_target": dict(zip(a.models, saved_p)),
                         "as_played": a.as_played, "seed": a.seed}, f)
    report["wall_s"] = round(time.monotonic() - t0, 1)
    print(json.dumps(report, indent=1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
