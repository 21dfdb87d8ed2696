"""The model thread with a real model session and token stream, a fake clock and a recording scheduler:
prefill of the player's events, answers into the scheduler, lookahead, cut-in rollback, rebase."""

from __future__ import annotations

import time

import pytest

from engine.live.clock import Meter
from engine.live.modes.call_response import Cut, Generator, Prepare, Respond, answer_mask, kept_tokens
from engine.live.part import Configure, PartConfig, PlayerEvent, Rebase
from engine.model.grammar import GrammarState
from engine.model.modelfile import load_model
from engine.model.sampler import Constraints
from engine.model.session import ModelSession
from engine.music.tokens import StreamDecoder, StreamEncoder
from engine.music.tokens import Meter as TokenMeter
from engine.music.vocab import DEFAULT_VOCAB as V
from plumbing_model import plumbing_model

SPT = 0.005  # seconds per tick of the fake clock (125 BPM)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(plumbing_model(tmp_path_factory.mktemp("model")), V)


class FakeClock:
    """Ticks move only when the test says so; time_at is linear."""

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


@pytest.fixture
def rig(loaded):
    session = ModelSession(loaded, device="cpu", warmup=False)
    clock = FakeClock()
    sched = RecordingScheduler()
    config = PartConfig(channel=2, seed=7, low=48, high=84, key_pitch_classes=frozenset({0, 2, 4, 5, 7, 9, 11}),
                             max_polyphony=3, lookahead_beats=1000)
    gen = Generator(session, V, clock, sched, config)
    gen.start()
    yield gen, session, clock, sched
    gen.stop()


def settle(gen: Generator, timeout: float = 10.0) -> None:
    """Wait until the generator has handled its inbox and finished generating."""
    deadline = time.monotonic() + timeout
    assert gen.sync(timeout)
    while gen.busy and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not gen.busy and gen.sync(timeout), "the generator did not settle"


PHRASE = [(2, (0x90, 60, 90)), (14, (0x80, 60, 0)), (14, (0x90, 64, 70)), (26, (0x80, 64, 0)),
          (27, (0x90, 67, 110)), (40, (0xB0, 64, 127)), (44, (0x80, 67, 0)), (50, (0xB0, 64, 0))]


def play(gen: Generator, events=PHRASE, offset: float = 0.0) -> None:
    for tick, data in events:
        gen.submit(PlayerEvent(tick + offset, data))


def test_the_players_events_are_prefilled_as_the_offline_encoder_writes_them(rig):
    gen, session, clock, sched = rig
    play(gen)
    settle(gen)
    enc = StreamEncoder(V)
    expected = enc.begin(gen.config.style)
    for tick, data in PHRASE:
        expected += enc.message(tick, data, 0)
    assert session.history == expected
    assert gen.stats.player_events == len(PHRASE)
    assert sched.events == []


def notes_by_pitch(events):
    """[(on_due, off_due, pitch, velocity)] of scheduled events, pairing each on with the next off."""
    open_: dict[int, tuple[float, int]] = {}
    out = []
    for due, data, _ in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90)):
        kind, pitch = data[0] & 0xF0, data[1]
        if kind == 0x90 and data[2] > 0:
            assert pitch not in open_, f"note {pitch} struck while sounding"
            open_[pitch] = (due, data[2])
        else:
            on_due, vel = open_.pop(pitch)
            out.append((on_due, due, pitch, vel))
    assert open_ == {}, f"notes left open: {open_}"
    return out


def test_an_answer_is_scheduled_on_the_grid_within_its_window_and_constraints(rig):
    gen, session, clock, sched = rig
    play(gen)
    gen.submit(Respond(1, 96, 96 + 2 * 96, time.perf_counter()))
    settle(gen)
    assert gen.stats.responses == 1 and gen.stats.ready_ms
    assert sched.events and {tag for _, _, tag in sched.events} == {"r1"}
    assert all(data[0] & 0x0F == 2 for _, data, _ in sched.events)
    notes = notes_by_pitch(sched.events)
    assert notes, "no notes in the answer"
    for on_due, off_due, pitch, vel in notes:
        on_tick, off_tick = (on_due - 1000.0) / SPT, (off_due - 1000.0) / SPT
        assert abs(on_tick - round(on_tick)) < 1e-6 and abs(off_tick - round(off_tick)) < 1e-6
        on_tick, off_tick = round(on_tick), round(off_tick)
        assert 96 <= on_tick < 288
        assert on_tick < off_tick <= 288
        assert 48 <= pitch <= 84 and pitch % 12 in (0, 2, 4, 5, 7, 9, 11) and 1 <= vel <= 127
    # the stream: the answer's tokens decode (as role 1) to exactly the notes scheduled
    dec = StreamDecoder(V)
    decoded = [e for e in dec.feed_all(session.history) if e.role == 1]
    assert len(decoded) == 2 * len(notes)
    assert all(96 <= e.tick <= 288 for e in decoded)
    polyphony, sounding = 0, set()
    for e in decoded:
        (sounding.add if e.on else sounding.discard)(e.pitch)
        polyphony = max(polyphony, len(sounding))
    assert polyphony <= 3
    assert V.turn in session.history and session.history[-1] != V.turn


