"""`python -m engine.bench decode|live [...]` is `sideman bench decode|live [...]`."""

import sys

from engine.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
