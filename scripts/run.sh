#!/usr/bin/env bash
# `make run`: start the sideman daemon on the default preset and the shipped model.
# Where there is no ALSA sequencer (containers, CI machines) it uses JACK MIDI; if no JACK server is
# running, sideman starts a dummy one for the session and stops exactly that one when it stops.
set -u
cd "$(dirname "$0")/.."
SIDEMAN=.venv/bin/sideman
args=("$@")
if [ ! -e /dev/snd/seq ]; then
  echo "no ALSA sequencer (/dev/snd/seq): using JACK MIDI"
  if ! command -v jackd >/dev/null; then
    echo "no jackd: install it with: sudo apt-get install jackd2" >&2
    exit 1
  fi
  args=(--midi-api jack --start-jack "${args[@]}")
fi
exec "$SIDEMAN" run "${args[@]}"
