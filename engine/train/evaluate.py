"""`sideman eval`: a model against the variable-order Markov baseline and the test set itself.

1. Loss per token (nats) on the same validation windows, for the model(s) and the Markov model
   trained on the same training split and role mapping.
2. Robustness: loss on the second half of each window when its first half (the context) is clean vs
   given live-input noise (timing jitter, wrong notes, velocity), for each model given.
3. Musical metrics of answers to held-out prompts (the first player phrase of each test piece, up to
   its TURN): answers by the model, by the Markov model, and the piece's own next phrase (the
   reference). In-key ratio against the prompt's key, distance of the key-relative pitch-class
   histogram to the corpus's, note density and range relative to the prompt, repetition, and the
   share of answers that are valid (no grammar violation, every note closed).
4. What a listener hears (`engine.music.metrics.listener_metrics`), for the same answers: the share of
   answer notes more than an octave outside the phrase's range, the median register distance from the
   phrase, answers thicker than the phrase plus one voice, answers whose density is within 0.5-2x the
   phrase's, notes held over a bar, empty answers. Measured on the clean prompts and, with
   `as_played`, on the same test pieces as a person plays them (the human-playing model, a seed
   training never uses) and swung (a change training never sees); each set under its own key.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from engine.offline.continuation import SIDEMAN, ContinueSettings, Prompt, continue_prompt, response_start
from engine.model.grammar import violations
from engine.train.markov import MarkovModel
from engine.music.metrics import (continuation_metrics, estimate_key, histogram_distance, key_relative_histogram,
                                  listener_metrics, notes_of)
from engine.model.modelfile import load_model
from engine.model.sampler import SamplingConfig
from engine.model.session import ModelSession
from engine.music.tokens import Meter, StreamDecoder
from engine.train.config import load_config
from engine.train.data import TokenData, load_token_data, prompt_variants
from engine.train.noise import add_live_noise
from engine.music.vocab import DEFAULT_VOCAB as V

log = logging.getLogger("sideman.eval")


# ---- losses ---------------------------------------------------------------------------------

def val_windows(data: TokenData, seq_len: int, n: int) -> np.ndarray:
    rows = [torch.cat([x, y[:, -1:]], dim=1) for x, y in data.val_batches(n, seq_len, 1)]
    return torch.cat(rows).numpy()  # (n, seq_len + 1)


@torch.no_grad()
def model_losses(module, windows: np.ndarray, from_index: int = 0, batch: int = 16) -> float:
    """Mean NLL per non-PAD target at positions >= from_index. windows (N, T + 1)."""
    total, count = 0.0, 0
    for b in range(0, len(windows), batch):
        a = torch.from_numpy(windows[b:b + batch].astype(np.int64))
        x, y = a[:, :-1], a[:, 1:]
        logp = torch.log_softmax(module.forward(x).float(), dim=-1)  # (B, T, V)
        nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B, T)
        keep = (y != V.pad)
        keep[:, :from_index] = False
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return total / max(count, 1)


def markov_losses(markov: MarkovModel, windows: np.ndarray, from_index: int = 0) -> float:
    total, count = 0.0, 0
    for w in windows:
        p = markov.token_probabilities(w, start=1)  # p[i] = P(w[i + 1] | w[:i + 1])
        keep = w[1:] != V.pad
        keep[:from_index] = False
        total += float(-np.log(p[keep]).sum())
        count += int(keep.sum())
    return total / max(count, 1)


def noisy_context(windows: np.ndarray, seed: int = 0) -> tuple[np.ndarray, int]:
    """The first half of every window given live noise (length kept); the second half untouched."""
    rng = np.random.default_rng(seed)
    half = windows.shape[1] // 2
    out = windows.copy()
    for i, w in enumerate(windows):
        out[i, :half] = add_live_noise(w[:half], rng, extra=0.0)
    return out, half


def markov_baseline(data: TokenData, order: int) -> MarkovModel:
    """The Markov model of `order` over the training split's token stream, cached beside the corpus."""
    path = Path(data.source) / f"markov-{data.mapping}-o{order}.npz"
    if path.exists():
        return MarkovModel.load(path)
    log.info("fitting the order-%d Markov baseline on %d training pieces", order, len(data.train))
    markov = MarkovModel(V.size, order).fit(data.train)
    markov.save(path)
    return markov


