"""`sideman eval --task accompany`: the accompaniment model against a Markov model over the same token
stream and against the reference (the real lower voices), on held-out pieces with their real top voice.

1. Loss per sideman token (nats): on the same validation windows, for each model and the Markov model
   fitted on the same training stream. A sideman token is a ROLE token of a sideman voice, or a note or
   velocity token written in one.
2. What a listener hears (`engine.music.harmony`), for the first `bars` bars of each test piece: CR, UR,
   the dissonant rest, parallel fifths/octaves per bar, crossings, the share of melody time with a sideman
   voice above the melody, melody onsets with a sideman onset, each voice's range, each voice's presence
   (the worst voice's longest silence inside the melody, mean and worst over pieces, and the longest note
   held, in quarter notes); for the model (planned
   exactly as live, `engine.offline.accompaniment.accompany`, commit window 0: the offline upper bound),
   the Markov model (the same planner), and the reference. Clean (the top voice as written) and as played
   (the top voice through the human-playing model, a seed training never uses).
"""

from __future__ import annotations

import logging
import warnings
import zlib
from dataclasses import replace

import numpy as np
import torch

from engine.corpus.build import cache_dir
from engine.corpus.dataset import Corpus
from engine.corpus.piece import Piece, bar_lines, voice_roles
from engine.model.modelfile import load_model
from engine.model.sampler import SamplingConfig
from engine.model.session import ModelSession
from engine.music.harmony import accompaniment_metrics
from engine.music.metrics import Note
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB as V
from engine.offline.accompaniment import AccompanySettings, Melody, accompany
from engine.train.config import load_config
from engine.train.data import EVAL_SEED_BASE, load_token_data
from engine.train.evaluate import markov_baseline, val_windows
from engine.train.humanize import bar_phrases, humanize
from engine.train.markov import MarkovModel

log = logging.getLogger("sideman.eval")
COMMIT_TICKS = 2  # the live mode's default commit window, 50 ms, at the chorale preset's 72 BPM (1.4 ticks)
SUMMARY_KEYS = ("cr", "ur", "dissonant", "parallels_per_bar", "crossing_share", "above_melody_share",
                "onsets_together")


# ---- loss per sideman token -------------------------------------------------------------------------

def sideman_targets(windows: np.ndarray) -> np.ndarray:
    """(N, T) bool: target positions (windows[:, 1:]) that are sideman tokens."""
    y = windows[:, 1:]
    out = np.zeros(y.shape, dtype=bool)
    for i, w in enumerate(windows):
        role = None
        for j, t in enumerate(w.tolist()):
            if V.is_role(t):
                role = t - V.role_base
                if j > 0:
                    out[i, j - 1] = role != 0
            elif j > 0 and role not in (None, 0) and (V.is_note_on(t) or V.is_note_off(t) or V.is_velocity(t)):
                out[i, j - 1] = True
    return out


@torch.no_grad()
def model_sideman_loss(module, windows: np.ndarray, batch: int = 16) -> float:
    keep_all = sideman_targets(windows)
    total, count = 0.0, 0
    for b in range(0, len(windows), batch):
        a = torch.from_numpy(windows[b:b + batch].astype(np.int64))
        x, y = a[:, :-1], a[:, 1:]
        logp = torch.log_softmax(module.forward(x).float(), dim=-1)  # (B, T, V)
        nll = -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)  # (B, T)
        keep = torch.from_numpy(keep_all[b:b + batch])
        total += float(nll[keep].sum())
        count += int(keep.sum())
    return total / max(count, 1)


def markov_sideman_loss(markov: MarkovModel, windows: np.ndarray) -> float:
    keep_all = sideman_targets(windows)
    total, count = 0.0, 0
    for w, keep in zip(windows, keep_all):
        p = markov.token_probabilities(w, start=1)  # p[i] = P(w[i + 1] | w[:i + 1])
        total += float(-np.log(p[keep]).sum())
        count += int(keep.sum())
    return total / max(count, 1)


