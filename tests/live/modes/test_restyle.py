"""Restyle's model thread with the shipped restyle model, a fake clock and a recording scheduler: the phrase
it hears (played off the grid, a chord's top note, a long phrase in 4-bar pieces), the restyled notes in the
answer's window, one line, every note closed; a prepared answer plays at once when asked for; a cut ends it;
Program Change / CC settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine.live.clock import Meter
from engine.live.modes.restyle import Cut, Play, Prepare, RestylePart, SetRestyle
from engine.live.part import PartConfig, PlayerEvent
from engine.model.modelfile import load_model
from engine.model.restyler import RestyleSettings
from engine.model.session import ModelSession
from engine.music.vocab import DEFAULT_VOCAB as V

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "restyle.pt"
SPT = 0.005
BAR = 96

pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="no restyle model (sideman train --config restyle)")


class FakeClock:
    def __init__(self) -> None:
        self.meter = Meter(4, 4)
        self.running = True
        self.now = 0.0
        self.seconds_per_tick = SPT

    def tick_now(self) -> float:
        return self.now

    def time_at(self, tick: float) -> float:
        return 1000.0 + tick * SPT


class RecordingScheduler:
    def __init__(self) -> None:
        self.events: list[tuple[float, tuple, str]] = []
        self.cuts: list[str] = []

    def schedule(self, due, data, tag=""):
        self.events.append((due, tuple(data), tag))

    def cut(self, tag, wait=1.0):
        self.cuts.append(tag)


@pytest.fixture(scope="module")
def loaded():
    return load_model(MODEL, V)


@pytest.fixture
def rig(loaded):
    session = ModelSession(loaded, device="cpu", warmup=False, threads=1)
    clock, sched = FakeClock(), RecordingScheduler()
    config = PartConfig(channel=1, seed=5, low=36, high=96, lookahead_beats=1000)
    part = RestylePart(session, V, clock, sched, config, RestyleSettings(style="chorale", sampling=config.sampling(),
                                                                         constraints=config.constraints()))
    part.start()
    yield part, clock, sched
    part.stop()


def play(part, notes):
    """(on tick, off tick, pitch) -> PlayerEvents in time order."""
    events = sorted([(on, (0x90, p, 80)) for on, _, p in notes] + [(off, (0x80, p, 0)) for _, off, p in notes],
                    key=lambda e: (e[0], e[1][0] == 0x90))
    for tick, data in events:
        part.submit(PlayerEvent(tick, data))


def settle(part, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    assert part.sync(timeout)
    while part.generating() and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not part.generating() and part.sync(timeout)


def ticks_of(sched, tag):
    return [((due - 1000.0) / SPT, data) for due, data, t in sched.events if t == tag]


# a bar of eighths played off the grid (a little early, a little late), detached, from beat 2 of bar 0
PHRASE = [(26, 34, 62), (35, 44, 66), (47, 55, 69), (61, 68, 74), (71, 80, 73), (83, 90, 71), (95, 103, 69)]


def test_the_phrase_it_hears_is_the_player_s_from_its_bar_line_one_line_on_whole_ticks(rig):
    part, clock, sched = rig
    play(part, PHRASE + [(95, 101, 57)])  # a lower note struck with the last one: the line keeps the top
    assert part.sync(5)
    pieces, first = part.phrase(26, 2 * BAR, 4 * BAR)
    assert first == 0 and [p.bars for p in pieces] == [2]
    assert pieces[0].notes[:, 2].tolist() == [62, 66, 69, 74, 73, 71, 69]
    long_pieces, _ = part.phrase(26, 2 * BAR, 2 * BAR + 6 * BAR)
    assert [p.bars for p in long_pieces] == [4, 2]  # a 6-bar phrase in 4-bar pieces


def test_a_phrase_comes_back_restyled_in_its_window_one_line_every_note_closed(rig):
    part, clock, sched = rig
    play(part, PHRASE)
    clock.now = 110
    part.submit(Play(1, 26, 2 * BAR, 4 * BAR, time.perf_counter()))
    settle(part)
    got = ticks_of(sched, part.tag(1))
    ons = [(t, d) for t, d in got if d[0] & 0xF0 == 0x90]
    assert len(ons) >= 2 and all(d[0] & 0x0F == 1 for _, d in got)
    assert all(2 * BAR <= t <= 4 * BAR for t, _ in got)
    sounding = set()
    for t, d in sorted(got, key=lambda e: (e[0], e[1][0] == 0x90)):
        if d[0] & 0xF0 == 0x90:
            assert not sounding, f"two notes at once at tick {t}"
            sounding.add(d[1])
        else:
            sounding.discard(d[1])
    assert not sounding
    assert part.stats.answers == 1 and part.stats.ready_ms and part.stats.encode_ms


def test_a_prepared_answer_plays_at_once_when_asked_for_and_a_cut_ends_it(rig):
    part, clock, sched = rig
    play(part, PHRASE)
    part.submit(Prepare(26, 2 * BAR, 4 * BAR))
    assert part.sync(10)
    time.sleep(0.3)
    assert not sched.events  # prepared, held: nothing is scheduled before the phrase end is decided
    part.submit(Play(2, 26, 2 * BAR, 4 * BAR, time.perf_counter()))
    assert part.sync(10)
    assert part.stats.prepared_used == 1 and ticks_of(sched, part.tag(2))
    assert part.stats.ready_detail[0][1] in ("prepared", "preparing")
    part.submit(Cut(2, 2 * BAR + 10))
    settle(part)
    assert part.tag(2) in sched.cuts and part.stats.cut_ins == 1


def test_settings_change_the_style_and_a_new_note_drops_a_prepared_answer(rig):
    part, clock, sched = rig
    part.submit(SetRestyle("medieval", 0.5, "rhythm"))
    play(part, PHRASE)
    part.submit(Prepare(26, 2 * BAR, 4 * BAR))
    part.submit(PlayerEvent(120, (0x90, 64, 80)))  # the player goes on
    assert part.sync(10)
    assert (part.settings.style, part.settings.amount, part.settings.keep) == ("medieval", 0.5, "rhythm")
    assert not part.generating() and not sched.events


def test_while_the_player_is_silent_whole_candidates_are_written_and_the_best_plays(loaded):
    """candidates = 4: a prepared answer writes four whole restyled phrases, each scored as the offline pick
    scores them (`Restyler.score`), holds them all back, and the Play schedules the best one at once."""
    session = ModelSession(loaded, device="cpu", warmup=False, threads=1)
    clock, sched = FakeClock(), RecordingScheduler()
    config = PartConfig(channel=1, seed=5, low=36, high=96, lookahead_beats=1000)
    settings = RestyleSettings(style="fiddle", candidates=4, sampling=config.sampling(),
                               constraints=config.constraints())
    part = RestylePart(session, V, clock, sched, config, settings)
    scored: list[tuple[float, list]] = []
    plain = part.restyler.score

    def recording(melody, decode):
        score = plain(melody, decode)
        scored.append((score, list(part._answer.held)))  # the candidate's notes, as the part holds them
        return score

    part.restyler.score = recording
    part.start()
    try:
        play(part, PHRASE)
        part.submit(Prepare(26, 2 * BAR, 4 * BAR))
        settle(part)  # the four candidates written
        assert part.error is None and len(scored) == 4 and not sched.events, part.error
        assert len({str(notes) for _, notes in scored}) > 1  # four samples, not one four times
        part.submit(Play(3, 26, 2 * BAR, 4 * BAR, time.perf_counter()))
        settle(part)
        got = sorted(ticks_of(sched, part.tag(3)))
        best = max(scored, key=lambda s: s[0])[1]
        sent_on = [(round(t), d[1]) for t, d in got if d[0] & 0xF0 == 0x90]
        assert sent_on == sorted((tick, pitch) for tick, on, pitch, _ in best if on)
        assert all(2 * BAR <= t <= 4 * BAR for t, _ in got)
        ons = sum(1 for _, d in got if d[0] & 0xF0 == 0x90)
        assert ons == sum(1 for _, d in got if d[0] & 0xF0 == 0x80)  # every note closed
        assert list(part.stats.candidates) == [4] and part.stats.ready_detail[0][1] == "prepared"
        assert not part.generating()  # a 2-bar phrase is one piece: nothing more to write
    finally:
        part.stop()


def test_a_long_phrase_plays_its_best_first_piece_then_writes_the_next_one_line_every_note_closed(loaded):
    """A 6-bar phrase with candidates = 3: the first 4-bar piece is the best of three whole ones, the last 2
    bars are written after it, in time; the answer fills both pieces, one line, every note closed."""
    session = ModelSession(loaded, device="cpu", warmup=False, threads=1)
    clock, sched = FakeClock(), RecordingScheduler()
    config = PartConfig(channel=1, seed=7, low=36, high=96, lookahead_beats=1000)
    part = RestylePart(session, V, clock, sched, config,
                       RestyleSettings(style="chorale", candidates=3, sampling=config.sampling(),
                                       constraints=config.constraints()))
    part.start()
    try:
        bars = [[(on + b * BAR, off + b * BAR, p) for on, off, p in PHRASE] for b in range(6)]
        play(part, [n for bar in bars for n in bar])
        part.submit(Prepare(26, 6 * BAR, 12 * BAR))
        settle(part)
        part.submit(Play(4, 26, 6 * BAR, 12 * BAR, time.perf_counter()))
        settle(part)
        got = sorted(ticks_of(sched, part.tag(4)), key=lambda e: (e[0], e[1][0] == 0x90))
        ons = [t for t, d in got if d[0] & 0xF0 == 0x90]
        assert any(t < 10 * BAR for t in ons) and any(t >= 10 * BAR for t in ons)  # both pieces play
        assert all(6 * BAR <= round(t) <= 12 * BAR for t, _ in got), got
        sounding = set()
        for t, d in got:
            if d[0] & 0xF0 == 0x90:
                assert not sounding, f"two notes at once at tick {t}"
                sounding.add(d[1])
            else:
                sounding.discard(d[1])
        assert not sounding and list(part.stats.candidates) == [3]
    finally:
        part.stop()
