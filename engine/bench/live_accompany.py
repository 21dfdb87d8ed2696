"""`sideman bench live --mode accompany`: the accompaniment over JACK, measured as a musician hears it.

A player process (a JACK client, another process) plays chorale melodies into the daemon as a person
plays them (the soprano of held-out chorales through the human-playing model, plus sub-tick jitter),
8 bars each with 2 bars' rest between, and records everything on the daemon's output. The daemon runs
in this process on a private JACK server (dummy backend, 48 kHz, 128 frames), preset chorale.

Numbers:
- revision_ms: a player message reaching the daemon -> the revised plan reaches past the commit window (so
  whatever the scheduler gets next is decided with the message known); the rest of the plan follows in the
  background. Split into waiting for the model thread and its work; revision_cpu_ms is the model thread's
  CPU time in that work (time.thread_time), so work minus CPU is time spent waiting for a core or the GIL;
- commit_lead_ms: how long before it sounds each sideman note-on was committed (handed to the scheduler);
- commit_window_ms: the commit window at each commit (adaptive by default: engine.live.commit_window);
- in_time_share: the share of committed note-ons that were due after they were committed;
- timing_error_ms: arrival at the listener minus due, for every message the scheduler sent;
- lost_messages, hanging_notes: as `sideman bench live`;
- voices: per voice, the notes it struck inside the melodies, its longest silence and longest note there
  (beats), as the listener heard it: a voice that drops out for bars, or holds one note through them, is
  heard as missing, whatever the consonance;
- cr/ur live: consonance of what arrived at the listener against the melody as played, beside the same
  melodies accompanied offline (`sideman accompany`'s planner, commit window 0): the offline upper bound,
  the mean over `offline_seeds` sampling seeds (one seed's bound moves by about 0.01).
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
import uuid
import warnings
import zlib
from dataclasses import replace

import numpy as np

from engine.bench.live import REPO, JackListener, _stats, hanging, pair_timing, record_sends

log = logging.getLogger("sideman.bench.live")
BASE_BPM = 90.0
MELODY_BARS = 8
REST_BARS = 2
# chorales of the test split (held out from training), 4/4
BENCH_CHORALES = ("bach/bwv140.7.mxl", "bach/bwv174.5.mxl", "bach/bwv227.11.mxl", "bach/bwv244.25.mxl",
                  "bach/bwv245.17.mxl", "bach/bwv268.mxl")


def melodies(n: int, seed: int) -> list[list[tuple[float, list[int]]]]:
    """The first bars of `n` chorale sopranos as played (ticks from the melody's first bar line)."""
    from engine.corpus import music21_source as m21
    from engine.corpus.piece import voice_roles
    from engine.music.vocab import DEFAULT_VOCAB as V
    from engine.train.humanize import bar_phrases, humanize

    tpb = V.config.ticks_per_beat
    out = []
    for k in range(n):
        source = BENCH_CHORALES[k % len(BENCH_CHORALES)]
        (piece,) = m21.parse_unit(m21.Unit("bach", source, str(m21.corpus_root())), tpb)
        roles, _ = voice_roles(piece, V)
        rng = np.random.default_rng(zlib.crc32(f"{source}|bench|{seed}|{k}".encode()))
        played = humanize(piece, roles, rng, phrases=bar_phrases(piece, roles)).notes
        origin = int(piece.bars[0, 0])
        end = origin + MELODY_BARS * 4 * tpb
        msgs = []
        for on, off, pitch, vel, _ in played[roles == 0].tolist():
            if on >= end:
                continue
            j = rng.uniform(-0.5, 0.5)  # below a tick: the player is not on the model's grid either
            msgs.append((on - origin + j, [0x90, pitch, vel]))
            msgs.append((min(off, end) - origin + j, [0x80, pitch, 0]))
        msgs.sort(key=lambda m: (m[0], m[1][0] == 0x90))
        out.append(msgs)
    return out


def player_main(config: dict) -> None:
    """Runs in a child process: play the melodies at their times on the daemon's clock; record the output."""
    import rtmidi

    logging.basicConfig(level=logging.ERROR)
    listener = JackListener(config["out_port"])
    listener.start()
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-player")
    names = out.get_ports()
    out.open_port([i for i, n in enumerate(names) if n.endswith(":" + config["in_port"])][0])
    print("ready", flush=True)
    origin, spt = config["origin"], config["spt"]
    sent = []
    for tick, data in config["messages"]:
        due = origin + tick * spt
        while True:
            left = due - time.perf_counter()
            if left <= 0:
                break
            time.sleep(min(left, 0.002) if left > 0.002 else 0)
        out.send_message(data)
        sent.append((time.perf_counter(), data))
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline and time.perf_counter() - listener.last_arrival() < 1.5:
        time.sleep(0.1)
    print("played", flush=True)
    sys.stdin.readline()
    time.sleep(0.3)
    listener.stop_event.set()
    listener.join(2)
    out.close_port()
    print(json.dumps({"sent": sent, "arrivals": listener.arrivals()}), flush=True)


def notes_ms(timed, channels: dict[int, int]) -> list:
    """Notes (ms, integer) of (time s, message) pairs; channels: MIDI channel -> role."""
    from engine.music.metrics import Note

    out, open_ = [], {}
    for t, data in timed:
        kind, ch = data[0] & 0xF0, data[0] & 0x0F
        if ch not in channels or kind not in (0x80, 0x90):
            continue
        key = (ch, data[1])
        if kind == 0x90 and data[2] > 0:
            open_[key] = (t, data[2])
        elif key in open_:
            start, vel = open_.pop(key)
            out.append(Note(int(round(start * 1000)), max(int(round(start * 1000)) + 1, int(round(t * 1000))),
                            data[1], vel, channels[ch]))
    return out


def offline_session(model_path: str):
    """One CPU session of the model, 1 thread, for the bench's offline measurements."""
    from engine.model.modelfile import load_model
    from engine.model.session import ModelSession
    from engine.music.vocab import DEFAULT_VOCAB as V

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ModelSession(load_model(model_path, V), device="cpu", threads=1)


def offline_consonance(session, melodies_ticks, spt: float, seed: int, commit_ticks: int = 0) -> tuple[float, float]:
    """CR, UR of the same melodies accompanied offline (commit window 0, or the live window's ticks: what the
    window itself costs, the live machinery aside), notes in ms."""
    from engine.model.sampler import SamplingConfig
    from engine.music.harmony import consonance
    from engine.music.metrics import Note
    from engine.music.tokens import Meter
    from engine.music.vocab import DEFAULT_VOCAB as V
    from engine.offline.accompaniment import AccompanySettings, Melody, accompany

    notes = []
    for k, (offset, msgs) in enumerate(melodies_ticks):
        melody = Melody([(t, tuple(d)) for t, d in msgs], Meter(), 60.0 / (spt * 24), msgs[-1][0])
        result = accompany(session, melody, AccompanySettings(sampling=SamplingConfig(0.9, 0, 0.95, seed + k),
                                                              style="bach"), V, commit_ticks=commit_ticks)
        notes += notes_ms([((offset + t) * spt, d) for t, d in msgs], {0: 0})
        opened = {}
        for e in result.events:
            if e.on:
                opened[(e.role, e.pitch)] = e.tick
            elif (e.role, e.pitch) in opened:
                s = opened.pop((e.role, e.pitch))
                notes.append(Note(int(round((offset + s) * spt * 1000)),
                                  int(round((offset + max(s + 1, e.tick)) * spt * 1000)), e.pitch, 64, e.role))
    return consonance(notes)


def offline_revision_ms(session, melodies_ticks, window_ticks: float, lookahead_ticks: float,
                        seed: int, seconds_per_tick: float) -> tuple[list[float], list[float]]:
    """The machine's own reference for a revision's work: the same revisions as the live mode's (the plan
    `lookahead_ticks` ahead, the window committed, then the player's event cut in and the plan made again
    past the window), timed in this process with nothing running beside it (ms); and the CPU time of each
    plan token (sample and decode, time.thread_time, ms)."""

    from engine.model.accompanist import Accompanist, expire_after_ticks, voice_constraints
    from engine.model.sampler import Sampler, SamplingConfig
    from engine.music.harmony import VOICE_RANGES
    from engine.music.tokens import Meter
    from engine.music.vocab import DEFAULT_VOCAB as V

    out, steps = [], []
    for k, (_, msgs) in enumerate(melodies_ticks):
        planner = Accompanist(session, V, Sampler(SamplingConfig(0.9, 0, 0.95, seed + k)), Meter(),
                              constraints=voice_constraints((1, 2, 3), VOICE_RANGES), predict_player=True)
        planner.begin("bach")
        for t, data in msgs:
            commit = t + window_ticks
            planner.expire_predictions(t - expire_after_ticks(seconds_per_tick))
            planner.floor = max(planner.floor, math.ceil(commit))
            for _ in range(512):
                if not planner.generating() or planner.position >= t + lookahead_ticks:
                    break
                c0 = time.thread_time()
                planner.step()
                steps.append((time.thread_time() - c0) * 1000.0)
            planner.commit(commit)
            t0 = time.perf_counter()
            planner.player(t, tuple(data))
            planner.floor = max(planner.floor, math.ceil(commit))
            for _ in range(512):
                if not planner.generating() or planner.position >= commit:
                    break
                planner.step()
            if planner.generating():
                out.append((time.perf_counter() - t0) * 1000.0)
    return out, steps


def bench_preset(bpm: float, commit_ms: float | None = None, fixed_commit: bool = False):
    """The chorale preset on a private JACK port pair at `bpm` (and with `commit_ms` when given; a fixed
    window with `fixed_commit`)."""
    from engine.presets import PRESET_DIR, load_preset

    base = load_preset(PRESET_DIR / "chorale.toml")
    if commit_ms is not None:
        base = replace(base, accompany=replace(base.accompany, commit_ms=float(commit_ms)))
    if fixed_commit:
        base = replace(base, accompany=replace(base.accompany, adaptive_commit=False))
    tag = uuid.uuid4().hex[:6]
    return replace(base, name="bench-live-accompany",
                   ports=replace(base.ports, api="jack", input=f"sideman in {tag}", output=f"sideman out {tag}"),
                   clock=replace(base.clock, source="internal", bpm=bpm), sampling=replace(base.sampling, seed=1))


def write_heard(path: str, timed: list, bpm: float, start: float | None = None) -> None:
    """What the listener heard (the melody as sent, the voices as they arrived) as a MIDI file, for a piano roll.
    `start`: the time of the first melody's bar line, so the file's bars are the music's (default: the first
    event)."""
    import mido

    timed = sorted(timed, key=lambda x: (x[0], x[1][0] & 0xF0 == 0x90))
    t0 = timed[0][0] if timed else 0.0
    if start is not None:  # back by whole bars past an early first note, so bar lines stay bar lines
        bar_s = 4 * 60.0 / bpm
        t0 = start - bar_s * max(0, math.ceil((start - t0) / bar_s))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0)])
    last = 0
    for t, data in timed:
        if data[0] & 0xF0 not in (0x80, 0x90):
            continue
        ticks = int(round(mido.second2tick(t - t0, 480, mido.bpm2tempo(bpm))))
        track.append(mido.Message.from_bytes(list(data)).copy(time=max(0, ticks - last)))
        last = max(last, ticks)
    f = mido.MidiFile(type=0, ticks_per_beat=480)
    f.tracks.append(track)
    f.save(path)


