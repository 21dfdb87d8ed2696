"""The musical clock: meter arithmetic, the internal clock, and following MIDI clock."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from engine.live.clock import ExternalClock, InternalClock, Meter
from test_daemon import wait_until


class FakeTime:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize(
    "num,den,bar,beat", [(4, 4, 96, 24), (3, 4, 72, 24), (6, 8, 72, 12), (7, 8, 84, 12), (2, 2, 96, 48), (5, 16, 30, 6)]
)
def test_meter_lengths(num, den, bar, beat):
    meter = Meter(num, den)
    assert (meter.bar_ticks, meter.beat_ticks) == (bar, beat)


@pytest.mark.parametrize("num,den", [(0, 4), (4, 3), (4, 0), (33, 4)])
def test_meter_rejects_nonsense(num, den):
    with pytest.raises(ValueError):
        Meter(num, den)


def test_internal_clock_maps_both_ways():
    now = FakeTime()
    clock = InternalClock(120, Meter(4, 4), time_fn=now)
    clock.start(t=100.0)
    # 120 BPM: a quarter (24 ticks) is 0.5 s
    assert clock.tick_at(100.5) == pytest.approx(24)
    assert clock.time_at(96) == pytest.approx(102.0)
    for tick in (0, 7, 95.5, 1000):
        assert clock.tick_at(clock.time_at(tick)) == pytest.approx(tick)
    now.t = 100.3  # tick 14.4
    assert clock.next_beat_tick() == 24
    assert clock.next_bar_tick() == 96
    assert clock.next_beat_tick(100.5) == 24  # on a beat counts as that beat


def test_internal_clock_tempo_change_keeps_position():
    clock = InternalClock(100, time_fn=FakeTime())
    clock.start(t=0.0)
    before = clock.tick_at(3.0)
    clock.set_bpm(150, t=3.0)
    assert clock.tick_at(3.0) == pytest.approx(before)
    assert clock.tick_at(4.0) - clock.tick_at(3.0) == pytest.approx(150 * 24 / 60)


def test_internal_clock_stop_freezes_and_notifies():
    events = []
    clock = InternalClock(120, time_fn=FakeTime())
    clock.add_listener(lambda event, c: events.append(event))
    clock.start(t=0.0)
    clock.stop(t=1.0)
    assert not clock.running
    assert clock.tick_at(5.0) == pytest.approx(48)
    assert events == ["start", "stop"]


def pulses(bpm: float, n: int, t0: float = 10.0, jitter_s: float = 0.0, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    period = 60.0 / (bpm * 24)
    return [t0 + i * period + rng.uniform(-jitter_s, jitter_s) for i in range(n)]


@pytest.mark.parametrize("bpm", [60, 97.5, 120, 174])
@pytest.mark.parametrize("jitter_ms", [0.0, 1.0, 2.0])
def test_external_tempo_estimate_within_one_percent(bpm, jitter_ms):
    clock = ExternalClock(fallback_bpm=100)
    clock.handle_message(9.99, (0xFA,))
    for t in pulses(bpm, 96, jitter_s=jitter_ms / 1000, seed=int(bpm)):
        clock.handle_message(t, (0xF8,))
    assert clock.bpm == pytest.approx(bpm, rel=0.01)


def test_external_clock_follows_a_tempo_change():
    clock = ExternalClock(window=48)
    clock.start(0.0)
    first = pulses(100, 96, t0=0.0, jitter_s=0.0005)
    for t in first:
        clock.pulse(t)
    period = 60 / (140 * 24)
    for i in range(1, 97):
        clock.pulse(first[-1] + i * period)
    assert clock.bpm == pytest.approx(140, rel=0.01)


def test_external_positions_start_spp_continue():
    clock = ExternalClock(Meter(4, 4))
    events = []
    clock.add_listener(lambda event, c: events.append(event))
    clock.handle_message(1.0, (0xFA,))
    assert clock.running
    assert clock.tick_at(1.5) == 0  # waits for the first pulse
    ts = pulses(120, 25, t0=1.01)
    for t in ts:
        clock.handle_message(t, (0xF8,))
    assert clock.tick_at(ts[-1]) == pytest.approx(24, abs=0.01)  # the 25th pulse is beat 2
    assert clock.next_bar_tick(ts[-1] + 0.001) == 96
    clock.handle_message(ts[-1] + 0.01, (0xFC,))
    assert not clock.running
    frozen = clock.tick_at(ts[-1] + 5)
    assert 24 <= frozen <= 25
    # pulses while stopped do not move the position
    clock.handle_message(ts[-1] + 0.03, (0xF8,))
    assert clock.position_ticks == 25
    # Song Position Pointer: 16ths as a 14-bit LSB/MSB pair; 200 sixteenths = 1200 ticks
    clock.handle_message(20.0, (0xF2, 200 & 0x7F, 200 >> 7))
    assert clock.position_ticks == 1200
    clock.handle_message(20.1, (0xFB,))
    clock.handle_message(20.12, (0xF8,))
    assert clock.tick_at(20.12) == pytest.approx(1200)
    assert events == ["start", "stop", "position", "continue"]


def test_external_gap_restarts_the_fit():
    clock = ExternalClock()
    clock.start(0.0)
    ts = pulses(120, 48, t0=0.0)
    for t in ts:
        clock.pulse(t)
    # two seconds of silence (cable pulled), then clock at 90 BPM
    for t in pulses(90, 30, t0=ts[-1] + 2.0):
        clock.pulse(t)
    assert clock.bpm == pytest.approx(90, rel=0.01)


@pytest.mark.jack
def test_external_clock_over_jack_within_one_percent(jack_server):
    """A JACK client sends MIDI clock at 120 BPM; the poller feeds the ExternalClock."""
    import rtmidi

    from engine.live.midi.input import InputPoller
    from engine.live.midi.ports import PortSpec

    name = f"clock in {uuid.uuid4().hex[:6]}"
    clock = ExternalClock(fallback_bpm=90)
    poller = InputPoller(PortSpec(name, api="jack"), clock_sink=clock.handle_message)
    poller.open()
    poller.start()
    sender = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="daw")
    try:
        names = sender.get_ports()
        sender.open_port([i for i, n in enumerate(names) if n.endswith(name)][0])
        period = 60.0 / (120 * 24)
        sender.send_message([0xFA])
        t0 = time.perf_counter() + 0.01
        for i in range(24 * 6):  # six beats, three seconds
            due = t0 + i * period
            while time.perf_counter() < due - 0.001:
                time.sleep(0.0005)
            while time.perf_counter() < due:
                pass
            sender.send_message([0xF8])
        time.sleep(0.05)
        sender.send_message([0xFC])
        # every message handled before the poller stops: Start, the pulses, Stop (the poller may run behind
        # on a loaded machine; stopping it early would lose the tail, not measure the transport)
        delivered = wait_until(lambda: poller.stats.clock == 24 * 6 + 2, 5.0)
    finally:
        poller.stop()
        sender.close_port()
    assert poller.error is None
    assert delivered, f"{poller.stats} after {24 * 6 + 2} clock messages sent"
    assert clock.pulses_received == 24 * 6
    assert not clock.running
    assert clock.bpm == pytest.approx(120, rel=0.01)
