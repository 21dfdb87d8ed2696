"""Build the corpus once: parse in parallel, tokenize, cache shards on disk; resumable.

Cache layout, under <data dir>/cache/<key>/ where key hashes the vocabulary (Vocab.hash()) and
PIPELINE_VERSION (a limited build gets its own folder, <key>-limit<N>):

    <collection>.npz    notes (N, 5) int32 and note_index (P + 1); tokens uint16 and token_index (P + 1);
                        bars (K, 3) int32 and bar_index (P + 1): piece i is rows index[i]:index[i + 1]
    <collection>.json   the collection's manifest: per piece id, source, notes, tokens, split, parts,
                        part names; the failed files with their errors; counts and build seconds
    manifest.json       the vocabulary, the pipeline version, and a summary per collection

A collection is done when its .json exists (written last, after its .npz), so an interrupted build
restarts at the first unfinished collection and a finished build re-runs instantly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.corpus.midi_source import list_midi_units, midi_to_piece
from engine.corpus.music21_source import MUSIC21_COLLECTIONS, Unit, list_units, parse_unit
from engine.corpus.piece import NOTE_FIELDS, Piece, encode_piece
from engine.errors import DataError
from engine.music.vocab import DEFAULT_VOCAB, Vocab

log = logging.getLogger(__name__)

PIPELINE_VERSION = "corpus-1"  # bump when parsing or the default encoding changes
SPLITS = (("train", 90), ("val", 5), ("test", 5))  # percent of pieces, by a hash of the piece id
USER = "user"


def default_data_dir() -> Path:
    """$SIDEMAN_DATA, else data/ in the source checkout, else ./data."""
    env = os.environ.get("SIDEMAN_DATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo / "data" if (repo / "pyproject.toml").exists() else Path.cwd() / "data"


def cache_key(vocab: Vocab = DEFAULT_VOCAB, version: str = PIPELINE_VERSION) -> str:
    return hashlib.sha256(f"{vocab.hash()}|{version}".encode()).hexdigest()[:16]


def cache_dir(data_dir: Path | None = None, vocab: Vocab = DEFAULT_VOCAB, limit: int | None = None) -> Path:
    base = (data_dir or default_data_dir()) / "cache" / cache_key(vocab)
    return base.with_name(base.name + f"-limit{limit}") if limit is not None else base


def split_of(piece_id: str) -> str:
    """train / val / test, from a hash of the id: the same on every machine and every run."""
    bucket = int.from_bytes(hashlib.sha256(piece_id.encode()).digest()[:8], "big") % 100
    for name, percent in SPLITS:
        if bucket < percent:
            return name
        bucket -= percent
    return SPLITS[-1][0]


@dataclass(frozen=True)
class BuildConfig:
    collections: tuple[str, ...] = MUSIC21_COLLECTIONS
    limit: int | None = None  # units (files or tunes) per collection
    midi_dir: Path | None = None  # adds the "user" collection
    workers: int = 2
    chunksize: int = 4
    data_dir: Path | None = None
    vocab: Vocab = field(default=DEFAULT_VOCAB)
    progress: bool = True

    def __post_init__(self) -> None:
        known = set(MUSIC21_COLLECTIONS) | {USER}
        bad = [c for c in self.collections if c not in known]
        if bad:
            raise DataError(f"unknown collection(s) {', '.join(bad)}; known: {', '.join(sorted(known))}")
        if self.workers < 1:
            raise DataError("--workers must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise DataError("--limit must be at least 1")
        if USER in self.collections and self.midi_dir is None:
            raise DataError("the 'user' collection needs --midi-dir DIR (a folder of .mid files)")

    @property
    def all_collections(self) -> tuple[str, ...]:
        extra = (USER,) if self.midi_dir is not None and USER not in self.collections else ()
        return self.collections + extra

    @property
    def dir(self) -> Path:
        return cache_dir(self.data_dir, self.vocab, self.limit)


# ---- one unit, in a worker ------------------------------------------------------------------


def process_unit(unit: Unit, vocab: Vocab) -> tuple[list[tuple[Piece, np.ndarray]], str | None]:
    """Parse and tokenize one unit. Never raises: a failure comes back as its message."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            tpb = vocab.config.ticks_per_beat
            pieces = [midi_to_piece(unit, tpb)] if unit.collection == USER else parse_unit(unit, tpb)
            return [(p, encode_piece(p, vocab)) for p in pieces], None
        except Exception as exc:  # noqa: BLE001 -- music21 raises anything; the build must go on
            return [], f"{type(exc).__name__}: {exc}"[:300]


def _units(collection: str, config: BuildConfig) -> list[Unit]:
    if collection == USER:
        return list_midi_units(config.midi_dir, config.limit)
    return list_units(collection, config.limit)


def _signature(collection: str, config: BuildConfig) -> dict:
    """What a finished shard must match to be reused."""
    sig = {"pipeline": PIPELINE_VERSION, "vocab": config.vocab.hash(), "limit": config.limit}
    if collection == USER:
        root = Path(config.midi_dir)
        files = sorted((str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime))
                       for p in root.rglob("*") if p.is_file())
        sig["midi_dir"] = str(root.resolve())
        sig["files"] = hashlib.sha256(json.dumps(files).encode()).hexdigest()[:16]
    else:
        import music21

        sig["music21"] = music21.__version__
    return sig


# ---- shards -----------------------------------------------------------------------------------


