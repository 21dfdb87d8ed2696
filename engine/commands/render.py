"""`sideman render in.mid -o out.wav [--soundfont PATH] [--png roll.png]`: hear a MIDI file without a DAW."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import AudioError


def _program(text: str) -> tuple[int, int]:
    try:
        channel, program = (int(part) for part in text.split("=", 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CHANNEL=PROGRAM, e.g. 1=32 (channel 1 plays acoustic bass)")
    return channel, program


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("midi", type=Path, help="the MIDI file to render")
    parser.add_argument("-o", "--output", type=Path, help="the WAV file to write (default: beside the MIDI file)")
    parser.add_argument("--soundfont", help="the .sf2 file (default: $SIDEMAN_SOUNDFONT or the system's GM SoundFont)")
    parser.add_argument("--png", type=Path, help="also draw the piano roll to this PNG file")
    parser.add_argument(
        "--program", type=_program, action="append", default=[], metavar="CH=PROG",
        help="General MIDI program (0-127) for a channel (0-15), overriding the file; repeatable",
    )
    parser.add_argument("--tail", type=float, default=1.5, help="seconds rendered after the last event (default 1.5)")
    parser.add_argument("--title", help="title of the piano roll (default: the file name)")


def run(args: argparse.Namespace) -> int:
    from engine.audio.render import RenderConfig, render_midi

    output = args.output or args.midi.with_suffix(".wav")
    if output.suffix.lower() != ".wav":
        raise AudioError(f"{output}: the output must be a .wav file")
    config = RenderConfig(soundfont=args.soundfont, programs=dict(args.program), tail_s=args.tail)
    result = render_midi(args.midi, output, config)
    print(
        f"wrote {result.path}: {result.audio_s:.2f} s of audio in {result.wall_s:.2f} s "
        f"({result.speed:.0f}x real time; SoundFont {result.soundfont})"
    )
    if args.png:
        from engine.offline.pianoroll import draw_piano_roll

        draw_piano_roll(args.midi, args.png, title=args.title)
        print(f"wrote {args.png}")
    return 0
