"""`sideman roll in.mid -o roll.png`: draw a piano roll of a MIDI file (player and sideman in colour)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("midi", type=Path, help="the MIDI file to draw")
    parser.add_argument("-o", "--output", type=Path, help="the PNG file to write (default: beside the MIDI file)")
    parser.add_argument("--title", help="the title in the header (default: the file name)")
    parser.add_argument("--width", type=float, default=12.0, help="width in inches at 100 dpi (default 12)")
    parser.add_argument("--height", type=float, default=5.0, help="height in inches at 100 dpi (default 5)")


def run(args: argparse.Namespace) -> int:
    from engine.offline.pianoroll import draw_piano_roll

    output = args.output or args.midi.with_suffix(".png")
    draw_piano_roll(args.midi, output, title=args.title, width_in=args.width, height_in=args.height)
    print(f"wrote {output}")
    return 0
