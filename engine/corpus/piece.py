"""One piece of the corpus as notes with its part structure, and its tokens under a role mapping.

A `Piece` keeps what the score says, independent of any role assignment: a compact note array
(onset tick, offset tick, pitch, velocity, part index), the part names, and the bar grid. Roles are
assigned when the piece is encoded, by a role mapping (`ROLE_MAPPINGS`), so the same cached notes can
train the continuation model (melody vs the rest), the accompaniment model (soprano vs lower voices)
or a call-and-response model (a tune split into alternating phrases).

The bar grid is a list of rows (tick, numerator, denominator): from `tick` on, bars of that meter.
The first row is the bar origin (after a pickup) and the first meter; later rows follow the score's
measures where they change length (a time-signature change, a short measure at a repeat). A measure
length that is no time signature is written as Meter(n, 4 * ticks_per_beat), i.e. n ticks.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from engine.music.tokens import Meter, NoteEvent, StreamEncoder, event_order, quantize
from engine.music.vocab import DEFAULT_VOCAB, Vocab

NOTE_FIELDS = ("on", "off", "pitch", "velocity", "part")
ON, OFF, PITCH, VELOCITY, PART = range(len(NOTE_FIELDS))
DEFAULT_VELOCITY = 80


def empty_notes() -> np.ndarray:
    return np.zeros((0, len(NOTE_FIELDS)), dtype=np.int32)


def make_notes(rows: Sequence[tuple[int, int, int, int, int]]) -> np.ndarray:
    """A note array from (on, off, pitch, velocity, part) rows, sorted by onset, part, pitch."""
    if not rows:
        return empty_notes()
    notes = np.asarray(rows, dtype=np.int32).reshape(-1, len(NOTE_FIELDS))
    order = np.lexsort((notes[:, PITCH], notes[:, PART], notes[:, ON]))
    return notes[order]


@dataclass(frozen=True, eq=False)
class Piece:
    """A parsed piece: notes per part and the bar grid. `notes` is (N, 5) int32, see NOTE_FIELDS."""

    id: str  # stable across machines: "<collection>:<path relative to its corpus root>[#tune]"
    collection: str  # also its style label
    source: str  # the file it came from
    notes: np.ndarray
    part_names: tuple[str, ...]
    bars: np.ndarray  # (K, 3) int32 rows: tick, numerator, denominator
    meter_changes: int = 0  # time-signature changes in the score

    @property
    def n_parts(self) -> int:
        return len(self.part_names)

    @property
    def end_tick(self) -> int:
        return int(self.notes[:, OFF].max()) if len(self.notes) else 0


def bar_lines(piece: Piece, ticks_per_beat: int) -> np.ndarray:
    """Ticks of every bar line from the bar origin up to the end of the last note."""
    end = piece.end_tick
    rows = piece.bars
    out: list[int] = []
    for i, (tick, num, den) in enumerate(rows):
        stop = int(rows[i + 1, 0]) if i + 1 < len(rows) else end + 1
        step = Meter(int(num), int(den)).bar_ticks(ticks_per_beat)
        out.extend(range(int(tick), min(stop, end + 1), step))
    return np.asarray(out, dtype=np.int64)


# ---- role mappings: piece -> (role per note, TURN ticks) -----------------------------------

RoleMapping = Callable[[Piece, Vocab], "tuple[np.ndarray, tuple[int, ...]]"]


def melody_roles(piece: Piece, vocab: Vocab = DEFAULT_VOCAB) -> tuple[np.ndarray, tuple[int, ...]]:
    """The default: part 0 (the top voice, the melody) is the player, every other part the sideman."""
    roles = np.where(piece.notes[:, PART] == 0, 0, min(1, vocab.config.n_roles - 1))
    return roles.astype(np.int64), ()


def part_roles(piece: Piece, vocab: Vocab = DEFAULT_VOCAB) -> tuple[np.ndarray, tuple[int, ...]]:
    """Part i -> role i (parts past the last role share it): SATB -> player, sideman, sideman2, sideman3."""
    return np.minimum(piece.notes[:, PART], vocab.config.n_roles - 1).astype(np.int64), ()


def call_response_roles(
    piece: Piece, vocab: Vocab = DEFAULT_VOCAB, bars_per_phrase: int = 2
) -> tuple[np.ndarray, tuple[int, ...]]:
    """Phrases of `bars_per_phrase` bars alternate player / sideman, with a TURN at each change.

    A note belongs to the phrase its onset falls in; a pickup belongs to the first phrase.
    """
    if bars_per_phrase < 1:
        raise ValueError("bars_per_phrase must be at least 1")
    lines = bar_lines(piece, vocab.config.ticks_per_beat)
    return _alternate(piece, lines[bars_per_phrase::bars_per_phrase], vocab)


def _alternate(piece: Piece, bounds: np.ndarray, vocab: Vocab) -> tuple[np.ndarray, tuple[int, ...]]:
    """Roles alternating player / sideman at `bounds` (the first tick of every phrase but the first), and
    a TURN at every bound that a phrase with notes begins at."""
    phrase = np.searchsorted(bounds, piece.notes[:, ON], side="right")
    roles = (phrase % 2) * min(1, vocab.config.n_roles - 1)
    turns = tuple(int(bounds[p - 1]) for p in np.unique(phrase) if p > 0)
    return roles.astype(np.int64), turns


def piece_rng(piece: Piece, salt: str = "") -> np.random.Generator:
    """A generator seeded by the piece's id: the same draws on every machine and every run."""
    return np.random.default_rng(zlib.crc32(f"{piece.id}|{salt}".encode()))


