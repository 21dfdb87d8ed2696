"""A folder of the user's Standard MIDI Files -> `Piece`s (collection and style "user").

Files are read with engine.music.tokens.read_midi. Each (track, channel) that plays notes is its own part,
in order of first note; channel 10 (percussion) is skipped. A note-off (or velocity-0 note-on) ends
the earliest sounding note of its pitch in its part; notes still sounding at the end of the file end
there. Time signatures give the bar grid from tick 0.
"""

from __future__ import annotations

from collections import defaultdict, deque
from pathlib import Path

import numpy as np

from engine.corpus.music21_source import Unit
from engine.corpus.piece import Piece, make_notes
from engine.errors import DataError, MidiFileError
from engine.music.tokens import quantize, read_midi

MIDI_SUFFIXES = (".mid", ".midi", ".smf")
PERCUSSION_CHANNEL = 9


def list_midi_units(folder: str | Path, limit: int | None = None) -> list[Unit]:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"MIDI folder {root} does not exist; pass --midi-dir a folder of .mid files")
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    return [Unit("user", rel, str(root)) for rel in files[:limit]]


def midi_to_piece(unit: Unit, ticks_per_beat: int) -> Piece:
    mid = read_midi(unit.path)
    if mid.type == 2:
        raise MidiFileError(f"{unit.path}: type 2 MIDI files are not supported; save as type 0 or 1")
    scale = ticks_per_beat / mid.ticks_per_beat
    parts: dict[tuple[int, int], int] = {}  # (track, channel) -> part index
    track_names: dict[int, str] = {}
    sounding: dict[tuple[int, int], deque] = defaultdict(deque)  # (part, pitch) -> (on tick, velocity)
    rows: list[tuple[int, int, int, int, int]] = []
    meters: list[tuple[int, int, int]] = []
    end = 0
    for track_index, track in enumerate(mid.tracks):
        now = 0
        for msg in track:
            now += msg.time
            tick = quantize(now * scale)
            end = max(end, tick)
            if msg.is_meta:
                if msg.type == "track_name" and track_index not in track_names:
                    track_names[track_index] = msg.name
                elif msg.type == "time_signature":
                    meters.append((tick, msg.numerator, msg.denominator))
                continue
            if msg.type not in ("note_on", "note_off") or msg.channel == PERCUSSION_CHANNEL:
                continue
            part = parts.setdefault((track_index, msg.channel), len(parts))
            key = (part, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                sounding[key].append((tick, msg.velocity))
            elif sounding[key]:
                on, vel = sounding[key].popleft()
                rows.append((on, max(tick, on + 1), msg.note, vel, part))
    for (part, pitch), queue in sounding.items():
        for on, vel in queue:
            rows.append((on, max(end, on + 1), pitch, vel, part))
    if not rows:
        raise DataError(f"{unit.path}: no notes")
    names = []
    for (track_index, channel), _ in sorted(parts.items(), key=lambda kv: kv[1]):
        base = track_names.get(track_index) or f"track {track_index}"
        names.append(f"{base} ch{channel + 1}")
    meters.sort()
    grid = [(0, 4, 4)] if not meters or meters[0][0] > 0 else []
    for row in meters:
        if not grid or (row[1], row[2]) != grid[-1][1:]:
            grid.append(row)
    changes = max(0, len(grid) - 1)
    return Piece(unit.id, "user", unit.source, make_notes(rows), tuple(names), np.asarray(grid, dtype=np.int32), changes)
