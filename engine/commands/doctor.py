"""`sideman doctor [--json]`: one screen on what works here (MIDI, JACK, sound, torch, models, presets)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument("--root", type=Path, help="the directory holding models/ and presets/ (default: found)")
    parser.add_argument("--soundfont", help="check this .sf2 file instead of searching")


def run(args: argparse.Namespace) -> int:
    from engine.doctor import DoctorContext, default_root, exit_code, format_json, format_text, run_checks

    ctx = DoctorContext(root=(args.root or default_root()).resolve(), soundfont=args.soundfont)
    results = run_checks(ctx)
    print(format_json(results) if args.json else format_text(results))
    return exit_code(results)
