"""The call-and-response state machine, driven with explicit ticks (a fake clock): phrase ends, answer
start and length, cut-in, cancel."""

from __future__ import annotations

import pytest

from engine.live.clock import Meter
from engine.live.conversation import (
    LISTENING,
    RESPONDING,
    WAITING,
    Conversation,
    ConversationConfig,
    CutIn,
    ExpectResponse,
    ResponseDone,
    StartResponse,
)
from engine.live.phrase import PhraseConfig
from engine.presets import PRESET_DIR, load_preset

BAR = 96
BEAT = 24


def on(p, v=100, ch=0):
    return (0x90 | ch, p, v)


def off(p, ch=0):
    return (0x80 | ch, p, 0)


def play(conv: Conversation, notes, start: float = 0.0, length: float = 12):
    """Notes one after another from `start`, each `length` ticks; returns the actions and the end tick."""
    actions = []
    t = start
    for p in notes:
        actions += conv.player(t, on(p))
        actions += conv.player(t + length, off(p))
        t += length
    return actions, t


def run_until(conv: Conversation, start: float, stop: float, step: float = 0.5):
    actions = []
    t = start
    while t <= stop:
        actions += [(t, a) for a in conv.poll(t)]
        t += step
    return actions


def test_silence_ends_the_phrase_and_the_answer_starts_on_the_next_bar():
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=2), Meter(4, 4), "bar", 4, min_lead_ticks=1))
    actions, end = play(conv, [60, 62, 64, 65], start=10)
    assert conv.state == LISTENING
    # each release announces the answer that comes if the silence lasts; the last one is right
    assert [type(a) for a in actions] == [ExpectResponse] * 4
    expected = actions[-1]
    assert run_until(conv, end, end + 2 * BEAT - 1) == []  # not silent long enough yet
    got = run_until(conv, end + 2 * BEAT - 0.5, end + 2 * BEAT + 1)
    assert len(got) == 1
    t, start = got[0]
    assert isinstance(start, StartResponse)
    assert start.phrase.reason == "silence" and start.phrase.start_tick == 10 and start.phrase.end_tick == end
    assert start.start_tick == 2 * BAR  # the decision at tick 106 -> the bar line at 192
    assert start.end_tick == start.start_tick + 4 * BAR
    assert (expected.decided_tick, expected.start_tick, expected.end_tick) == (
        start.decided_tick, start.start_tick, start.end_tick)
    assert conv.state == WAITING
    assert run_until(conv, t + 1, start.start_tick) == [] and conv.state == RESPONDING
    done = run_until(conv, start.start_tick + 1, start.end_tick + 1)
    assert [type(a) for _, a in done] == [ResponseDone] and done[0][0] == start.end_tick
    assert conv.state == LISTENING


def test_beat_start_keeps_a_lead_and_match_length_rounds_up():
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=1), Meter(4, 4), "beat", None, min_lead_ticks=3))
    actions, _ = play(conv, [60, 61, 62], start=0, length=20)  # 60 ticks: 2.5 beats
    (t, start), = run_until(conv, 60, 60 + BEAT + 1)
    assert (actions[-1].start_tick, actions[-1].end_tick) == (start.start_tick, start.end_tick)
    assert start.start_tick == 4 * BEAT  # the decision at tick 84 plus 3 ticks of lead -> beat 4 (tick 96)
    assert start.end_tick - start.start_tick == 3 * BEAT  # 60 ticks rounded up to whole beats


def test_decision_right_before_a_bar_line_waits_for_the_one_after():
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=1), Meter(4, 4), "bar", 1, min_lead_ticks=2))
    play(conv, [60], start=BAR - BEAT - 13, length=12)  # released at BAR - BEAT - 1
    (t, start), = run_until(conv, 0, 2 * BAR)
    assert t == BAR - 1 and start.start_tick == 2 * BAR  # one tick of lead is not enough: next bar


