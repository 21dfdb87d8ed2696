"""The `sideman` command line: one subcommand per module in `engine.commands`.

Each command module defines `add_arguments(parser)` and `run(args) -> int` (the exit code).
Modules are imported only when their command runs, so `sideman ports` never imports torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from engine.errors import SidemanError

# name -> (module under engine.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "start the realtime daemon (virtual MIDI ports in and out)"),
    "ports": ("ports", "list MIDI input and output ports"),
    "presets": ("presets", "list presets, or check one with --check FILE"),
    "continue": ("continue_", "continue a MIDI file offline with a model"),
    "accompany": ("accompany", "accompany a melody (a MIDI file) offline: alto, tenor and bass under it"),
    "restyle": ("restyle", "play a melody (a MIDI file) back in another style"),
    "data": ("data", "build the training corpus, or print its statistics"),
    "train": ("train", "train a model"),
    "eval": ("eval", "evaluate a model against the Markov baseline and the test set"),
    "bench": ("bench", "benchmarks: decode, live"),
    "render": ("render", "render a MIDI file to WAV with the SoundFont synth"),
    "roll": ("roll", "draw a piano roll PNG of a MIDI file"),
    "doctor": ("doctor", "check what works on this machine, with the fix for what does not"),
    "vocab": ("vocab", "print the token vocabulary layout"),
}

EXIT_OK = 0
EXIT_ERROR = 1  # a SidemanError: bad input, missing file, ...
EXIT_USAGE = 2  # argparse's own code for bad arguments
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sideman", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        try:
            module = importlib.import_module(f"engine.commands.{module_name}")
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name != f"engine.commands.{module_name}":
                raise
            p.set_defaults(_missing=True)
            continue
        module.add_arguments(p)
    return parser


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose >= 2 else logging.INFO)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    if getattr(args, "_missing", False):
        logging.getLogger("sideman").error("the '%s' command is not available in this build", args.command)
        return EXIT_ERROR
    module = importlib.import_module(f"engine.commands.{args._module}")
    try:
        return int(module.run(args) or 0)
    except SidemanError as exc:
        logging.getLogger("sideman").error("%s", exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