class MarkovSession:
    """The Markov model behind a ModelSession's interface, rollback included (for the planner)."""

    max_rollback = 1 << 30

    def __init__(self, markov: MarkovModel) -> None:
        self.markov = markov
        self.tokens: list[int] = []

    @property
    def position(self) -> int:
        return len(self.tokens)

    @property
    def history(self) -> list[int]:
        return list(self.tokens)

    @property
    def min_rollback_position(self) -> int:
        return 0

    def reset(self) -> None:
        self.tokens = []

    def feed(self, tokens) -> torch.Tensor:
        self.tokens += [int(t) for t in tokens]
        return self.logits

    def append(self, token: int) -> torch.Tensor:
        return self.feed([token])

    def rollback(self, pos: int) -> None:
        del self.tokens[pos:]

    @property
    def logits(self) -> torch.Tensor:
        p = self.markov.next_distribution(self.tokens[-16:])
        return torch.from_numpy(np.log(np.maximum(p, 1e-12)).astype(np.float32))


# ---- test pieces ---------------------------------------------------------------------------------

def piece_notes(piece: Piece, roles: np.ndarray, end: int) -> list[Note]:
    return [Note(int(on), int(min(off, end)), int(p), int(v), int(r))
            for (on, off, p, v, _), r in zip(piece.notes.tolist(), roles.tolist()) if on < end and r >= 0]


def melody_of(piece: Piece, roles: np.ndarray, end: int, played: bool) -> Melody:
    """The top voice of the first bars, as written or as a person plays it, as the player's messages."""
    notes = piece.notes
    if played:
        rng = np.random.default_rng(zlib.crc32(f"{piece.id}|played|{EVAL_SEED_BASE + 1}".encode()))
        notes = humanize(piece, roles, rng, phrases=bar_phrases(piece, roles)).notes
    msgs = []
    for (on, off, pitch, vel, _), r in zip(notes.tolist(), roles.tolist()):
        if r == 0 and on < end:
            msgs.append((float(on), (0x90, pitch, vel)))
            msgs.append((float(min(off, end)), (0x80, pitch, 0)))
    msgs.sort(key=lambda m: (m[0], m[1][0] == 0x90))
    _, num, den = piece.bars[0].tolist()
    return Melody(msgs, Meter(int(num), int(den)), 90.0, float(end))


def test_pieces(cfg, n: int, bars: int) -> list[tuple[Piece, np.ndarray, int]]:
    """(piece, roles, end tick of its first `bars` bars) for the first `n` test pieces with 3+ voices."""
    corpus = Corpus(cache_dir(None, V, cfg.data_limit or None), V)
    out = []
    for ref in corpus.refs("test", [c for c in cfg.collections if c in corpus.collections]):
        piece = corpus.piece(ref)
        if piece.n_parts < 3 or not len(piece.notes):
            continue
        roles, _ = voice_roles(piece, V)
        lines = bar_lines(piece, V.config.ticks_per_beat)
        end = int(lines[min(bars, len(lines) - 1)]) if len(lines) > 1 else piece.end_tick
        out.append((piece, roles, end))
        if len(out) >= n:
            break
    return out


def summarize(metrics: list) -> dict:
    out = {k: round(float(np.mean([getattr(m, k) for m in metrics])), 4) for k in SUMMARY_KEYS}
    for r in ("1", "2", "3"):
        lows = [m.ranges[r][0] for m in metrics if r in m.ranges]
        highs = [m.ranges[r][1] for m in metrics if r in m.ranges]
        if lows:
            out[f"range_{r}"] = [int(np.median(lows)), int(np.median(highs))]
    out["notes_per_piece"] = round(float(np.mean([m.notes for m in metrics])), 1)
    # presence, in quarter notes: the mean over pieces of the worst voice's longest silence inside the melody,
    # the worst of all pieces, and the longest note any voice held
    silences = [m.longest_silence_beats for m in metrics]
    out["silence_beats"] = round(float(np.mean(silences)), 2)
    out["silence_beats_max"] = round(float(np.max(silences)), 2)
    out["held_beats_max"] = round(float(np.max([m.longest_note_beats for m in metrics])), 2)
    return out