def test_end_cc_and_max_bars_end_a_phrase():
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=8, end_cc=67, max_bars=2), Meter(3, 4), "bar", 2))
    conv.player(0, on(60))
    (action,) = conv.player(30, (0xB0, 67, 127))
    assert isinstance(action, StartResponse) and action.phrase.reason == "cc"
    assert action.start_tick == 72 and action.end_tick == 72 + 2 * 72  # 3/4: bars of 72 ticks
    conv2 = Conversation(ConversationConfig(PhraseConfig(silence_beats=8, max_bars=2), Meter(4, 4), "bar", 1))
    conv2.player(0, on(60))  # held down
    got = run_until(conv2, 0, 2 * BAR + 1)
    assert [a.phrase.reason for _, a in got] == ["max_length"]
    assert conv2.player(2 * BAR + 10, off(60)) == []  # releasing the held key is no cut-in


@pytest.mark.parametrize("when", ["waiting", "responding"])
def test_a_note_on_during_an_answer_cuts_in_and_starts_a_new_phrase(when):
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=1), Meter(4, 4), "bar", 2))
    play(conv, [60, 62])
    (t, start), = run_until(conv, 24, 60)
    cut_tick = start.start_tick - 5 if when == "waiting" else start.start_tick + 30
    run_until(conv, t + 1, cut_tick - 1)
    assert conv.state == (WAITING if when == "waiting" else RESPONDING)
    actions = conv.player(cut_tick, on(67))
    assert actions == [CutIn(start.id, cut_tick)] and conv.state == LISTENING and conv.cut_ins == 1
    assert conv.player(cut_tick + 2, off(60)) == []  # note-offs and controllers never cut in
    conv.player(cut_tick + 10, off(67))
    (t2, again), = run_until(conv, cut_tick + 11, cut_tick + 11 + BAR)
    assert again.id == start.id + 1 and again.phrase.start_tick == cut_tick


def test_note_offs_and_pedal_during_an_answer_do_not_cut_in():
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=1), Meter(4, 4), "bar", 2))
    play(conv, [60])
    (t, start), = run_until(conv, 12, BAR)
    assert conv.player(start.start_tick + 1, (0xB0, 64, 127)) == []
    assert conv.player(start.start_tick + 2, (0xB0, 64, 0)) == []
    assert conv.player(start.start_tick + 3, on(60, v=0)) == []  # velocity-0 note-on is a note-off
    assert conv.state in (WAITING, RESPONDING)


def test_cancel_ends_the_answer_and_length_changes_apply_to_the_next():
    conv = Conversation(ConversationConfig(PhraseConfig(silence_beats=1), Meter(4, 4), "bar", 2))
    assert conv.cancel(0) is None
    play(conv, [60])
    (t, start), = run_until(conv, 12, BAR)
    assert conv.cancel(t + 1) == CutIn(start.id, t + 1) and conv.state == LISTENING
    conv.set_length_bars(3)
    play(conv, [62], start=t + 10)
    (_, again), = run_until(conv, t + 22, t + 22 + 2 * BAR)
    assert again.end_tick - again.start_tick == 3 * BAR


@pytest.mark.parametrize("name", ["default", "daw-sync", "free-tempo"])
def test_config_from_the_shipped_presets(name):
    preset = load_preset(PRESET_DIR / f"{name}.toml")
    config = ConversationConfig.from_preset(preset, min_lead_ticks=2)
    assert config.phrase.silence_beats == preset.phrase.silence_beats
    assert config.phrase.end_cc == preset.phrase.end_cc
    assert config.start == preset.response.start and config.length_bars == preset.response.length_bars
    assert (config.meter.numerator, config.meter.denominator) == preset.clock.meter


def test_bad_config_is_refused():
    with pytest.raises(ValueError):
        ConversationConfig(start="phrase")
    with pytest.raises(ValueError):
        ConversationConfig(length_bars=0)
