"""`sideman bench decode|live`: the decode benchmark (engine.bench.decode) or the live one (engine.bench.live)."""

from __future__ import annotations

import argparse



def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    sub.required = True
    decode = sub.add_parser("decode", help="per-token decode latency vs recompute, HF GPT-2 and the memory floor")
    from engine.bench import decode as decode_bench  # light: imports torch only when run

    decode_bench.add_arguments(decode)
    live = sub.add_parser("live", help="end-to-end live timing over MIDI (engine.bench.live)")
    from engine.bench import live as live_bench  # no torch at import

    live_bench.add_arguments(live)


def run(args: argparse.Namespace) -> int:
    if args.bench == "decode":
        from engine.bench import decode as decode_bench

        return decode_bench.main(args)
    from engine.bench import live as live_bench

    return int(live_bench.main(args) or 0)