def test_cut_in_rolls_back_what_was_not_played_and_closes_the_rest(rig):
    gen, session, clock, sched = rig
    play(gen)
    gen.submit(Respond(1, 96, 96 + 4 * 96, time.perf_counter()))
    settle(gen)
    answer = gen._answer
    start_pos = answer.start_pos
    all_tokens = list(answer.tokens)
    cut_tick = 96 + 150
    gen.submit(Cut(1, cut_tick))
    gen.submit(PlayerEvent(cut_tick, (0x90, 72, 100)))
    settle(gen)
    assert sched.cuts == ["r1"] and gen.stats.cut_ins == 1
    keep = kept_tokens(answer.tokens, answer.ticks, cut_tick, V)  # up to the cut, less note-ons at the cut tick
    assert keep == sum(1 for t in answer.ticks if t <= cut_tick) - sum(
        1 for tok, t in zip(answer.tokens, answer.ticks) if t == cut_tick and (V.is_note_on(tok) or V.is_role(tok) or V.is_velocity(tok)))
    assert 0 < keep < len(all_tokens) and gen.stats.rolled_back_tokens == len(all_tokens) - keep
    history = session.history
    n_before = len(history) - (session.position - start_pos)
    assert history[n_before:n_before + keep] == all_tokens[:keep]  # the played part stays in the cache
    tail = history[n_before + keep:]
    # then: the answer's sounding notes end, TURN, and the player's note (role 0)
    dec = StreamDecoder(V)
    events = dec.feed_all(history)
    assert not any(r == 1 for r, _ in dec.sounding), "an answer note is left sounding in the stream"
    assert V.turn in tail and tail[-1] == V.note_on(72)
    last = [e for e in events if e.role == 0][-1]
    assert last.on and last.pitch == 72 and last.tick == cut_tick
    assert all(e.tick <= cut_tick for e in events if e.role == 1)
    # the encoder and grammar follow the rolled-back stream: the next answer is well formed
    gen.submit(PlayerEvent(cut_tick + 10, (0x80, 72, 0)))
    gen.submit(Respond(2, 480, 576, time.perf_counter()))
    settle(gen)
    notes_by_pitch([e for e in sched.events if e[2] == "r2"])
    dec2 = StreamDecoder(V)
    dec2.feed_all(session.history)
    assert dec2.invalid == 0


def test_generation_stays_within_the_lookahead(rig):
    gen, session, clock, sched = rig
    gen.submit(Configure(PartConfig(seed=3, lookahead_beats=2)))  # 48 ticks
    play(gen)
    clock.now = 60
    gen.submit(Respond(1, 96, 96 + 8 * 96, time.perf_counter()))
    assert gen.sync()
    time.sleep(0.5)
    assert gen.busy
    # the first bar is free, then 2 beats ahead of the clock, plus at most one shift (up to the bar line)
    assert gen._decoder.position <= 2 * 96
    clock.now = 96 + 8 * 96
    settle(gen)
    assert gen._decoder.position == 96 + 8 * 96


def test_rebase_keeps_the_stream_moving_forward_on_the_bar_grid(rig):
    gen, session, clock, sched = rig
    play(gen, offset=1000)
    settle(gen)
    position = gen._encoder.position
    gen.submit(Rebase(0))  # MIDI Start: the clock is back at tick 0
    gen.submit(PlayerEvent(5, (0x90, 62, 80)))
    settle(gen)
    assert gen._offset % 96 == 0 and gen._offset >= position
    assert gen._encoder.position == 5 + gen._offset
    events = StreamDecoder(V).feed_all(session.history)
    assert events[-1].pitch == 62 and events[-1].on


