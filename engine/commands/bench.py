"""`sideman bench decode|live`: the decode benchmark (engine.bench.decode) or the live one (engine.bench.live)."""

from __future__ import annotations

import argparse
import importlib

from engine.errors import SidemanError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    sub.required = True
    decode = sub.add_parser("decode", help="per-token decode latency vs recompute, HF GPT-2 and the memory floor")
    from engine.bench import decode as decode_bench  # light: imports torch only when run

    decode_bench.add_arguments(decode)
    live = sub.add_parser("live", help="end-to-end live timing over MIDI (engine.bench.live)")
    live.add_argument("live_args", nargs=argparse.REMAINDER, help="arguments for engine.bench.live")


def run(args: argparse.Namespace) -> int:
    if args.bench == "decode":
        from engine.bench import decode as decode_bench

        return decode_bench.main(args)
    try:
        live = importlib.import_module("engine.bench.live")
    except ModuleNotFoundError as exc:
        if exc.name != "engine.bench.live":
            raise
        raise SidemanError("`sideman bench live` needs engine/bench/live.py, which is not in this build; "
                           "run `sideman bench decode`, or update sideman") from None
    return int(live.main(args.live_args) or 0)