def reference_metrics(pieces, played: bool) -> dict:
    """The metrics of the real lower voices under the pieces' top voice (as played: the top voice played)."""
    rows = []
    for piece, roles, end in pieces:
        notes = piece_notes(piece, roles, end)
        if played:
            notes = [n for n in notes if n.role != 0] + _played_melody_notes(melody_of(piece, roles, end, True))
        bar = Meter(*map(int, piece.bars[0, 1:])).bar_ticks(V.config.ticks_per_beat)
        rows.append(accompaniment_metrics(notes, bar, beat_ticks=V.config.ticks_per_beat))
    return summarize(rows)


def accompany_metrics(source, pieces, played: bool, seed: int, commit_ticks: int = 0,
                      predict_player: bool = True, consonance_guard: bool = True, voice_leading: bool = True,
                      consonance_repair: bool = True) -> dict:
    metrics = []
    for i, (piece, roles, end) in enumerate(pieces):
        melody = melody_of(piece, roles, end, played)
        settings = AccompanySettings(sampling=SamplingConfig(0.9, 0, 0.95, seed + i), style=piece.collection,
                                     predict_player=predict_player, consonance_guard=consonance_guard,
                                     voice_leading=voice_leading, consonance_repair=consonance_repair)
        result = accompany(source, melody, settings, V, commit_ticks=commit_ticks)
        notes = [n for n in piece_notes(piece, roles, end) if n.role == 0] if not played else \
            _played_melody_notes(melody)
        notes += _notes_of_events(result.events)
        bar = Meter(*map(int, piece.bars[0, 1:])).bar_ticks(V.config.ticks_per_beat)
        metrics.append(accompaniment_metrics(notes, bar, beat_ticks=V.config.ticks_per_beat))
    return summarize(metrics)


def _played_melody_notes(melody: Melody) -> list[Note]:
    out, open_ = [], {}
    for tick, data in melody.messages:
        if data[0] == 0x90:
            open_[data[1]] = (int(round(tick)), data[2])
        elif data[1] in open_:
            start, vel = open_.pop(data[1])
            out.append(Note(start, max(start + 1, int(round(tick))), data[1], vel, 0))
    return out


def _notes_of_events(events) -> list[Note]:
    out, open_ = [], {}
    for e in events:
        key = (e.role, e.pitch)
        if e.on:
            open_[key] = e
        elif key in open_:
            on = open_.pop(key)
            out.append(Note(on.tick, max(on.tick + 1, e.tick), e.pitch, on.velocity, e.role))
    return out