def test_answer_mask_excludes_turn_eos_and_shifts_past_the_end():
    grammar = GrammarState(V, TokenMeter(4, 4), allow_eos=False)
    enc = StreamEncoder(V)
    tokens = enc.begin() + enc.note_on(0, 60, 80) + enc.note_off(10, 60) + enc.advance_to(96) + enc.turn()
    tokens += [V.role(1)]
    grammar.feed_all(tokens)
    mask = answer_mask(grammar, Constraints(None, 50, 70, 2), remaining_ticks=5, last_token=V.role(1))
    assert not mask[V.turn] and not mask[V.eos] and not mask[V.bos]
    assert mask[V.shift(5)] and not mask[V.shift(6)]
    assert mask[V.note_on(60)] and not mask[V.note_on(49)] and not mask[V.note_on(71)]
    after_vel = answer_mask(grammar, Constraints(None, 50, 70, 2), 5, last_token=V.velocity(3))
    assert not after_vel[V.vel_base:V.shift_base].any()


def test_a_cut_before_the_answer_starts_takes_it_all_back(rig):
    gen, session, clock, sched = rig
    play(gen)
    gen.submit(Respond(1, 96, 96 + 2 * 96, time.perf_counter()))
    settle(gen)
    gen.submit(Cut(1, 80))  # the player went on before the answer's first bar line
    gen.submit(PlayerEvent(80, (0x90, 65, 90)))
    settle(gen)
    enc = StreamEncoder(V)
    expected = enc.begin(gen.config.style)
    for tick, data in PHRASE + [(80, (0x90, 65, 90))]:
        expected += enc.message(tick, data, 0)
    assert session.history == expected  # no TURN, no answer: the phrase simply goes on
    assert sched.cuts == ["r1"]


def test_a_prepared_answer_plays_at_once_when_asked_for(rig):
    gen, session, clock, sched = rig
    play(gen)
    gen.submit(Prepare(96, 96 + 2 * 96))  # the player let go; the silence may end the phrase
    settle(gen)
    assert sched.events == [] and gen.stats.prepared == 1  # generated up to its first note, held
    assert gen._answer.speculative and gen._answer.held
    held_first = gen._answer.held[0]
    decided = time.perf_counter()
    gen.submit(Respond(1, 96, 96 + 2 * 96, decided))
    assert gen.sync()
    assert gen.stats.prepared_used == 1 and gen.stats.ready_ms
    assert sched.events[0][0] == pytest.approx(1000.0 + held_first[0] * SPT)
    settle(gen)
    notes_by_pitch(sched.events)  # every note closed


def test_a_prepared_answer_goes_back_when_the_player_goes_on(rig):
    gen, session, clock, sched = rig
    play(gen)
    gen.submit(Prepare(96, 96 + 2 * 96))
    settle(gen)
    gen.submit(PlayerEvent(70, (0x90, 65, 90)))  # not silent after all
    gen.submit(Respond(1, 192, 288, time.perf_counter()))  # a later phrase end, another window
    settle(gen)
    gen.submit(Prepare(384, 480))
    settle(gen)
    gen.submit(PlayerEvent(300, (0x80, 65, 0)))
    settle(gen)
    assert gen.stats.prepared == 2 and gen.stats.prepared_used == 0
    assert sched.cuts == [] and gen.stats.cut_ins == 0
    enc = StreamEncoder(V)
    expected = enc.begin(gen.config.style)
    for tick, data in PHRASE + [(70, (0x90, 65, 90))]:
        expected += enc.message(tick, data, 0)
    history = session.history
    assert history[:len(expected)] == expected  # no trace of the prepared answer before the note
    dec = StreamDecoder(V)
    events = dec.feed_all(history)
    assert events[-1].role == 0 and not events[-1].on and events[-1].pitch == 65
    assert dec.bars.count(192) == 1 and V.turn in history  # the answer asked for (192..288) is in the stream


def test_a_prepared_answer_reaches_its_first_note_whatever_the_clock(rig):
    """Held, never scheduled, a prepared answer is not paced by the clock: it must be ready at the
    decision even if the model opens it with a rest longer than the lookahead (here: a stopped clock,
    which paces a real answer to a halt)."""
    gen, session, clock, sched = rig
    gen.submit(Configure(PartConfig(seed=3, lookahead_beats=1)))
    play(gen)
    clock.running = False
    gen.submit(Prepare(96, 96 + 2 * 96))
    settle(gen)
    assert gen._answer.speculative and gen._answer.first_note and gen._answer.held
    assert sched.events == []
    clock.running = True
    gen.submit(Respond(1, 96, 96 + 2 * 96, time.perf_counter()))
    assert gen.sync()
    assert gen.stats.ready_detail[-1][1] == "prepared" and sched.events