def _write_collection(out: Path, collection: str, results: list, failures: list, seconds: float, sig: dict,
                      workers: int) -> dict:
    pieces = [p for p, _ in results]
    tokens = [t for _, t in results]
    n = len(pieces)

    def index(arrays) -> np.ndarray:
        idx = np.zeros(n + 1, dtype=np.int64)
        idx[1:] = np.cumsum([len(a) for a in arrays])
        return idx

    def cat(arrays, shape, dtype) -> np.ndarray:
        return np.concatenate(arrays).astype(dtype) if arrays else np.zeros(shape, dtype=dtype)

    notes = [p.notes for p in pieces]
    bars = [p.bars for p in pieces]
    tmp = out / f".{collection}.tmp.npz"
    np.savez(tmp, notes=cat(notes, (0, len(NOTE_FIELDS)), np.int32), note_index=index(notes),
             tokens=cat(tokens, (0,), np.uint16), token_index=index(tokens),
             bars=cat(bars, (0, 3), np.int32), bar_index=index(bars))
    tmp.replace(out / f"{collection}.npz")
    meta = {
        "collection": collection,
        "signature": sig,
        "pieces": [
            {"id": p.id, "source": p.source, "notes": int(len(p.notes)), "tokens": int(len(t)),
             "split": split_of(p.id), "parts": p.n_parts, "part_names": list(p.part_names),
             "meter_changes": p.meter_changes, "grid_rows": int(len(p.bars))}
            for p, t in results
        ],
        "failed": [{"source": s, "error": e} for s, e in failures],
        "summary": {
            "pieces": n,
            "notes": int(sum(len(p.notes) for p in pieces)),
            "tokens": int(sum(len(t) for t in tokens)),
            "failed": len(failures),
            "pieces_with_meter_changes": sum(1 for p in pieces if p.meter_changes),
            "seconds": round(seconds, 2),
            "workers": workers,
        },
    }
    tmp_json = out / f".{collection}.tmp.json"
    tmp_json.write_text(json.dumps(meta, indent=1))
    tmp_json.replace(out / f"{collection}.json")
    return meta


def load_collection_meta(out: Path, collection: str) -> dict | None:
    path = out / f"{collection}.json"
    if not path.exists() or not (out / f"{collection}.npz").exists():
        return None
    return json.loads(path.read_text())


def write_manifest(out: Path, vocab: Vocab) -> dict:
    order = {name: i for i, name in enumerate(MUSIC21_COLLECTIONS + (USER,))}
    collections = {}
    paths = [p for p in out.glob("*.json") if p.name != "manifest.json" and not p.name.startswith(".")]
    for path in sorted(paths, key=lambda p: (order.get(p.stem, len(order)), p.stem)):
        meta = json.loads(path.read_text())
        collections[meta["collection"]] = meta["summary"] | {"failed_sources": [f["source"] for f in meta["failed"]]}
    manifest = {"pipeline": PIPELINE_VERSION, "vocab": json.loads(vocab.to_json()), "vocab_hash": vocab.hash(),
                "collections": collections}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


# ---- the build --------------------------------------------------------------------------------


@dataclass
class BuildReport:
    dir: Path
    collections: dict[str, dict]  # collection -> summary (pieces, notes, tokens, failed, seconds)
    failed: dict[str, list[dict]]  # collection -> [{source, error}]
    reused: list[str]  # collections found finished in the cache
    seconds: float


def build(config: BuildConfig) -> BuildReport:
    """Build every collection not yet in the cache; return what is there now."""
    out = config.dir
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summaries: dict[str, dict] = {}
    failed: dict[str, list[dict]] = {}
    reused: list[str] = []
    pool = None
    try:
        for collection in config.all_collections:
            sig = _signature(collection, config)
            meta = load_collection_meta(out, collection)
            if meta is not None and meta.get("signature") == sig:
                reused.append(collection)
            else:
                if pool is None and config.workers > 1:
                    ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
                    pool = ctx.Pool(config.workers)
                meta = _build_collection(out, collection, config, sig, pool)
            summaries[collection] = meta["summary"]
            failed[collection] = meta["failed"]
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    write_manifest(out, config.vocab)
    return BuildReport(out, summaries, failed, reused, time.perf_counter() - t0)


def _build_collection(out: Path, collection: str, config: BuildConfig, sig: dict, pool) -> dict:
    t0 = time.perf_counter()
    units = _units(collection, config)
    log.info("%s: %d units to parse", collection, len(units))
    work = functools.partial(process_unit, vocab=config.vocab)
    it = pool.imap(work, units, chunksize=config.chunksize) if pool is not None else map(work, units)
    if config.progress:
        from tqdm import tqdm

        it = tqdm(it, total=len(units), desc=collection, unit="piece", mininterval=1.0)
    results: list[tuple[Piece, np.ndarray]] = []
    failures: list[tuple[str, str]] = []
    for unit, (done, error) in zip(units, it):
        if error is not None:
            name = unit.source + (f"#{unit.tune}" if unit.tune else "")
            failures.append((name, error))
            log.warning("%s: skipped %s (%s)", collection, name, error)
        results.extend(done)
    meta = _write_collection(out, collection, results, failures, time.perf_counter() - t0, sig, config.workers)
    s = meta["summary"]
    log.info("%s: %d pieces, %d notes, %d tokens, %d failed in %.1f s",
             collection, s["pieces"], s["notes"], s["tokens"], s["failed"], s["seconds"])
    return meta


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
