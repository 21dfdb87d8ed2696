#!/usr/bin/env bash
# `make run`: start the sideman daemon on the default preset and the shipped model.
# Where there is no ALSA sequencer (containers, CI machines) it uses JACK, starting a dummy JACK
# server if none is running, so the virtual ports "sideman in" / "sideman out" appear there.
set -u
cd "$(dirname "$0")/.."
SIDEMAN=.venv/bin/sideman
args=("$@")
if [ ! -e /dev/snd/seq ]; then
  echo "no ALSA sequencer (/dev/snd/seq): using JACK MIDI"
  if ! JACK_NO_START_SERVER=1 jack_lsp >/dev/null 2>&1; then
    if command -v jackd >/dev/null; then
      echo "starting a JACK server: jackd -d dummy -r 48000 -p 128 (stop it with: pkill jackd)"
      nohup jackd -d dummy -r 48000 -p 128 >/tmp/sideman-jackd.log 2>&1 &
      jack_wait -w -t 10 >/dev/null 2>&1 || sleep 2
    else
      echo "no jackd: install it with: sudo apt-get install jackd2" >&2
      exit 1
    fi
  fi
  args=(--midi-api jack "${args[@]}")
fi
exec "$SIDEMAN" run "${args[@]}"
