"""The CLI: every subcommand is there, and the MIDI side never pulls in torch."""

import subprocess
import sys

from engine.cli import COMMANDS


def test_building_the_cli_and_listing_ports_never_imports_torch():
    code = ("import sys, engine.cli, engine.live.midi.ports, engine.live.scheduler, engine.live.clock, engine.presets, "
            "engine.live.phrase, engine.live.midi.input, engine.live.midi.output; engine.cli.build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_every_command_has_its_module():
    parser_help = subprocess.run([sys.executable, "-m", "engine.cli", "--help"], capture_output=True, text=True,
                                 timeout=60).stdout
    for name in COMMANDS:
        assert name in parser_help
        out = subprocess.run([sys.executable, "-m", "engine.cli", name, "--help"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, (name, out.stderr[-500:])
