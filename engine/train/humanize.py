"""A model of human playing: what a person at a keyboard does to the player's part of a score.

Scores are exactly legato and on the grid; people are not. `humanize` changes the notes of the
player's role (role 0) only, phrase by phrase, the way a player does:

- articulation: each note held 50-105 % of its written length (a phrase has its own touch, detached to
  slightly overlapping, and each note varies around it); a repeated pitch is released before it is
  struck again, as a key must be;
- timing: onsets off the grid by a few ms (sd 10-15 ms, drawn per phrase), the phrase's tempo drifting
  a few % from the click, the phrase starting a little before or after its bar line;
- rolled chords: notes struck together are sometimes spread low to high over up to 30 ms;
- velocity: spread around the written velocity.

Times in ms are taken at `bpm` (a tick is 60000 / (bpm * 24) ms: 25 ms at 100 BPM) and land on whole
ticks, as the live encoder quantizes what it hears. The sideman's roles and the bar grid are left
exactly as written: they are what the sideman should play, and the clock's, not the player's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from engine.corpus.piece import OFF, ON, PITCH, VELOCITY, Piece, bar_lines, encode_piece, piece_rng, role_mapping, task_of
from engine.music.vocab import DEFAULT_VOCAB, PLAYER, Vocab

if TYPE_CHECKING:
    from engine.music.melody import Melody


@dataclass(frozen=True)
class HumanPlaying:
    articulation: tuple[float, float] = (0.5, 1.05)  # held share of the written length
    articulation_spread: float = 0.05  # a note's articulation around its phrase's
    onset_jitter_ms: tuple[float, float] = (10.0, 15.0)  # the sd of onset timing, drawn per phrase
    tempo_drift: float = 0.04  # a phrase's tempo is off the click by up to this share
    phrase_offset_ms: float = 40.0  # a phrase starts up to this long before or after its bar line
    roll_probability: float = 0.3  # share of chords rolled
    roll_ms: float = 30.0  # a rolled chord spreads over up to this long
    velocity_sd: float = 10.0
    bpm: float = 100.0  # the tempo the ms figures are taken at

    def __post_init__(self) -> None:
        lo, hi = self.articulation
        if not 0.0 < lo <= hi:
            raise ValueError(f"articulation {self.articulation}: need 0 < low <= high")
        if self.bpm <= 0:
            raise ValueError("bpm must be positive")


def ms_per_tick(bpm: float, ticks_per_beat: int) -> float:
    return 60000.0 / (bpm * ticks_per_beat)


def player_phrases(notes: np.ndarray, roles: np.ndarray) -> list[np.ndarray]:
    """Indices of the player's notes, one array per phrase: a phrase is a run of the player's notes in
    onset order with none of the sideman's starting between them."""
    order = np.lexsort((notes[:, PITCH], notes[:, ON]))
    phrases: list[list[int]] = []
    current: list[int] = []
    for i in order.tolist():
        if roles[i] == PLAYER:
            current.append(i)
        elif current:
            phrases.append(current)
            current = []
    if current:
        phrases.append(current)
    return [np.asarray(p, dtype=np.int64) for p in phrases]


def bar_phrases(piece: Piece, roles: np.ndarray, vocab: Vocab = DEFAULT_VOCAB, low: int = 1,
                high: int = 4) -> list[np.ndarray]:
    """Indices of the player's notes, one array per phrase of 1-4 bars (lengths drawn per phrase, seeded
    by the piece's id): the phrases of a player whose part sounds with the sideman's (accompaniment),
    where `player_phrases` would make every note its own phrase."""
    lines = bar_lines(piece, vocab.config.ticks_per_beat)
    rng = piece_rng(piece, "played-phrases")
    bounds, bar = [], 0
    while bar < len(lines):
        bar += int(rng.integers(low, high + 1))
        if bar < len(lines):
            bounds.append(int(lines[bar]))
    player = np.flatnonzero(roles == PLAYER)
    which = np.searchsorted(np.asarray(bounds, dtype=np.int64), piece.notes[player, ON], side="right")
    return [player[which == k] for k in np.unique(which)]