def call_response_varied_roles(piece: Piece, vocab: Vocab = DEFAULT_VOCAB, low: int = 1,
                               high: int = 8) -> tuple[np.ndarray, tuple[int, ...]]:
    """Phrases of 1-8 bars (drawn per phrase, seeded by the piece's id) alternate player / sideman, with
    a TURN at each change; as `call_response_roles`, which always alternates 2-bar phrases."""
    lines = bar_lines(piece, vocab.config.ticks_per_beat)
    rng = piece_rng(piece, "phrase-lengths")
    bounds = []
    bar = 0
    while True:
        bar += int(rng.integers(low, high + 1))
        if bar >= len(lines):
            break
        bounds.append(int(lines[bar]))
    return _alternate(piece, np.asarray(bounds, dtype=np.int64), vocab)


DROPPED = -1  # the role of a note a mapping leaves out of the stream


def voice_roles(piece: Piece, vocab: Vocab = DEFAULT_VOCAB) -> tuple[np.ndarray, tuple[int, ...]]:
    """Accompaniment, one line per role: the top voice (part 0) is the player; the lowest (the last part)
    is always the last role (the bass); part 1 is role 1 and the part just above the bass role 2. SATB ->
    player, alto, tenor, bass; a five-voice madrigal (SQATB) -> player, quinto, tenor, bass, its alto left
    out (DROPPED); three voices -> player, role 1, bass; two -> player, bass. Scores list their parts top
    down (music21's order)."""
    part = piece.notes[:, PART].astype(np.int64)
    n = piece.n_parts
    last_role = vocab.config.n_roles - 1
    role_of_part = np.full(max(n, 1), DROPPED, dtype=np.int64)
    role_of_part[0] = 0
    if n >= 2:
        role_of_part[n - 1] = last_role
    if n >= 3:
        role_of_part[1] = 1
    if n >= 4:
        role_of_part[n - 2] = 2
    return role_of_part[part], ()


ROLE_MAPPINGS: dict[str, RoleMapping] = {
    "melody": melody_roles,
    "parts": part_roles,
    "call_response": call_response_roles,
    "call_response_varied": call_response_varied_roles,
    "accompany": voice_roles,
}
# the task token a mapping's streams carry (and so the order of its events: see tokens.event_order)
MAPPING_TASKS: dict[str, str] = {"accompany": "ACCOMPANY"}


def task_of(mapping: "str | RoleMapping") -> str:
    return MAPPING_TASKS.get(mapping, "CONTINUE") if isinstance(mapping, str) else "CONTINUE"


def role_mapping(name: str) -> RoleMapping:
    try:
        return ROLE_MAPPINGS[name]
    except KeyError:
        raise ValueError(f"unknown role mapping {name!r}; known: {', '.join(ROLE_MAPPINGS)}") from None


# ---- events and tokens -------------------------------------------------------------------------


def piece_events(piece: Piece, roles: np.ndarray) -> list[NoteEvent]:
    """Note-on and note-off events of every note (in note order; sort with `canonical_order`)."""
    out: list[NoteEvent] = []
    for (on, off, pitch, vel, _part), role in zip(piece.notes.tolist(), roles.tolist()):
        if role == DROPPED:
            continue
        out.append(NoteEvent(on, True, pitch, vel, role))
        out.append(NoteEvent(off, False, pitch, 0, role))
    return out


def encode_piece(
    piece: Piece,
    vocab: Vocab = DEFAULT_VOCAB,
    mapping: str | RoleMapping = "melody",
    task: str | None = None,
    style: str | None = None,
) -> np.ndarray:
    """Tokens (uint16) of a piece: BOS, task, style, then its events in the task's order.

    The task defaults to the mapping's (`MAPPING_TASKS`: ACCOMPANY for "accompany", else CONTINUE), and
    the events follow the task's order (`event_order`: canonical, or the sideman's events first at each
    tick for ACCOMPANY). With one bar-grid row and no TURNs this is exactly `encode_events(order(events),
    ..., meter, bar_origin)`; later grid rows become `set_meter` calls and TURNs `turn()` calls, each
    before the events at its tick, as a live clock would make them.
    """
    fn = role_mapping(mapping) if isinstance(mapping, str) else mapping
    task = task or task_of(mapping)
    roles, turns = fn(piece, vocab)
    events = event_order(task)(piece_events(piece, roles))
    rows = piece.bars.tolist()
    enc = StreamEncoder(vocab, Meter(rows[0][1], rows[0][2]), rows[0][0])
    out = enc.begin(piece.collection if style is None else style, task)
    # (tick, 0 = meter change / 1 = turn, meter): a meter change goes before a turn at the same tick
    changes = sorted([(t, 0, Meter(n, d)) for t, n, d in rows[1:]] + [(t, 1, None) for t in turns],
                     key=lambda c: (c[0], c[1]))
    j = 0
    for e in events:
        tick = quantize(e.tick)
        while j < len(changes) and changes[j][0] <= tick:
            at, kind, meter = changes[j]
            out += enc.set_meter(at, meter) if kind == 0 else enc.advance_to(at) + enc.turn()
            j += 1
        out += enc.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else enc.note_off(e.tick, e.pitch, e.role)
    out += enc.finish()
    if max(out) >= 1 << 16:
        raise ValueError(f"vocabulary of {vocab.size} tokens does not fit uint16")
    return np.asarray(out, dtype=np.uint16)
