"""`sideman ports`: list the MIDI ports of each compiled API (or one, with --midi-api)."""

from __future__ import annotations

import argparse

from engine.live.midi.ports import API_NAMES, compiled_api_names, list_ports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--midi-api", choices=API_NAMES, default=None, help="list only this API (default: every compiled one)"
    )


def run(args: argparse.Namespace) -> int:
    apis = [args.midi_api] if args.midi_api else compiled_api_names()
    if not apis:
        print("python-rtmidi has no MIDI API compiled in; reinstall python-rtmidi")
        return 1
    listed = 0
    for api in apis:
        listing = list_ports(api)
        print(f"{listing.api}:")
        if listing.error:
            print(f"  unavailable: {listing.error}")
            continue
        listed += 1
        print("  inputs sideman can read from (other programs' outputs):")
        for name in listing.inputs or ("(none)",):
            print(f"    {name}")
        print("  outputs sideman can send to (other programs' inputs):")
        for name in listing.outputs or ("(none)",):
            print(f"    {name}")
    return 0 if listed else 1
