"""`sideman run`: start the realtime daemon (also `python daemon.py`).

Exit codes: 0 stopped normally (also by SIGTERM), 1 error (bad preset, model or port; the message
says what to fix), 130 interrupted (Ctrl-C / SIGINT). `kill -USR1 <pid>` prints every thread's stack to
stderr and the daemon goes on (for a daemon that seems stuck).
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal

from engine.errors import SidemanError
from engine.live.jack import stop_jack
from engine.live.midi.ports import API_NAMES
from engine.live.scheduler import DEFAULT_REALTIME_PRIORITY, realtime_priority_option

log = logging.getLogger("sideman.run")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", metavar="FILE", help="preset file (default presets/default.toml)")
    parser.add_argument("--midi-api", choices=API_NAMES, help="MIDI API (default: the preset's; ALSA on Linux)")
    parser.add_argument("--in", dest="input_name", metavar="NAME", help="input port name (default: the preset's)")
    parser.add_argument("--out", dest="output_name", metavar="NAME", help="output port name (default: the preset's)")
    parser.add_argument("--connect", action="store_true", default=None,
                        help="connect to existing ports by name or substring instead of opening virtual ones "
                             "(Windows: loopMIDI / Windows MIDI Services)")
    parser.add_argument("--model", metavar="PATH", help="TorchScript model (default: the preset's)")
    parser.add_argument("--bpm", type=float, help="tempo of the internal clock (default: the preset's)")
    parser.add_argument("--monitor", action="store_true", help="play both parts through the built-in synth")
    parser.add_argument("--soundfont", metavar="PATH", help="SoundFont for the monitor")
    parser.add_argument("--status-every", type=float, default=10.0, metavar="S",
                        help="seconds between status lines (0: none; default 10)")
    parser.add_argument("--device", default="auto", help="model device: auto, cpu or cuda (default auto)")
    parser.add_argument("--realtime-priority", type=int, default=DEFAULT_REALTIME_PRIORITY, metavar="N",
                        help="SCHED_FIFO priority of the scheduler thread, below JACK's client threads (default "
                             f"{DEFAULT_REALTIME_PRIORITY}; 0: off). Needs root or rtprio (the audio group's); "
                             "without it the scheduler runs at normal priority and the model thread at nice 10")
    parser.add_argument("--start-jack", action="store_true",
                        help="with the JACK MIDI API: if no JACK server is running, start a dummy one "
                             "(jackd -S -d dummy -r 48000 -p 128; synchronous, so a late client delays a cycle and "
                             "no MIDI is lost) for this run and stop it, and only it, when sideman stops; a server "
                             "that was already running is used and left alone")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for the model (default 1). Decode steps and short feeds run on the native "
                             "kernel, whose step never waits for a descheduled helper, so 2 are safe there; longer "
                             "feeds run on torch's pool, where a descheduled worker can stall them")


def run(args: argparse.Namespace) -> int:
    from engine.live.daemon import EXIT_INTERRUPTED, EXIT_OK, Daemon, DaemonOptions, load_daemon_preset

    if args.bpm is not None and not 20 <= args.bpm <= 300:
        raise SidemanError(f"--bpm {args.bpm:g} is out of range; allowed: 20..300 (as in presets)")
    if args.threads < 1:
        raise SidemanError("--threads must be >= 1")
    if args.status_every < 0:
        raise SidemanError("--status-every must be >= 0 (0 turns the status line off)")
    preset = load_daemon_preset(args.preset)
    options = DaemonOptions(
        midi_api=args.midi_api,
        input_name=args.input_name,
        output_name=args.output_name,
        connect=args.connect,
        model=args.model,
        bpm=args.bpm,
        monitor=args.monitor,
        soundfont=args.soundfont,
        status_every=args.status_every,
        device=args.device,
        threads=args.threads,
        realtime_priority=realtime_priority_option(args.realtime_priority),
    )
    if args.start_jack and (args.midi_api or preset.ports.api) != "jack":
        raise SidemanError("--start-jack starts a JACK server for JACK MIDI: add --midi-api jack "
                           f"(the MIDI API is {args.midi_api or preset.ports.api!r})")
    jackd = start_jack_for_run() if args.start_jack else None
    try:
        daemon = Daemon(preset, options)
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signal.signal(signal.SIGINT, lambda *_: daemon.request_stop(EXIT_INTERRUPTED))
        signal.signal(signal.SIGTERM, lambda *_: daemon.request_stop(EXIT_OK))
        faulthandler.register(signal.SIGUSR1, all_threads=True)  # stacks to stderr, from C: even mid-hang
        try:
            daemon.start()
            return daemon.run()
        finally:
            daemon.close()  # its JACK clients go before the server does
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            faulthandler.unregister(signal.SIGUSR1)
    finally:
        if jackd is not None:
            stop_jack(jackd)
            log.info("stopped the JACK server sideman started (pid %d)", jackd.pid)


def start_jack_for_run():
    """The JACK server for this run: None when one is already running (it is left alone)."""
    from engine.live.jack import start_session_jack

    jackd = start_session_jack()
    server = os.environ.get("JACK_DEFAULT_SERVER") or "default"
    if jackd is None:
        log.info("using the running JACK server %r", server)
    else:
        log.info("started JACK server %r for this run: jackd -S -d dummy -r 48000 -p 128 (pid %d); "
                 "it stops when sideman stops", server, jackd.pid)
    return jackd
