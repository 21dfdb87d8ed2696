"""`sideman bench live --mode restyle`: the call-and-response jam (`engine.bench.live`) with the restyle mode.

The same player process plays phrases of 4-10 eighth notes (some rests) over JACK and sometimes cuts in; the
daemon runs the restyle preset on models/restyle.pt, as fiddle tunes. Measured as for call and response:
phrase-end decision -> first restyled note handed to the scheduler (p50, p99; with the player silent the
likely phrase is encoded and written ahead, as the live mode does, unless --no-prepare: up to its first
note, or with the preset's `candidates` (`--candidates N`) whole phrases while the silence lasts), lost input,
hanging notes, timing at the listener; plus the encode (encoder, critic and the header), the per-token step
and how many whole candidates each answer chose among.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace

from engine.bench import live


@dataclass
class _StatsView:
    """The restyle part's stats under the names the jam reads."""

    ready_ms: list
    ready_detail: list
    first_token_ms: list
    step_ms: list
    player_events: int
    responses: int
    prepared_used: int
    cut_ins: int


def restyle_preset(bpm: float, candidates: int | None = None):
    from engine.presets import PRESET_DIR, load_preset

    base = load_preset(PRESET_DIR / "restyle.toml")
    tag = uuid.uuid4().hex[:6]
    restyle = base.restyle if candidates is None else replace(base.restyle, candidates=candidates)
    return replace(base, name="bench-live-restyle", restyle=restyle,
                   ports=replace(base.ports, api="jack", input=f"sideman in {tag}", output=f"sideman out {tag}"),
                   clock=replace(base.clock, source="internal", bpm=bpm),
                   phrase=replace(base.phrase, silence_beats=1.0), sampling=replace(base.sampling, seed=1))


def stats_of(daemon) -> _StatsView:
    s = daemon.part.thread.stats
    detail = [(ms, began, 0, 0.0) for ms, began in s.ready_detail]
    return _StatsView(s.ready_ms, detail, [], list(s.step_ms), s.player_events, s.answers, s.prepared_used,
                      s.cut_ins)


def run_bench(minutes: float, speed: float, model: str | None, seed: int = 1, threads: int = 1,
              prepare: bool = True, realtime_priority: int | None = None, jack_log: str | None = None,
              candidates: int | None = None) -> dict:
    encode_ms: list[float] = []
    chosen_among: list[int] = []
    presets = []

    def preset_of(bpm: float):
        presets.append(restyle_preset(bpm, candidates))
        return presets[-1]

    def stats(daemon):
        encode_ms.extend(daemon.part.thread.stats.encode_ms)
        chosen_among.extend(daemon.part.thread.stats.candidates)
        return stats_of(daemon)

    result = live.run_bench(minutes, speed, model, seed, threads, prepare, realtime_priority, jack_log,
                            preset_of=preset_of, stats_of=stats,
                            default_model="models/restyle.pt")
    result.update(live._stats(encode_ms, "encode_ms"))
    result["mode"] = "restyle"
    result["candidates"] = presets[-1].restyle.candidates
    # how many whole restyled phrases each prepared answer chose among (1: the one being written when asked)
    result["candidates_chosen_among"] = {str(k): chosen_among.count(k) for k in sorted(set(chosen_among))}
    return result
