"""The token vocabulary: contiguous blocks of ids, each block one kind of event.

Time is musical: `TICKS_PER_BEAT` ticks per quarter note (24, MIDI clock's own resolution), so
triplets and 32nds land on the grid and the model never sees a tempo.

Blocks, in id order:
    specials   PAD, BOS, EOS, TURN (phrase/turn boundary), BAR (a bar line)
    tasks      CONTINUE, ACCOMPANY, RESTYLE: what the stream is for (after BOS)
    roles      ROLE_0 (the player) .. ROLE_{n-1} (the sideman's parts): the role of the events that follow
    styles     one per collection, STYLE_<name>: conditions generation (after BOS)
    velocity   VEL_0 .. VEL_{bins-1}: velocity bin of the note-ons that follow
    shift      SHIFT_1 .. SHIFT_max: advance time by that many ticks
    note_on    NOTE_ON_0 .. NOTE_ON_127
    note_off   NOTE_OFF_0 .. NOTE_OFF_127

Role, velocity and time are state: a ROLE or VEL token is written only when it changes, and events
at the same tick follow each other with no shift between them. `python -m engine.music.vocab` prints the layout.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

TICKS_PER_BEAT = 24

SPECIALS = ("PAD", "BOS", "EOS", "TURN", "BAR")
TASKS = ("CONTINUE", "ACCOMPANY", "RESTYLE")
DEFAULT_STYLES = (
    "none",
    "bach",
    "essen",
    "oneill",
    "ryan",
    "aird",
    "palestrina",
    "monteverdi",
    "trecento",
    "user",
)
ROLE_NAMES = ("player", "sideman", "sideman2", "sideman3")
PLAYER = 0  # the player's role in every token stream


@dataclass(frozen=True)
class VocabConfig:
    """Everything that fixes the meaning of token ids. Its hash identifies a model's vocabulary."""

    ticks_per_beat: int = TICKS_PER_BEAT
    max_shift: int = 96  # ticks: one 4/4 bar; longer gaps are written as several shifts
    velocity_bins: int = 8
    n_roles: int = 4
    styles: tuple[str, ...] = DEFAULT_STYLES
    n_pitches: int = 128

    def __post_init__(self) -> None:
        if self.ticks_per_beat < 1 or self.max_shift < 1 or self.velocity_bins < 1:
            raise ValueError("ticks_per_beat, max_shift and velocity_bins must be positive")
        if not 1 <= self.n_roles <= len(ROLE_NAMES):
            raise ValueError(f"n_roles must be 1..{len(ROLE_NAMES)}")
        if len(set(self.styles)) != len(self.styles) or not self.styles:
            raise ValueError("styles must be unique and non-empty")


