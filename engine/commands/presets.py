"""`sideman presets`: list the presets with a one-line summary, or `--check FILE` to validate one."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import PresetError
from engine.presets import PRESET_DIR, list_presets, load_preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", metavar="FILE", type=Path, help="validate one preset file (exit 1 on error)")
    parser.add_argument("--dir", type=Path, default=PRESET_DIR, help=f"where presets live (default {PRESET_DIR})")


def run(args: argparse.Namespace) -> int:
    if args.check is not None:
        try:
            preset = load_preset(args.check)
        except PresetError as exc:
            print(f"error: {exc}")
            return 1
        print(f"{args.check}: ok ({preset.summary()})")
        return 0
    paths = list_presets(args.dir)
    if not paths:
        print(f"no presets in {args.dir}")
        return 1
    failed = 0
    width = max(len(p.stem) for p in paths)
    for path in paths:
        try:
            summary = load_preset(path).summary()
        except PresetError as exc:
            failed += 1
            summary = f"INVALID: {exc}"
        print(f"{path.stem:<{width}}  {summary}")
    return 1 if failed else 0
