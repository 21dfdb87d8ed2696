#!/usr/bin/env python3
"""Entry point for the realtime daemon: `python daemon.py [options]` is `sideman run [options]`."""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
