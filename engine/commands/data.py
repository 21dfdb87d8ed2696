"""`sideman data build|stats`: build the training corpus once (cached), or print its statistics.

    sideman data build [--collections bach,essen,...] [--limit N] [--midi-dir DIR] [--workers N]
    sideman data stats [--limit N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from engine.errors import DataError

MAX_FAILED_SHOWN = 20


def _collections(text: str) -> tuple[str, ...]:
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of collections, e.g. bach,essen")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")
    sub.required = True
    b = sub.add_parser("build", help="parse the corpus in parallel and cache token arrays (resumable)")
    b.add_argument("--collections", type=_collections, default=None,
                   help="comma-separated: bach,essen,oneill,ryan,aird,palestrina,monteverdi,trecento (default all)")
    b.add_argument("--limit", type=int, default=None, help="at most N pieces (files or tunes) per collection")
    b.add_argument("--midi-dir", type=Path, default=None, help="a folder of your .mid files (collection 'user')")
    b.add_argument("--workers", type=int, default=2, help="parallel parser processes (default 2)")
    b.add_argument("--data-dir", type=Path, default=None, help="where data/cache lives (default $SIDEMAN_DATA or ./data)")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    s = sub.add_parser("stats", help="print pieces, notes and tokens per collection of the built cache")
    s.add_argument("--limit", type=int, default=None, help="the stats of a build made with --limit N")
    s.add_argument("--data-dir", type=Path, default=None, help="where data/cache lives (default $SIDEMAN_DATA or ./data)")
    s.add_argument("--failed", action="store_true", help="list every file that failed to parse")


def run(args: argparse.Namespace) -> int:
    if args.data_command == "build":
        return _build(args)
    return _stats(args)


def _build(args: argparse.Namespace) -> int:
    from engine.corpus.build import BuildConfig, build

    kwargs = {}
    if args.collections is not None:
        kwargs["collections"] = args.collections
    config = BuildConfig(**kwargs, limit=args.limit, midi_dir=args.midi_dir, workers=args.workers,
                         data_dir=args.data_dir, progress=not args.no_progress)
    report = build(config)
    if report.reused:
        print(f"cached already: {', '.join(report.reused)}")
    _print_table(report.dir, {c: report.collections[c] for c in report.collections})
    failed = [(c, f) for c, fs in report.failed.items() for f in fs]
    if failed:
        print(f"\n{len(failed)} file(s) failed to parse and were skipped:")
        for c, f in failed[:MAX_FAILED_SHOWN]:
            print(f"  {c}: {f['source']}: {f['error']}")
        if len(failed) > MAX_FAILED_SHOWN:
            print(f"  ... and {len(failed) - MAX_FAILED_SHOWN} more (sideman data stats --failed)")
    print(f"\nthis run took {report.seconds:.1f} s")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from engine.corpus.build import cache_dir

    directory = cache_dir(args.data_dir, limit=args.limit)
    manifest = directory / "manifest.json"
    if not manifest.exists():
        raise DataError(f"no corpus cache at {directory}; build it with `sideman data build`"
                        + (f" --limit {args.limit}" if args.limit else ""))
    collections = json.loads(manifest.read_text())["collections"]
    _print_table(directory, collections)
    if args.failed:
        for c, s in collections.items():
            for source in s.get("failed_sources", []):
                print(f"  failed {c}: {source}")
    return 0


def _print_table(directory: Path, collections: dict[str, dict]) -> None:
    from engine.corpus.build import dir_size

    header = (f"{'collection':<12} {'pieces':>8} {'notes':>10} {'tokens':>11} {'failed':>7} {'tok/note':>8} "
              f"{'meter chg':>9} {'build s':>8}")
    print(f"corpus cache {directory}")
    print(header)
    print("-" * len(header))
    total = {"pieces": 0, "notes": 0, "tokens": 0, "failed": 0, "pieces_with_meter_changes": 0, "seconds": 0.0}
    for name, s in collections.items():
        ratio = s["tokens"] / s["notes"] if s["notes"] else 0.0
        print(f"{name:<12} {s['pieces']:>8} {s['notes']:>10} {s['tokens']:>11} {s['failed']:>7} {ratio:>8.2f} "
              f"{s['pieces_with_meter_changes']:>9} {s['seconds']:>8.1f}")
        for k in total:
            total[k] += s[k]
    print("-" * len(header))
    ratio = total["tokens"] / total["notes"] if total["notes"] else 0.0
    print(f"{'total':<12} {total['pieces']:>8} {total['notes']:>10} {total['tokens']:>11} {total['failed']:>7} "
          f"{ratio:>8.2f} {total['pieces_with_meter_changes']:>9} {total['seconds']:>8.1f}")
    size = dir_size(directory)
    workers = sorted({s.get("workers", 0) for s in collections.values()})
    print(f"build time {total['seconds'] / 60:.1f} min (parse + tokenize, workers {'/'.join(map(str, workers))}); "
          f"cache size {size / 1e6:.1f} MB on disk")
    print("meter chg: pieces whose time signature changes (their BAR tokens follow the score's measures)")