def humanize(piece: Piece, roles: np.ndarray, rng: np.random.Generator, config: HumanPlaying = HumanPlaying(),
             vocab: Vocab = DEFAULT_VOCAB, phrases: list[np.ndarray] | None = None) -> Piece:
    """The piece with its player's notes (role 0 under `roles`) as a person plays them, phrase by phrase
    (`phrases`: arrays of note indices; default `player_phrases`)."""
    tpb = vocab.config.ticks_per_beat
    to_ticks = 1.0 / ms_per_tick(config.bpm, tpb)
    notes = piece.notes.astype(np.float64)
    for phrase in phrases if phrases is not None else player_phrases(piece.notes, roles):
        _play_phrase(notes, phrase, rng, config, to_ticks)
    out = piece.notes.copy()
    player = roles == PLAYER
    out[player, ON] = np.maximum(0, np.rint(notes[player, ON])).astype(np.int32)
    out[player, OFF] = np.maximum(out[player, ON] + 1, np.rint(notes[player, OFF])).astype(np.int32)
    out[player, VELOCITY] = np.clip(np.rint(notes[player, VELOCITY]), 1, 127).astype(np.int32)
    _release_before_restrike(out, player)
    return replace(piece, notes=out)


def _play_phrase(notes: np.ndarray, phrase: np.ndarray, rng: np.random.Generator, config: HumanPlaying,
                 to_ticks: float) -> None:
    """One phrase's notes (float ticks, in place): touch, drift, offset, jitter, rolls, velocity."""
    lo, hi = config.articulation
    touch = rng.uniform(lo, hi)
    jitter_sd = rng.uniform(*config.onset_jitter_ms) * to_ticks
    drift = rng.uniform(-config.tempo_drift, config.tempo_drift)
    offset = rng.uniform(-config.phrase_offset_ms, config.phrase_offset_ms) * to_ticks
    on, off = notes[phrase, ON].copy(), notes[phrase, OFF].copy()
    start = on.min()
    length = (off - on) * np.clip(touch + rng.uniform(-1, 1, len(phrase)) * config.articulation_spread, lo, hi)
    new_on = start + offset + (on - start) * (1.0 + drift) + rng.normal(0.0, jitter_sd, len(phrase))
    for written in np.unique(on):  # notes struck together: sometimes rolled, low to high
        chord = np.flatnonzero(on == written)
        if len(chord) > 1 and rng.random() < config.roll_probability:
            spread = rng.uniform(0.3, 1.0) * config.roll_ms * to_ticks
            by_pitch = chord[np.argsort(notes[phrase[chord], PITCH])]
            new_on[by_pitch] = new_on[by_pitch].min() + np.linspace(0.0, spread, len(chord))
    notes[phrase, ON] = new_on
    notes[phrase, OFF] = new_on + np.maximum(length * (1.0 + drift), 1.0)
    notes[phrase, VELOCITY] += rng.normal(0.0, config.velocity_sd, len(phrase))


def _release_before_restrike(notes: np.ndarray, player: np.ndarray) -> None:
    """A key is released before it is struck again: a player's note ends at or before the next onset of
    its pitch (and a note struck at the same tick as the previous one of its pitch moves a tick on)."""
    idx = np.flatnonzero(player)
    for pitch in np.unique(notes[idx, PITCH]):
        same = idx[notes[idx, PITCH] == pitch]
        same = same[np.lexsort((notes[same, OFF], notes[same, ON]))]
        for a, b in zip(same[:-1], same[1:]):
            if notes[b, ON] <= notes[a, ON]:
                notes[b, ON] = notes[a, ON] + 1
                notes[b, OFF] = max(notes[b, OFF], notes[b, ON] + 1)
            notes[a, OFF] = min(notes[a, OFF], notes[b, ON])


# -- a piece as played, in tokens ---------------------------------------------------------------------------


def turns_as_played(played: Piece, written: Piece, roles: np.ndarray,
                    turns: tuple[int, ...]) -> list[tuple[int, bool]]:
    """(tick, to the player?) of each turn when the player's part is played: a turn to the player comes
    with the player's first note (a little before or after the bar line, as live, where the daemon writes
    TURN when the player's first event arrives); a turn to the sideman stays on its bar line (the answer
    starts there). Ticks never go back: a turn is at or after the one before it."""
    out: list[tuple[int, bool]] = []
    bounds = list(turns) + [np.iinfo(np.int64).max]
    for k, tick in enumerate(turns):
        in_phrase = (written.notes[:, ON] >= tick) & (written.notes[:, ON] < bounds[k + 1])
        player = in_phrase & (roles == PLAYER)
        to_player = bool(player.any()) and not (in_phrase & (roles != PLAYER)).any()
        if to_player:
            tick = int(played.notes[player, ON].min())
        out.append((max(tick, out[-1][0] if out else 0), to_player))
    return out