@dataclass(frozen=True)
class Vocab:
    """Token ids for one `VocabConfig`. Build with `Vocab(config)`; all offsets are derived."""

    config: VocabConfig = field(default_factory=VocabConfig)

    # block offsets, derived in __post_init__
    pad: int = field(init=False)
    bos: int = field(init=False)
    eos: int = field(init=False)
    turn: int = field(init=False)
    bar: int = field(init=False)
    task_base: int = field(init=False)
    role_base: int = field(init=False)
    style_base: int = field(init=False)
    vel_base: int = field(init=False)
    shift_base: int = field(init=False)  # id of SHIFT_1
    note_on_base: int = field(init=False)
    note_off_base: int = field(init=False)
    size: int = field(init=False)

    def __post_init__(self) -> None:
        c = self.config
        offsets: dict[str, int] = {}
        n = 0
        for name in ("pad", "bos", "eos", "turn", "bar"):
            offsets[name] = n
            n += 1
        for name, count in (
            ("task_base", len(TASKS)),
            ("role_base", c.n_roles),
            ("style_base", len(c.styles)),
            ("vel_base", c.velocity_bins),
            ("shift_base", c.max_shift),
            ("note_on_base", c.n_pitches),
            ("note_off_base", c.n_pitches),
        ):
            offsets[name] = n
            n += count
        offsets["size"] = n
        for name, value in offsets.items():
            object.__setattr__(self, name, value)

    # ---- token constructors -------------------------------------------------------------
    def task(self, name: str) -> int:
        return self.task_base + TASKS.index(name.upper())

    def role(self, r: int) -> int:
        if not 0 <= r < self.config.n_roles:
            raise ValueError(f"role {r} out of range 0..{self.config.n_roles - 1}")
        return self.role_base + r

    def style(self, name: str) -> int:
        try:
            return self.style_base + self.config.styles.index(name)
        except ValueError:
            raise ValueError(f"unknown style {name!r}; known styles: {', '.join(self.config.styles)}") from None

    def velocity(self, bin_: int) -> int:
        return self.vel_base + bin_

    def shift(self, ticks: int) -> int:
        if not 1 <= ticks <= self.config.max_shift:
            raise ValueError(f"shift {ticks} out of range 1..{self.config.max_shift}")
        return self.shift_base + ticks - 1

    def note_on(self, pitch: int) -> int:
        return self.note_on_base + pitch

    def note_off(self, pitch: int) -> int:
        return self.note_off_base + pitch

    # ---- token predicates ---------------------------------------------------------------
    def is_task(self, t: int) -> bool:
        return self.task_base <= t < self.role_base

    def is_role(self, t: int) -> bool:
        return self.role_base <= t < self.style_base

    def is_style(self, t: int) -> bool:
        return self.style_base <= t < self.vel_base

    def is_velocity(self, t: int) -> bool:
        return self.vel_base <= t < self.shift_base

    def is_shift(self, t: int) -> bool:
        return self.shift_base <= t < self.note_on_base

    def is_note_on(self, t: int) -> bool:
        return self.note_on_base <= t < self.note_off_base

    def is_note_off(self, t: int) -> bool:
        return self.note_off_base <= t < self.size

    def is_note(self, t: int) -> bool:
        return self.note_on_base <= t < self.size

    def pitch_of(self, t: int) -> int:
        return (t - self.note_on_base) % self.config.n_pitches

    def shift_ticks(self, t: int) -> int:
        return t - self.shift_base + 1

    # ---- velocity bins ------------------------------------------------------------------
    def velocity_bin(self, velocity: int) -> int:
        """MIDI velocity 1..127 -> bin 0..bins-1 (equal widths)."""
        v = min(max(int(velocity), 1), 127)
        return min((v - 1) * self.config.velocity_bins // 127, self.config.velocity_bins - 1)

    def bin_velocity(self, bin_: int) -> int:
        """Bin -> the MIDI velocity at the bin's centre (its inverse on the bins)."""
        bins = self.config.velocity_bins
        lo = -(-bin_ * 127 // bins) + 1  # smallest velocity in the bin
        hi = -(-(bin_ + 1) * 127 // bins)  # largest velocity in the bin
        return (lo + hi) // 2

    # ---- names and identity ---------------------------------------------------------------
    def name(self, t: int) -> str:
        c = self.config
        if 0 <= t < len(SPECIALS):
            return SPECIALS[t]
        if self.is_task(t):
            return TASKS[t - self.task_base]
        if self.is_role(t):
            return f"ROLE_{ROLE_NAMES[t - self.role_base]}"
        if self.is_style(t):
            return f"STYLE_{c.styles[t - self.style_base]}"
        if self.is_velocity(t):
            return f"VEL_{t - self.vel_base}"
        if self.is_shift(t):
            return f"SHIFT_{self.shift_ticks(t)}"
        if self.is_note_on(t):
            return f"ON_{self.pitch_of(t)}"
        if self.is_note_off(t):
            return f"OFF_{self.pitch_of(t)}"
        raise ValueError(f"token {t} out of range 0..{self.size - 1}")

    def names(self, tokens) -> list[str]:
        return [self.name(int(t)) for t in tokens]

    def layout(self) -> list[tuple[str, int, int]]:
        """(block, first id, count) for every block."""
        c = self.config
        return [
            ("specials " + " ".join(SPECIALS), 0, len(SPECIALS)),
            ("tasks " + " ".join(TASKS), self.task_base, len(TASKS)),
            ("roles " + " ".join(ROLE_NAMES[: c.n_roles]), self.role_base, c.n_roles),
            ("styles " + " ".join(c.styles), self.style_base, len(c.styles)),
            (f"velocity bins ({c.velocity_bins})", self.vel_base, c.velocity_bins),
            (f"time shift 1..{c.max_shift} ticks ({c.ticks_per_beat}/beat)", self.shift_base, c.max_shift),
            ("note-on 0..127", self.note_on_base, c.n_pitches),
            ("note-off 0..127", self.note_off_base, c.n_pitches),
        ]

    def to_json(self) -> str:
        d = asdict(self.config)
        d["styles"] = list(self.config.styles)
        d["format"] = "sideman-vocab-1"
        return json.dumps(d, sort_keys=True)

    def hash(self) -> str:
        """A short, stable id of this vocabulary; a model card carries it and loading checks it."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        d = json.loads(text)
        d.pop("format", None)
        d["styles"] = tuple(d["styles"])
        return cls(VocabConfig(**d))


DEFAULT_VOCAB = Vocab()


def main() -> None:
    v = DEFAULT_VOCAB
    print(f"sideman vocabulary: {v.size} tokens, hash {v.hash()}")
    print(f"time grid: {v.config.ticks_per_beat} ticks per quarter note")
    for name, first, count in v.layout():
        print(f"  {first:4d}..{first + count - 1:4d}  ({count:3d})  {name}")


if __name__ == "__main__":
    main()
