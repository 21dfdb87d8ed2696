"""Piano-roll pictures of MIDI files: the player's part and the sideman's parts in different colours.

Parts: tracks named "player" or "sideman..." are taken by name; otherwise channel 0 is the player and
channels 1-15 are sideman parts (the convention of `sideman continue` and the daemon's recordings).
The x axis is in bars (from the time signature), so a picture reads like a score; the header gives
the title, the tempo and the metre. Drawn with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import mido

from engine.errors import MidiFileError

PLAYER = "player"
PLAYER_CHANNEL = 0
PLAYER_COLOUR = "#1f6fb4"  # blue
SIDEMAN_COLOURS = ("#e8711c", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
MIN_PITCH_SPAN = 24  # the y axis shows at least two octaves


@dataclass(frozen=True)
class Note:
    start: float  # beats (quarter notes) from the start
    end: float
    pitch: int
    velocity: int
    part: str  # "player" or "sideman", "sideman ch 2", ...


@dataclass(frozen=True)
class Roll:
    notes: tuple[Note, ...]
    bar_lines: tuple[float, ...]  # beats
    length: float  # beats
    tempo_bpm: float
    tempo_changes: int
    time_signature: tuple[int, int]
    title: str


def _part_of_track(name: str) -> str | None:
    lowered = name.strip().lower()
    if lowered == PLAYER:
        return PLAYER
    if lowered.startswith("sideman"):
        return name.strip()
    return None


def _part_of_channel(channel: int) -> str:
    return PLAYER if channel == PLAYER_CHANNEL else f"sideman ch {channel}"


def read_roll(source: str | os.PathLike | mido.MidiFile, title: str | None = None) -> Roll:
    """Notes, bar lines and header facts of a MIDI file."""
    try:
        midi = source if isinstance(source, mido.MidiFile) else mido.MidiFile(source)
    except (OSError, EOFError, ValueError, KeyError, IndexError) as exc:
        raise MidiFileError(f"cannot read MIDI file {source}: {exc}; check that it is a Standard MIDI File") from exc
    tpb = midi.ticks_per_beat
    named = {i: _part_of_track(t.name) for i, t in enumerate(midi.tracks)}
    by_name = any(part is not None for part in named.values())

    notes: list[Note] = []
    tempos: list[int] = []
    signatures: list[tuple[int, int, int]] = []  # (tick, numerator, denominator)
    end_tick = 0
    for index, track in enumerate(midi.tracks):
        tick = 0
        sounding: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (channel, pitch) -> [(start, velocity)]
        for msg in track:
            tick += msg.time
            if msg.type == "set_tempo":
                tempos.append(msg.tempo)
            elif msg.type == "time_signature":
                signatures.append((tick, msg.numerator, msg.denominator))
            elif msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault((msg.channel, msg.note), []).append((tick, msg.velocity))
            elif msg.type in ("note_on", "note_off"):
                started = sounding.get((msg.channel, msg.note))
                if started:
                    start, velocity = started.pop(0)
                    part = (named[index] or _part_of_channel(msg.channel)) if by_name else _part_of_channel(msg.channel)
                    notes.append(Note(start / tpb, tick / tpb, msg.note, velocity, part))
        end_tick = max(end_tick, tick)
        for (channel, pitch), started in sounding.items():  # hanging notes run to the end of their track
            part = (named[index] or _part_of_channel(channel)) if by_name else _part_of_channel(channel)
            notes.extend(Note(s / tpb, tick / tpb, pitch, v, part) for s, v in started)

    signatures.sort()
    if not signatures or signatures[0][0] > 0:
        signatures.insert(0, (0, 4, 4))
    length = end_tick / tpb
    bar_lines: list[float] = []
    for i, (tick, num, den) in enumerate(signatures):
        bar = num * 4.0 / den  # beats per bar
        stop = signatures[i + 1][0] / tpb if i + 1 < len(signatures) else length
        position = tick / tpb
        while position <= stop + 1e-9:
            bar_lines.append(position)
            position += bar
    tempo = tempos[0] if tempos else 500000
    name = title if title is not None else (Path(midi.filename).stem if midi.filename else "piano roll")
    return Roll(
        notes=tuple(sorted(notes, key=lambda n: (n.start, n.pitch))),
        bar_lines=tuple(bar_lines),
        length=length,
        tempo_bpm=mido.tempo2bpm(tempo),
        tempo_changes=len(set(tempos)) - 1 if tempos else 0,
        time_signature=(signatures[0][1], signatures[0][2]),
        title=name,
    )


def _colours(parts: list[str]) -> dict[str, str]:
    colours = {PLAYER: PLAYER_COLOUR}
    sideman = [p for p in parts if p != PLAYER]
    for i, part in enumerate(sideman):
        colours[part] = SIDEMAN_COLOURS[i % len(SIDEMAN_COLOURS)]
    return colours


def draw_piano_roll(
    source: str | os.PathLike | mido.MidiFile,
    png_path: str | os.PathLike,
    title: str | None = None,
    width_in: float = 12.0,
    height_in: float = 5.0,
    dpi: int = 100,
) -> Path:
    """Draw the piano roll of `source` to `png_path` and return the path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure  # a Figure without pyplot: no global state, no display

    roll = read_roll(source, title)
    parts = sorted({n.part for n in roll.notes}, key=lambda p: (p != PLAYER, p))
    colours = _colours(parts)

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    ax = fig.add_subplot(1, 1, 1)
    for part in parts:
        mine = [n for n in roll.notes if n.part == part]
        ax.barh(
            [n.pitch for n in mine],
            [max(n.end - n.start, 0.05) for n in mine],
            left=[n.start for n in mine],
            height=0.8,
            color=colours[part],
            alpha=None,
            edgecolor="black",
            linewidth=0.3,
            label=f"{part} ({len(mine)} notes)",
        )
    for x in roll.bar_lines:
        ax.axvline(x, color="#888888", linewidth=0.6, zorder=0)

    if roll.notes:
        low = min(n.pitch for n in roll.notes)
        high = max(n.pitch for n in roll.notes)
        pad = max(0, MIN_PITCH_SPAN - (high - low)) / 2
        ax.set_ylim(low - 1.5 - pad, high + 1.5 + pad)
    else:
        ax.set_ylim(47.5, 72.5)
        ax.text(0.5, 0.5, "no notes", transform=ax.transAxes, ha="center", va="center", color="#888888")
    ax.set_xlim(0, max(roll.length, roll.bar_lines[-1] if roll.bar_lines else 0, 1.0))
    every = max(1, len(roll.bar_lines) // 32)  # at most about 32 bar numbers
    ax.set_xticks(list(roll.bar_lines[::every]))
    ax.set_xticklabels([str(i + 1) for i in range(0, len(roll.bar_lines), every)], fontsize=7)
    ax.set_xlabel("bar")
    ax.set_ylabel("MIDI pitch (60 = middle C)")
    tempo = f"{roll.tempo_bpm:.0f} BPM" + (f" (+{roll.tempo_changes} changes)" if roll.tempo_changes else "")
    num, den = roll.time_signature
    # the title on its own line above the legend's row (a long title and four parts' labels would meet)
    ax.set_title(f"{roll.title}  —  {tempo}, {num}/{den}", fontsize=11, loc="left", pad=20 if parts else 6)
    if parts:  # above the plot, under the title: never over the notes
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncol=len(parts), fontsize=8, frameon=False,
                  borderaxespad=0.2)
    ax.set_axisbelow(True)
    ax.grid(axis="y", color="#eeeeee", linewidth=0.5)
    fig.tight_layout()

    png_path = Path(png_path)
    try:
        png_path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png_path, format="png")
    except OSError as exc:
        raise MidiFileError(f"cannot write {png_path}: {exc}; check the directory exists and is writable") from exc
    return png_path