def evaluate_accompany(model_paths: list[str], config: str = "accompaniment", pieces: int = 40, bars: int = 8,
                       windows: int = 64, markov_order: int = 4, seed: int = 0, data_limit: int | None = None,
                       as_played: bool = True) -> dict:
    cfg = load_config(config)
    if data_limit is not None:
        cfg = replace(cfg, data_limit=data_limit)
    data = load_token_data(cfg)
    result: dict = {"task": "accompany", "data": data.describe(), "markov_order": markov_order, "pieces": pieces,
                    "bars": bars}
    markov = markov_baseline(data, markov_order)
    win = val_windows(data, cfg.seq_len, windows)
    result["sideman_loss_markov"] = round(markov_sideman_loss(markov, win), 4)
    test = test_pieces(cfg, pieces, bars)
    sets = {"clean": False} | ({"as_played": True} if as_played else {})
    for name, played in sets.items():
        result.setdefault(name, {})["reference"] = reference_metrics(test, played)
        result[name]["markov"] = accompany_metrics(MarkovSession(markov), test, played, seed)
    for path in model_paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = load_model(path, V, "cpu")
        entry = {"path": str(path), "sideman_loss": round(model_sideman_loss(loaded.module.eval(), win), 4)}
        entry["loss_vs_markov"] = round(1 - entry["sideman_loss"] / result["sideman_loss_markov"], 4)
        session = ModelSession(loaded, device="cpu")
        for name, played in sets.items():
            entry[name] = accompany_metrics(session, test, played, seed)
        if as_played:  # what the live mode's commit window costs (planned as live, window 0 above), and a
            # plan that does not predict the player's next events (the player's role masked) for comparison
            entry["as_played_commit_window"] = accompany_metrics(session, test, True, seed, COMMIT_TICKS)
            entry["as_played_player_masked"] = accompany_metrics(session, test, True, seed, predict_player=False)
        for name, played in sets.items():  # the plan without the consonance guard (the model's own choices)
            entry[f"{name}_no_guard"] = accompany_metrics(session, test, played, seed, consonance_guard=False)
        for name, played in sets.items():  # the plan without the consonance repair
            entry[f"{name}_no_repair"] = accompany_metrics(session, test, played, seed, consonance_repair=False)
        for name, played in sets.items():  # the plan without the voice-leading rule
            entry[f"{name}_no_voice_leading"] = accompany_metrics(session, test, played, seed, voice_leading=False)
        result.setdefault("models", {})[loaded.name] = entry
    return result


def format_report(r: dict) -> str:
    lines = [f"accompaniment: {len(r['data']['collections'])} collections, {r['pieces']} test pieces, "
             f"first {r['bars']} bars, the real top voice given",
             "", f"{'loss per sideman token':28s}"]
    for name, m in r.get("models", {}).items():
        lines.append(f"  {name:26s} {m['sideman_loss']:.4f}  ({100 * m['loss_vs_markov']:.1f} % below Markov)")
    lines.append(f"  {'markov (order %d)' % r['markov_order']:26s} {r['sideman_loss_markov']:.4f}")
    head = (f"{'':28s} {'CR':>6s} {'UR':>6s} {'diss':>6s} {'par/bar':>7s} {'cross':>6s} {'above':>6s} {'onsets':>6s} "
            f"{'notes':>6s} {'sil':>5s} {'silmax':>6s} {'held':>5s}")
    for name in ("clean", "as_played"):
        if name not in r:
            continue
        lines += ["", f"{name}:", head]
        rows = [(k, m[name]) for k, m in r.get("models", {}).items()]
        rows += [(f"{k}, no consonance guard", m[f"{name}_no_guard"]) for k, m in r.get("models", {}).items()
                 if f"{name}_no_guard" in m]
        rows += [(f"{k}, no consonance repair", m[f"{name}_no_repair"]) for k, m in r.get("models", {}).items()
                 if f"{name}_no_repair" in m]
        rows += [(f"{k}, no voice-leading rule", m[f"{name}_no_voice_leading"]) for k, m in r.get("models", {}).items()
                 if f"{name}_no_voice_leading" in m]
        if name == "as_played":
            for k, m in r.get("models", {}).items():
                if "as_played_commit_window" in m:
                    rows += [(f"{k}, window {COMMIT_TICKS} ticks", m["as_played_commit_window"]),
                             (f"{k}, player masked", m["as_played_player_masked"])]
        rows += [("markov", r[name]["markov"]), ("reference", r[name]["reference"])]
        for label, m in rows:
            lines.append(f"  {label:26s} {m['cr']:6.3f} {m['ur']:6.3f} {m['dissonant']:6.3f} "
                         f"{m['parallels_per_bar']:7.3f} {m['crossing_share']:6.3f} {m['above_melody_share']:6.3f} "
                         f"{m['onsets_together']:6.3f} {m['notes_per_piece']:6.1f} {m.get('silence_beats', 0):5.1f} "
                         f"{m.get('silence_beats_max', 0):6.1f} {m.get('held_beats_max', 0):5.1f}")
    return "\n".join(lines)
