"""music21's bundled corpus -> `Piece`s: which files make each collection, and score -> notes.

A collection's name is its style label (engine.music.vocab.DEFAULT_STYLES). Work is listed as `Unit`s,
each one parse: a score file, or one tune of an ABC file (an ABC file holds many tunes; the file is
split at its `X:` lines here, each tune with the file's header, so one bad tune fails alone and the
tunes spread over the workers).

Score -> notes: part 0 is the melody (a soprano that is not the first part is moved to the front,
see `melody_first`); each part is flattened with ties stripped; chords give one note per pitch; rests,
grace notes and unpitched notes are skipped; offsets in quarter lengths x ticks_per_beat, rounded
half up; a note lasts at least one tick; velocity is the note's own if set, else 80. The bar grid
follows part 0's measures: a short first measure is a pickup (the bar origin is the next measure),
short measures that together fill one bar (a bar split at a repeat) are one bar, and a bar whose
length differs from the grid's starts a new grid row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from engine.corpus.piece import DEFAULT_VELOCITY, Piece, make_notes
from engine.errors import DataError
from engine.music.tokens import quantize

# collection -> (folder under music21's corpus, file suffixes); "bach" is the chorale list instead
COLLECTION_DIRS: dict[str, tuple[str, tuple[str, ...]]] = {
    "bach": ("bach", (".mxl", ".xml", ".krn")),
    "essen": ("essenFolksong", (".abc",)),
    "oneill": ("oneills1850", (".abc",)),
    "ryan": ("ryansMammoth", (".abc",)),
    "aird": ("airdsAirs", (".abc",)),
    "palestrina": ("palestrina", (".krn",)),
    "monteverdi": ("monteverdi", (".mxl",)),
    "trecento": ("trecento", (".xml", ".mxl")),
}
MUSIC21_COLLECTIONS = tuple(COLLECTION_DIRS)

_X_LINE = re.compile(r"^X:", re.MULTILINE)


@dataclass(frozen=True)
class Unit:
    """One parse: a file, or one tune (`text`) of an ABC file."""

    collection: str
    source: str  # path relative to the corpus root (or the MIDI folder)
    root: str  # the folder `source` is relative to
    tune: int = 0  # 1-based tune index within an ABC file; 0 for a whole file
    text: str | None = None  # the tune's ABC text (with the file's header)

    @property
    def id(self) -> str:
        return f"{self.collection}:{self.source}" + (f"#{self.tune}" if self.tune else "")

    @property
    def path(self) -> Path:
        return Path(self.root) / self.source


def corpus_root() -> Path:
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def read_text(path: Path) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def split_abc(text: str) -> list[str]:
    """The tunes of an ABC file, each with the file header (the lines before the first X:)."""
    starts = [m.start() for m in _X_LINE.finditer(text)]
    if not starts:
        return [text] if text.strip() else []
    header = "\n".join(line for line in text[: starts[0]].splitlines() if line.strip() and not line.startswith("%"))
    header = header + "\n" if header else ""
    ends = starts[1:] + [len(text)]
    return [header + text[a:b] for a, b in zip(starts, ends)]


def _chorale_files(root: Path) -> list[str]:
    from music21 import corpus

    files: list[str] = []
    for name in corpus.chorales.Iterator(returnType="filename"):
        found = corpus.getWork(name)
        if isinstance(found, list):  # e.g. bwv112.5 also matches bwv112.5-sc: take the exact name
            stem = name.split("/")[-1]
            found = next((f for f in found if Path(f).stem == stem), found[0])
        path = found
        rel = str(Path(path).relative_to(root))
        if rel not in files:
            files.append(rel)
    return sorted(files)


def list_units(collection: str, limit: int | None = None) -> list[Unit]:
    """Every unit of a music21 collection in a stable order; the first `limit` (pieces, or tunes)."""
    if collection not in COLLECTION_DIRS:
        raise DataError(f"unknown collection {collection!r}; known: {', '.join(COLLECTION_DIRS)}, user")
    root = corpus_root()
    folder, suffixes = COLLECTION_DIRS[collection]
    if collection == "bach":
        files = _chorale_files(root)
    else:
        base = root / folder
        if not base.is_dir():
            raise DataError(f"music21's corpus has no folder {folder!r} at {root}; reinstall music21 (pip install music21)")
        files = sorted(str(p.relative_to(root)) for p in base.rglob("*") if p.suffix in suffixes and p.is_file())
    units: list[Unit] = []
    for rel in files:
        if limit is not None and len(units) >= limit:
            break
        if rel.endswith(".abc"):
            for i, tune in enumerate(split_abc(read_text(root / rel)), start=1):
                units.append(Unit(collection, rel, str(root), i, tune))
        else:
            units.append(Unit(collection, rel, str(root)))
    return units[:limit] if limit is not None else units


# ---- parsing ---------------------------------------------------------------------------------


def parse_unit(unit: Unit, ticks_per_beat: int) -> list[Piece]:
    """The piece(s) of one unit (a file holding an Opus gives several). Raises on a bad file."""
    from music21 import converter, stream

    if unit.text is not None:
        from music21 import abcFormat
        from music21.abcFormat import translate

        handler = abcFormat.ABCHandler()
        handler.process(unit.text)
        scores = [translate.abcToStreamScore(handler)]
    else:
        parsed = converter.parse(str(unit.path))
        scores = list(parsed.scores) if isinstance(parsed, stream.Opus) else [parsed]
    pieces = []
    for k, score in enumerate(scores):
        pid = unit.id if len(scores) == 1 else f"{unit.id}#{k + 1}"
        pieces.append(score_to_piece(score, unit.collection, pid, unit.source, ticks_per_beat))
    return pieces


def _ticks(offset, tpb: int) -> int:
    return quantize(float(Fraction(offset) * tpb))


def score_to_piece(score, collection: str, piece_id: str, source: str, ticks_per_beat: int) -> Piece:
    """Notes of every part of a music21 score (or a single part/stream), with its bar grid."""
    from music21 import stream

    parts = melody_first(list(score.parts) if isinstance(score, stream.Score) and score.parts else [score])
    rows: list[tuple[int, int, int, int, int]] = []
    names: list[str] = []
    for index, part in enumerate(parts):
        names.append(str(part.partName) if part.partName else f"part {index}")
        flat = part.stripTies(inPlace=False).flatten()
        for n in flat.notes:
            if n.duration.isGrace:
                continue
            pitches = getattr(n, "pitches", ())
            if not pitches:
                continue
            on = _ticks(n.offset, ticks_per_beat)
            off = max(_ticks(n.offset + n.duration.quarterLength, ticks_per_beat), on + 1)
            vel = int(n.volume.velocity) if n.hasVolumeInformation() and n.volume.velocity else DEFAULT_VELOCITY
            vel = min(max(vel, 1), 127)
            for p in pitches:
                midi = int(round(p.ps))
                if 0 <= midi <= 127:
                    rows.append((on, off, midi, vel, index))
    if not rows:
        raise DataError(f"{source}: no notes")
    bars, changes = bar_grid(parts, ticks_per_beat)
    return Piece(piece_id, collection, source, make_notes(rows), tuple(names), bars, changes)


def melody_first(parts: list) -> list:
    """Part 0 must be the melody: a chorale that opens with instruments (horns, violins, timpani
    above the choir) gets its soprano moved to the front; the other parts keep their order."""
    names = [str(p.partName or "").lower() for p in parts]
    if names and not names[0].startswith("soprano"):
        first = next((i for i, n in enumerate(names) if n.startswith("soprano")), None)
        if first is not None:
            return [parts[first]] + parts[:first] + parts[first + 1:]
    return parts


def bar_grid(parts, ticks_per_beat: int) -> tuple[np.ndarray, int]:
    """Bar-grid rows (tick, numerator, denominator) from the first part with measures, and the
    number of time-signature changes. No measures: the first time signature (else 4/4) from tick 0."""
    from music21 import meter, stream

    tpb = ticks_per_beat
    part = next((p for p in parts if p.getElementsByClass(stream.Measure)), parts[0])
    measures = list(part.getElementsByClass(stream.Measure))
    sigs = list(part.recurse().getElementsByClass(meter.TimeSignature))
    changes = sum(1 for a, b in zip(sigs, sigs[1:]) if a.ratioString != b.ratioString)
    if not measures:
        ts = sigs[0] if sigs else None
        num, den = (ts.numerator, ts.denominator) if ts else (4, 4)
        return np.asarray([(0, num, den)], dtype=np.int32), changes
    # (start tick, length in ticks, the time signature's bar in ticks, the time signature)
    spans: list[tuple[int, int, int | None, object]] = []
    ts = None
    for m in measures:
        if m.timeSignature is not None:
            ts = m.timeSignature
        start = _ticks(m.offset, tpb)
        length = _ticks(m.duration.quarterLength, tpb)
        nominal = _ticks(ts.barDuration.quarterLength, tpb) if ts is not None else None
        spans.append((start, length, nominal, ts))
    # a short first measure is a pickup: the bar origin is the next measure
    if len(spans) > 1 and spans[0][2] is not None and 0 < spans[0][1] < spans[0][2]:
        spans = spans[1:]
    spans = [s for s in spans if s[1] > 0]
    if not spans:
        return np.asarray([(0, 4, 4)], dtype=np.int32), changes
    grid: list[tuple[int, int, int]] = []
    current = None
    expected = None  # where the grid puts the next bar line
    for start, length, nominal, sig in _metric_bars(spans):
        if sig is not None and length == nominal and sig.numerator > 0:
            meter_ = (sig.numerator, sig.denominator)
            if _bar_ticks(meter_, tpb) != length:  # a meter the grid cannot hold exactly
                meter_ = (length, 4 * tpb)
        else:
            meter_ = (length, 4 * tpb)
        if current != (length, meter_) or start != expected:
            grid.append((start, *meter_))
            current = (length, meter_)
        expected = start + length
    return np.asarray(grid, dtype=np.int32), changes


def _metric_bars(spans):
    """Measures -> bars: consecutive short measures (a bar split at a repeat sign or a phrase end)
    are joined while they fit in one bar of the time signature, so BAR stays on the downbeat.
    The last bar lasts at least the time signature's bar."""
    bars = []
    i = 0
    while i < len(spans):
        start, length, nominal, sig = spans[i]
        i += 1
        if nominal is not None:
            while length < nominal and i < len(spans) and spans[i][1] < spans[i][2] and length + spans[i][1] <= nominal:
                length += spans[i][1]
                i += 1
            if i == len(spans):
                length = max(length, nominal)
        bars.append((start, length, nominal, sig))
    return bars


def _bar_ticks(meter_: tuple[int, int], tpb: int) -> int:
    return max(1, tpb * 4 * meter_[0] // meter_[1])