def run_bench(minutes: float, speed: float, model: str | None, seed: int = 1, threads: int = 1,
              realtime_priority: int | None = None, jack_log: str | None = None, heard: str | None = None,
              commit_ms: float | None = None, fixed_commit: bool = False, offline_seeds: int = 3) -> dict:
    from engine.live.daemon import Daemon, DaemonOptions, resolve_model_path
    from engine.live.modes.accompany import VOICE_NAMES
    from engine.music.harmony import consonance, voice_presence

    bpm = BASE_BPM * speed
    spt = 60.0 / (bpm * 24)
    bar_ticks = 4 * 24
    n = max(1, int(round(minutes * BASE_BPM / 4 / (MELODY_BARS + REST_BARS))))
    tunes = melodies(n, seed)
    model_path = str(resolve_model_path(model or "models/accompaniment.pt"))
    preset = bench_preset(bpm, commit_ms, fixed_commit)
    daemon = Daemon(preset, DaemonOptions(model=model_path, status_every=0, threads=threads,
                                          realtime_priority=realtime_priority))
    daemon.start()
    sends = record_sends(daemon)
    main = threading.Thread(target=daemon.run, name="daemon-main", daemon=True)
    main.start()
    # the melodies on the daemon's bar grid, from the second bar line after now
    first_bar = (int(daemon.clock.tick_now()) // bar_ticks + 2) * bar_ticks
    messages, placed = [], []  # placed: (the melody's first bar line, its messages from there)
    at = first_bar
    for tune in tunes:
        placed.append((at, tune))
        messages += [(at + t, d) for t, d in tune]
        at += (MELODY_BARS + REST_BARS) * bar_ticks
    config = {"in_port": preset.ports.input, "out_port": preset.ports.output, "origin": daemon.clock.time_at(0),
              "spt": daemon.clock.seconds_per_tick, "messages": messages}
    code = ("import json, sys; from engine.bench.live_accompany import player_main; "
            "player_main(json.loads(sys.stdin.readline()))")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    t0 = time.perf_counter()
    try:
        child.stdin.write(json.dumps(config) + "\n")
        child.stdin.flush()
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("the player process did not start")
        if child.stdout.readline().strip() != "played":
            raise RuntimeError("the player process failed")
        wall = time.perf_counter() - t0
        records = list(daemon.scheduler.records)
        port_received = daemon.poller.stats.received  # what JACK delivered to the daemon's input port
        part = daemon.part.thread
        stats = part.stats
        status = daemon.status()
        sends_at_end = len(sends)
        daemon.request_stop()
        main.join(3)
        out, _ = child.communicate("done\n", timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
        daemon.request_stop()
    player = json.loads(out.strip().splitlines()[-1])
    arrivals = player["arrivals"]
    timing_s, output_lost = pair_timing(records, sends, arrivals)
    channels = {0: 0} | {c - 1: i + 1 for i, c in enumerate(preset.accompany.channels)}
    heard_notes = notes_ms([(t, d) for t, d in player["sent"]] + [(t, d) for t, d in arrivals], channels)
    live_cr, live_ur = consonance(heard_notes)
    origin_ms = 1000.0 * config["origin"]
    spans = [(origin_ms + 1000.0 * spt * (at + msgs[0][0]), origin_ms + 1000.0 * spt * (at + msgs[-1][0]))
             for at, msgs in placed]
    presence = voice_presence(heard_notes, spans, 1000.0 * spt * 24)
    if heard:
        write_heard(heard, [(t, d) for t, d in player["sent"]] + [(t, d) for t, d in arrivals], bpm,
                    start=config["origin"] + spt * first_bar)
    # offline, per melody, on the ticks the player meant (the same human timing)
    session = offline_session(model_path)
    seeds = [seed + 1000 * k for k in range(max(1, offline_seeds))]
    bounds = [offline_consonance(session, placed, spt, s) for s in seeds]
    off_cr, off_ur = float(np.mean([b[0] for b in bounds])), float(np.mean([b[1] for b in bounds]))
    # the window the live plan used, as the commits saw it (the adaptive one moves): its median
    window_ms = float(np.median(stats.commit_window_ms)) if stats.commit_window_ms else preset.accompany.commit_ms
    window_ticks = window_ms / 1000.0 / spt
    windowed = [offline_consonance(session, placed, spt, s, math.ceil(window_ticks)) for s in seeds]
    win_cr, win_ur = float(np.mean([b[0] for b in windowed])), float(np.mean([b[1] for b in windowed]))
    reference_ms, reference_step_ms = offline_revision_ms(session, placed, window_ticks,
                                                          preset.accompany.lookahead_beats * 24, seed, spt)
    committed = stats.committed_notes
    return {
        "mode": "accompany",
        "jack": "dummy 48000 Hz, 128 frames",
        "bpm": bpm, "melodies": n, "melody_bars": MELODY_BARS, "wall_s": round(wall, 1),
        "commit_ms": preset.accompany.commit_ms, "adaptive_commit": preset.accompany.adaptive_commit,
        "commit_min_ms": preset.accompany.commit_min_ms, "lookahead_beats": preset.accompany.lookahead_beats,
        **_stats(stats.commit_window_ms, "commit_window_ms"),
        "commit_window_min_ms": round(min(stats.commit_window_ms), 2) if stats.commit_window_ms else None,
        "commit_lead_min_ms": round(min(stats.commit_lead_ms), 2) if stats.commit_lead_ms else None,
        **_stats(stats.revision_ms, "revision_ms"),
        **_stats(stats.revision_wait_ms, "revision_wait_ms"),
        **_stats(stats.revision_work_ms, "revision_work_ms"),
        **_stats(stats.revision_cpu_ms, "revision_cpu_ms"),
        **_stats(reference_ms, "revision_offline_ms"),
        **_stats(reference_step_ms, "token_step_offline_cpu_ms"),
        **_stats(stats.commit_lead_ms, "commit_lead_ms"),
        **_stats(stats.step_ms, "token_step_ms"),
        "committed_notes": committed, "late_notes": stats.late_notes,
        "in_time_share": round(1 - stats.late_notes / committed, 5) if committed else None,
        **_stats([1000.0 * e for e in timing_s], "timing_error_ms"),
        "lost_messages": len(player["sent"]) - stats.player_events,
        "lost_in_jack": len(player["sent"]) - port_received,  # never delivered to the daemon's port (xrun cycles)
        "lost_in_daemon": port_received - stats.player_events,  # delivered, but never reached the model thread
        "player_messages": len(player["sent"]),
        "hanging_notes": hanging([d for _, d in sends[:sends_at_end]]),
        "hanging_notes_after_shutdown": hanging([d for _, d in arrivals]),
        "output_lost_in_jack": output_lost,
        "dropped": status["dropped"], "late": status["late"], "revisions": stats.revisions,
        "expired_predictions": part.planner.stats.expired_predictions,
        "voices": {VOICE_NAMES[r]: v for r, v in presence.items()},
        "cr_live": round(live_cr, 4), "ur_live": round(live_ur, 4),
        "cr_offline": round(off_cr, 4), "ur_offline": round(off_ur, 4), "offline_seeds": seeds,
        "cr_offline_per_seed": [round(b[0], 4) for b in bounds],
        "cr_gap": round(off_cr - live_cr, 4),
        # the same offline planner with the live commit window (in whole ticks): the window's own cost
        "cr_offline_window": round(win_cr, 4), "ur_offline_window": round(win_ur, 4),
        "offline_window_ticks": math.ceil(window_ticks),
        "cr_offline_window_per_seed": [round(b[0], 4) for b in windowed],
        "model": model_path, "torch_threads": threads, "load_average": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def report(r: dict) -> str:
    return "\n".join([
        f"sideman bench live --mode accompany: {r['melodies']} melodies of {r['melody_bars']} bars as played, "
        f"{r['bpm']:g} BPM, in {r['wall_s']} s; commit window "
        + (f"adaptive {r['commit_min_ms']:g}-{r['commit_ms']:g} ms" if r['adaptive_commit'] else f"{r['commit_ms']:g} ms")
        + f", lookahead {r['lookahead_beats']:g} beats",
        f"  the commit window at each commit: p50 {r['commit_window_ms_p50']} ms, min {r['commit_window_min_ms']} ms, "
        f"max {r['commit_window_ms_max']} ms",
        f"  player event -> revised plan past the commit window: p50 {r['revision_ms_p50']} ms, p99 {r['revision_ms_p99']} ms "
        f"(n {r['revision_ms_n']}); of which waiting for the model thread p50 {r['revision_wait_ms_p50']} ms, "
        f"p99 {r['revision_wait_ms_p99']} ms, its work p50 {r['revision_work_ms_p50']} ms, p99 {r['revision_work_ms_p99']} ms",
        f"  ... the thread's CPU time in that work: p50 {r['revision_cpu_ms_p50']} ms, p99 {r['revision_cpu_ms_p99']} ms "
        f"(the rest of the work's wall time it waited for a core or the GIL)",
        f"  the same revisions in one process, nothing beside them (this machine's reference): "
        f"p50 {r['revision_offline_ms_p50']} ms, p99 {r['revision_offline_ms_p99']} ms",
        f"  commit lead (committed -> sounds): p50 {r['commit_lead_ms_p50']} ms, p99 {r['commit_lead_ms_p99']} ms, "
        f"min {r['commit_lead_min_ms']} ms",
        f"  planned notes in time: {r['committed_notes'] - r['late_notes']} of {r['committed_notes']} "
        f"({r['in_time_share']}); scheduler dropped {r['dropped']}, late {r['late']}",
        f"  arrival - due at a JACK client: p50 {r['timing_error_ms_p50']} ms, p99 {r['timing_error_ms_p99']} ms, "
        f"max {r['timing_error_ms_max']} ms",
        f"  decode step: p50 {r['token_step_ms_p50']} ms, p99 {r['token_step_ms_p99']} ms; its CPU time in one "
        f"process, nothing beside it: p50 {r['token_step_offline_cpu_ms_p50']} ms, p99 {r['token_step_offline_cpu_ms_p99']} ms",
        f"  lost input {r['lost_messages']} of {r['player_messages']} (in JACK {r['lost_in_jack']}, in the daemon "
        f"{r['lost_in_daemon']}), hanging notes {r['hanging_notes']} "
        f"(after shutdown {r['hanging_notes_after_shutdown']}), output lost in JACK {r['output_lost_in_jack']}",
        "  each voice inside the melodies: " + ", ".join(
            f"{name} {v['notes']} notes, longest silence {v['longest_silence_beats']} beats, "
            f"longest note {v['longest_note_beats']}"
            for name, v in r["voices"].items()),
        f"  consonance live CR {r['cr_live']} UR {r['ur_live']} vs offline CR {r['cr_offline']} UR {r['ur_offline']} "
        f"(gap {r['cr_gap']}; the bound per seed {r['cr_offline_per_seed']}); offline with the commit window "
        f"({r['offline_window_ticks']} ticks) CR {r['cr_offline_window']} UR {r['ur_offline_window']}",
        f"  machine: {r['cpu_count']} CPUs, load average {r['load_average']}",
    ])
