"""A melody phrase (one line, 1-4 bars from a bar line) and its RESTYLE token stream.

    m = Melody(notes, Meter(3, 4), bars=2)   # notes (N, 4) int32: on, off, pitch, velocity; ticks from the
                                             # phrase's first bar line, one line (no two notes at once)
    tokens = encode_melody(m)                # BOS RESTYLE STYLE_none, the notes as role 0, BARs, EOS
    decode_melody(tokens, m.meter, m.bars)   # back to a Melody (cut at the phrase's end)

The stream names no style: the restyle model takes the style from its condition vector only, so the encoder
cannot read it off a token and the decoder cannot copy it from one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.music.tokens import Meter, StreamDecoder, StreamEncoder
from engine.music.vocab import DEFAULT_VOCAB, Vocab

ON, OFF, PITCH, VELOCITY = range(4)
ROLE = 0  # the phrase is the player's line; its restyled version is the same role
NO_STYLE = "none"
TASK = "RESTYLE"


@dataclass(frozen=True, eq=False)
class Melody:
    notes: np.ndarray  # (N, 4) int32: on, off, pitch, velocity, sorted by onset
    meter: Meter
    bars: int

    def bar_ticks(self, vocab: Vocab = DEFAULT_VOCAB) -> int:
        return self.meter.bar_ticks(vocab.config.ticks_per_beat)

    def length_ticks(self, vocab: Vocab = DEFAULT_VOCAB) -> int:
        return self.bars * self.bar_ticks(vocab)

    def transposed(self, k: int) -> "Melody":
        notes = self.notes.copy()
        notes[:, PITCH] = np.clip(notes[:, PITCH] + k, 0, 127)
        return Melody(notes, self.meter, self.bars)

    @property
    def pitches(self) -> np.ndarray:
        return self.notes[:, PITCH]


def one_line(notes: np.ndarray) -> np.ndarray:
    """(N, 4) notes as one line: of the notes starting together the highest, each note cut where the next
    begins. Sorted by onset."""
    if len(notes) == 0:
        return np.zeros((0, 4), dtype=np.int32)
    order = np.lexsort((-notes[:, PITCH], notes[:, ON]))
    notes = notes[order].astype(np.int32)
    keep = np.ones(len(notes), dtype=bool)
    keep[1:] = notes[1:, ON] != notes[:-1, ON]
    notes = notes[keep].copy()
    notes[:-1, OFF] = np.minimum(notes[:-1, OFF], notes[1:, ON])
    return notes[notes[:, OFF] > notes[:, ON]]


def encode_melody(m: Melody, vocab: Vocab = DEFAULT_VOCAB, eos: bool = True) -> list[int]:
    """The phrase's RESTYLE stream: header, its notes as role 0 with bar lines, through its last bar."""
    enc = StreamEncoder(vocab, m.meter, 0)
    out = enc.begin(NO_STYLE, TASK)
    end = m.length_ticks(vocab)
    for on, off, pitch, vel in m.notes.tolist():
        if on >= end:
            break
        out += enc.note_on(on, pitch, vel, ROLE)
        out += enc.note_off(min(off, end), pitch, ROLE)
    out += enc.finish(end, eos=eos)
    return out


def decode_melody(tokens, meter: Meter, bars: int, vocab: Vocab = DEFAULT_VOCAB) -> Melody:
    """A RESTYLE stream back to a Melody of `bars` bars: nothing starts at or after its end, and what
    sounds there ends there."""
    end = bars * meter.bar_ticks(vocab.config.ticks_per_beat)
    dec = StreamDecoder(vocab)
    open_: dict[int, tuple[int, int]] = {}
    rows: list[tuple[int, int, int, int]] = []
    events = dec.feed_all(tokens) + dec.finish()
    for e in events:
        if e.on:
            if e.tick >= end:
                continue
            if e.pitch in open_:
                start, vel = open_.pop(e.pitch)
                rows.append((start, max(start + 1, e.tick), e.pitch, vel))
            open_[e.pitch] = (int(e.tick), int(e.velocity))
        elif e.pitch in open_:
            start, vel = open_.pop(e.pitch)
            rows.append((start, min(max(start + 1, int(e.tick)), end), e.pitch, vel))
    for pitch, (start, vel) in open_.items():
        rows.append((start, end, pitch, vel))
    notes = np.asarray(sorted(rows), dtype=np.int32).reshape(-1, 4)
    return Melody(notes, meter, bars)


__all__ = ["Melody", "decode_melody", "encode_melody", "one_line"]