# ---- generation -----------------------------------------------------------------------------

class MarkovSource:
    """The Markov model behind the same feed/append/logits interface as a ModelSession."""

    def __init__(self, markov: MarkovModel) -> None:
        self.markov = markov
        self.context: list[int] = []

    def feed(self, tokens) -> torch.Tensor:
        self.context += [int(t) for t in tokens]
        return self.logits

    def append(self, token: int) -> torch.Tensor:
        return self.feed([token])

    @property
    def logits(self) -> torch.Tensor:
        return torch.from_numpy(np.log(self.markov.next_distribution(self.context[-16:])).astype(np.float32))


def prompts_and_references(pieces: list[np.ndarray], n: int) -> list[tuple[Prompt, list[int]]]:
    """(prompt up to the first TURN, the tokens of the phrase after it) for pieces that have both."""
    out = []
    for p in pieces:
        toks = [int(t) for t in p]
        turns = [i for i, t in enumerate(toks) if t == V.turn]
        if len(turns) < 1:
            continue
        end = turns[1] if len(turns) > 1 else len(toks)
        dec = StreamDecoder(V)
        dec.feed_all(toks[:turns[0]])
        if not any(V.is_note_on(t) for t in toks[:turns[0]]) or not any(V.is_note_on(t) for t in toks[turns[0]:end]):
            continue
        bars = dec.bars
        bar_len = bars[-1] - bars[-2] if len(bars) >= 2 else 96
        num = max(1, bar_len // 24)
        meter = Meter(num, 4) if bar_len % 24 == 0 else Meter(bar_len // 12, 8)
        out.append((Prompt(toks[:turns[0]], meter, 100.0, dec.position), toks[turns[0]:end]))
        if len(out) >= n:
            break
    return out


@dataclass
class Collected:
    in_key: list
    hist: np.ndarray
    density: list
    range_: list
    repetition: list
    valid: list
    notes: list
    listener: list  # ListenerMetrics per answer

    @classmethod
    def empty(cls) -> "Collected":
        return cls([], np.zeros(12), [], [], [], [], [], [])

    def heard(self) -> dict:
        """What a listener hears, over the answers (shares of notes are pooled over every answer's notes)."""
        ms = self.listener
        voiced = [m for m in ms if not m.empty]
        notes = [n for n in self.notes if n]
        total = sum(notes)

        def pooled(field):
            return round(sum(getattr(m, field) * n for m, n in zip(voiced, notes)) / total, 4) if total else None

        dens = [m.density_ratio for m in voiced if not math.isnan(m.density_ratio)]
        return {
            "out_of_range": pooled("out_of_range"),
            "register_distance_median": round(float(np.median([m.register_distance for m in voiced])), 2)
            if voiced else None,
            "thicker_share": round(sum(m.thicker for m in voiced) / len(voiced), 4) if voiced else None,
            "peak_polyphony_max": max((m.peak_polyphony for m in voiced), default=0),
            "density_in_range_share": round(sum(0.5 <= d <= 2.0 for d in dens) / len(dens), 4) if dens else None,
            "held_over_bar": pooled("held_over_bar"),
            "empty_answers": sum(m.empty for m in ms),
            "answers": len(ms),
        }

    def summary(self, corpus_hist: np.ndarray) -> dict:
        h = self.hist / self.hist.sum() if self.hist.sum() else self.hist

        def mean(xs):
            xs = [x for x in xs if x is not None and not math.isnan(x)]
            return round(float(np.mean(xs)), 4) if xs else None

        def median(xs):
            xs = [x for x in xs if x is not None and not math.isnan(x)]
            return round(float(np.median(xs)), 4) if xs else None

        return {"in_key": mean(self.in_key), "pc_hist_dist": round(histogram_distance(h, corpus_hist), 4),
                "density_ratio": median(self.density), "range_ratio": median(self.range_),
                "repetition": mean(self.repetition), "valid_share": mean(self.valid),
                "notes_per_answer": mean(self.notes), **self.heard()}


def measure_answer(col: Collected, prompt: Prompt, answer_tokens: list[int], valid: bool) -> None:
    dec = StreamDecoder(V)
    events = dec.feed_all(prompt.tokens)
    prompt_notes = notes_of(events)
    answer_events = dec.feed_all(answer_tokens) + dec.finish()
    start = prompt.end_tick
    answer = [n for n in notes_of(events + answer_events) if n.role == SIDEMAN]
    span = max((max((n.end for n in answer), default=start) - start), 24)
    m = continuation_metrics(prompt_notes, max(prompt.end_tick, 24), answer, span)
    key = estimate_key(prompt_notes)
    col.in_key.append(m.in_key)
    col.hist += np.roll(np.bincount([n.pitch % 12 for n in answer], minlength=12), -key.tonic)
    col.density.append(m.density_ratio)
    col.range_.append(m.range_ratio)
    col.repetition.append(m.repetition)
    col.valid.append(1.0 if valid else 0.0)
    col.notes.append(len(answer))
    phrase = [n for n in prompt_notes if n.role != SIDEMAN]
    phrase_start = min((n.start for n in phrase), default=0)
    col.listener.append(listener_metrics(phrase, max(prompt.end_tick - phrase_start, 24), answer, span,
                                         prompt.meter.bar_ticks(V.config.ticks_per_beat), V.config.ticks_per_beat))


def corpus_histogram(pieces: list[np.ndarray], n: int = 800) -> np.ndarray:
    """Key-relative pitch-class histogram of the training corpus (a fixed sample of pieces)."""
    rng = np.random.default_rng(0)
    h = np.zeros(12)
    for i in rng.permutation(len(pieces))[:n]:
        notes = notes_of(StreamDecoder(V).feed_all(int(t) for t in pieces[i]))
        if notes:
            h += key_relative_histogram(notes, estimate_key(notes)) * len(notes)
    return h / h.sum()


def answer_is_valid(prompt: Prompt, tokens: list[int], grammar: bool = True) -> bool:
    """No token the grammar forbids (for generated answers) and nothing the decoder must ignore."""
    from engine.model.grammar import GrammarState

    if not grammar:
        dec = StreamDecoder(V)
        dec.feed_all(prompt.tokens + tokens)
        return dec.invalid == 0
    n = len(response_start(prompt.tokens, V, prompt.meter)[0])  # the bridge is ours, not the model's
    state = GrammarState(V, prompt.meter)
    state.feed_all(prompt.tokens + tokens[:n])
    dec = StreamDecoder(V)
    dec.feed_all(prompt.tokens + tokens)
    return not violations(tokens[n:], V, SIDEMAN, prompt.meter, state) and dec.invalid == 0


def musical_key(set_name: str) -> str:
    """A model entry's key for its answers to one prompt set."""
    return "musical" if set_name == "clean" else f"musical_{set_name}"


# ---- the whole evaluation ---------------------------------------------------------------------

def evaluate(model_paths: list[str], config: str = "continuation", prompts: int = 100, bars: int = 2,
             windows: int = 64, markov_order: int = 6, seed: int = 0, data_limit: int | None = None,
             as_played: bool = True) -> dict:
    cfg = load_config(config)
    if data_limit is not None:
        cfg = replace(cfg, data_limit=data_limit)
    data = load_token_data(cfg)
    result: dict = {"data": data.describe(), "markov_order": markov_order, "prompts": prompts, "bars": bars}

    markov = markov_baseline(data, markov_order)

    win = val_windows(data, cfg.seq_len, windows)
    noisy, half = noisy_context(win, seed)
    result["val_loss_markov"] = round(markov_losses(markov, win), 4)
    result["markov_clean_second_half"] = round(markov_losses(markov, win, half), 4)
    result["markov_noisy_second_half"] = round(markov_losses(markov, noisy, half), 4)

    prompt_sets = {"clean": prompts_and_references(data.test, prompts)}
    if as_played:
        for name, pieces in prompt_variants(cfg, "test").items():
            prompt_sets[name] = prompts_and_references(pieces, prompts)
    corpus_hist = corpus_histogram(data.train)
    settings = ContinueSettings(bars, SamplingConfig(temperature=0.9, top_p=0.95, seed=seed))
    for set_name, pairs in prompt_sets.items():
        ref, mk = Collected.empty(), Collected.empty()
        for prompt, reference in pairs:
            measure_answer(ref, prompt, reference, answer_is_valid(prompt, reference, grammar=False))
            c = continue_prompt(MarkovSource(markov), prompt, settings)
            measure_answer(mk, prompt, c.tokens, answer_is_valid(prompt, c.tokens))
        into = result if set_name == "clean" else result.setdefault(set_name, {})
        into["reference"] = ref.summary(corpus_hist)
        into["markov"] = mk.summary(corpus_hist)

    for i, path in enumerate(model_paths):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = load_model(path, V, "cpu")
        module = loaded.module.eval()
        name = loaded.name
        if name in result.get("models", {}):  # two files of one card name (a retrained model vs the shipped one)
            name = f"{name} ({path})"
        entry = {"path": str(path), "val_loss": round(model_losses(module, win), 4),
                 "clean_second_half": round(model_losses(module, win, half), 4),
                 "noisy_second_half": round(model_losses(module, noisy, half), 4)}
        entry["noise_gap"] = round(entry["noisy_second_half"] - entry["clean_second_half"], 4)
        session = ModelSession(loaded, device="cpu")
        # as shipped (the answer at most one voice thicker than its phrase, no note held past a bar or the
        # phrase's longest), and for the first model also free of each rule ("any"): what the rule hides
        variants = [("", settings)] + ([("_free_texture", replace(settings, extra_voices=None)),
                                        ("_free_length", replace(settings, longest_note_bars=None))] if i == 0 else [])
        for suffix, variant in variants:
            for set_name, pairs in prompt_sets.items():
                col = Collected.empty()
                for prompt, _ in pairs:
                    session.reset()
                    c = continue_prompt(session, prompt, variant)
                    measure_answer(col, prompt, c.tokens, answer_is_valid(prompt, c.tokens))
                key = musical_key(set_name)
                entry[key + suffix] = col.summary(corpus_hist)
        result.setdefault("models", {})[name] = entry
        if i == 0:  # the headline numbers are the first model's
            result["val_loss_model"] = entry["val_loss"]
            result["in_key_model"] = entry["musical"]["in_key"]
            result["pc_hist_dist_model"] = entry["musical"]["pc_hist_dist"]
            result["valid_share"] = entry["musical"]["valid_share"]
            for set_name in prompt_sets:  # what a listener hears, per prompt set: <metric>_model[_<set>]
                m = entry[musical_key(set_name)]
                suffix = "" if set_name == "clean" else f"_{set_name}"
                for key in ("out_of_range", "register_distance_median", "thicker_share", "density_in_range_share",
                            "held_over_bar", "empty_answers", "in_key"):
                    result[f"{key}_model{suffix}"] = m[key]
                free = entry[musical_key(set_name) + "_free_texture"]
                for key in ("thicker_share", "peak_polyphony_max", "out_of_range", "in_key"):
                    result[f"{key}_model_free_texture{suffix}"] = free[key]
                free = entry[musical_key(set_name) + "_free_length"]
                for key in ("held_over_bar", "density_in_range_share", "in_key"):
                    result[f"{key}_model_free_length{suffix}"] = free[key]
            result["loss_vs_markov"] = round(1 - entry["val_loss"] / result["val_loss_markov"], 4)
    result["in_key_markov"] = result["markov"]["in_key"]
    result["in_key_reference"] = result["reference"]["in_key"]
    result["pc_hist_dist_markov"] = result["markov"]["pc_hist_dist"]
    result["pc_hist_dist_reference"] = result["reference"]["pc_hist_dist"]
    return result


def format_report(r: dict) -> str:
    lines = [f"data: {r['data']['pieces']} pieces ({r['data']['role_mapping']}), "
             f"{r['prompts']} prompts, {r['bars']}-bar answers",
             "", f"{'':28s} {'loss/token':>10s} {'ctx clean':>10s} {'ctx noisy':>10s} {'gap':>7s}"]
    for name, m in r.get("models", {}).items():
        lines.append(f"{name:28s} {m['val_loss']:10.4f} {m['clean_second_half']:10.4f} "
                     f"{m['noisy_second_half']:10.4f} {m['noise_gap']:7.4f}")
    lines.append(f"{'markov (order %d)' % r['markov_order']:28s} {r['val_loss_markov']:10.4f} "
                 f"{r['markov_clean_second_half']:10.4f} {r['markov_noisy_second_half']:10.4f} "
                 f"{r['markov_noisy_second_half'] - r['markov_clean_second_half']:7.4f}")
    if "loss_vs_markov" in r:
        lines.append(f"model loss is {100 * r['loss_vs_markov']:.1f}% below the Markov baseline")
    lines += ["", f"{'answers':28s} {'in-key':>7s} {'pc-dist':>8s} {'density':>8s} {'range':>6s} "
                  f"{'repeat':>7s} {'valid':>6s} {'notes':>6s}"]
    rows = [(n, m["musical"]) for n, m in r.get("models", {}).items()] + [("markov", r["markov"]),
                                                                          ("reference (test set)", r["reference"])]

    def f(x, w, p=3):
        return f"{x:{w}.{p}f}" if isinstance(x, (int, float)) else f"{'-':>{w}s}"

    for name, m in rows:
        lines.append(f"{name:28s} {f(m['in_key'], 7)} {f(m['pc_hist_dist'], 8)} {f(m['density_ratio'], 8, 2)} "
                     f"{f(m['range_ratio'], 6, 2)} {f(m['repetition'], 7)} {f(m['valid_share'], 6, 2)} "
                     f"{f(m['notes_per_answer'], 6, 1)}")
    for set_name in ("clean", "as_played", "swing"):
        if set_name != "clean" and set_name not in r:
            continue
        src = r if set_name == "clean" else r[set_name]
        key = musical_key(set_name)
        heard = [(n, m[key]) for n, m in r.get("models", {}).items() if key in m] + [
            (f"{n} (free {rule})", m[key + f"_free_{rule}"]) for rule in ("texture", "length")
            for n, m in r.get("models", {}).items() if key + f"_free_{rule}" in m] + [
            ("markov", src["markov"]), ("reference (test set)", src["reference"])]
        lines += ["", f"{'heard, ' + set_name + ' prompts':28s} {'out>8ve':>8s} {'reg.dist':>8s} {'thicker':>8s} "
                      f"{'dens.ok':>8s} {'held>bar':>8s} {'in-key':>7s} {'empty':>6s}"]
        for name, m in heard:
            lines.append(f"{name:28s} {f(m['out_of_range'], 8)} {f(m['register_distance_median'], 8, 1)} "
                         f"{f(m['thicker_share'], 8)} {f(m['density_in_range_share'], 8)} {f(m['held_over_bar'], 8)} "
                         f"{f(m['in_key'], 7)} {m['empty_answers']:>3d}/{m['answers']:<3d}")
    return "\n".join(lines)


def run(args) -> int:
    models = args.model or [str(Path(__file__).resolve().parents[2] / "models" / "continuation.pt")]
    r = evaluate(models, args.config, args.prompts, args.bars, args.windows, args.markov_order, args.seed,
                 args.data_limit, as_played=not args.no_as_played)
    print(json.dumps(r, indent=2) if args.json else format_report(r))
    return 0