def settle_turns(played: Piece, roles: np.ndarray, turns: list[tuple[int, bool]]) -> Piece:
    """What live turn-taking does at each turn: the player lets go before the sideman's turn (the answer
    starts after the phrase ends), and the sideman's notes end where the player comes in early (a
    cut-in ends the answer's notes there)."""
    notes = played.notes.copy()
    for tick, to_player in turns:
        who_yields = (roles != PLAYER) if to_player else (roles == PLAYER)
        held = who_yields & (notes[:, ON] < tick) & (notes[:, OFF] > tick)
        notes[held, OFF] = tick
    notes[:, OFF] = np.maximum(notes[:, OFF], notes[:, ON] + 1)
    return replace(played, notes=notes)


def encode_as_played(piece: Piece, rng: np.random.Generator, config: HumanPlaying = HumanPlaying(),
                     mapping: str = "call_response_varied", vocab: Vocab = DEFAULT_VOCAB,
                     task: str | None = None) -> np.ndarray:
    """Tokens of `piece` under `mapping` with the player's part as a person plays it: roles as the score
    gives them (a note played early stays in its own phrase), turns where live turn-taking puts them.
    For accompaniment (the player's part sounds with the sideman's) phrases are runs of 1-4 bars."""
    task = task or task_of(mapping)
    roles, turns = role_mapping(mapping)(piece, vocab)
    phrases = bar_phrases(piece, roles, vocab) if task == "ACCOMPANY" else None
    played = humanize(piece, roles, rng, config, vocab, phrases)
    live_turns = turns_as_played(played, piece, roles, turns)
    played = settle_turns(played, roles, live_turns)
    ticks = tuple(tick for tick, _ in live_turns)
    return encode_piece(played, vocab, mapping=lambda _piece, _vocab: (roles, ticks), task=task)


# -- a change training never sees (for evaluation) -----------------------------------------------------------


def swing(piece: Piece, roles: np.ndarray, ratio: float = 2.0, vocab: Vocab = DEFAULT_VOCAB) -> Piece:
    """The player's part swung: within each beat, time is stretched so the off-beat eighth falls at
    `ratio` : 1 (2.0: a triplet swing). The training's human-playing model never does this, so an
    evaluation on swung prompts measures robustness to a change the model has not seen."""
    tpb = vocab.config.ticks_per_beat
    half, split = tpb / 2, tpb * ratio / (ratio + 1.0)

    def warp(t: np.ndarray) -> np.ndarray:
        beat, r = np.divmod(t.astype(np.float64), tpb)
        return beat * tpb + np.where(r < half, r * split / half, split + (r - half) * (tpb - split) / half)

    notes = piece.notes.copy()
    player = roles == PLAYER
    notes[player, ON] = np.rint(warp(notes[player, ON])).astype(np.int32)
    notes[player, OFF] = np.maximum(notes[player, ON] + 1, np.rint(warp(notes[player, OFF]))).astype(np.int32)
    return replace(piece, notes=notes)


def encode_swung(piece: Piece, mapping: str = "call_response_varied", vocab: Vocab = DEFAULT_VOCAB,
                 task: str | None = None) -> np.ndarray:
    """Tokens of `piece` under `mapping` with the player's part swung (turns where the score has them)."""
    roles, turns = role_mapping(mapping)(piece, vocab)
    return encode_piece(swing(piece, roles, vocab=vocab), vocab, mapping=lambda _p, _v: (roles, turns),
                        task=task or task_of(mapping))


# -- one melody phrase as played (restyle) -------------------------------------------------------------------


def play_melody(melody: "Melody", rng: np.random.Generator, config: HumanPlaying = HumanPlaying(),
                vocab: Vocab = DEFAULT_VOCAB) -> "Melody":
    """A melody phrase as a person plays it (one phrase: one touch, drift and offset), on whole ticks from
    its first bar line; a note played before the bar line starts on it."""
    from engine.music.melody import Melody

    m = melody.notes
    rows = np.zeros((len(m), 5), dtype=np.int32)
    rows[:, [ON, OFF, PITCH, VELOCITY]] = m
    bars = np.asarray([[0, melody.meter.numerator, melody.meter.denominator]], dtype=np.int32)
    piece = Piece("melody", "user", "", rows, ("melody",), bars)
    played = humanize(piece, np.zeros(len(m), dtype=np.int64), rng, config, vocab, [np.arange(len(m))])
    notes = played.notes[:, [ON, OFF, PITCH, VELOCITY]]
    notes = notes[np.argsort(notes[:, 0], kind="stable")]
    return Melody(np.ascontiguousarray(notes, dtype=np.int32), melody.meter, melody.bars)
