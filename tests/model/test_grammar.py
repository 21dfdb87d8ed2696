"""Grammar masks: everything the encoder writes is allowed, and streams sampled under the mask decode
cleanly (no orphan note-offs, no other roles, bar lines exactly on the meter's grid)."""

from __future__ import annotations

import random

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model.grammar import GrammarState, apply_mask, grammar_mask, violations
from engine.music.tokens import Meter, NoteEvent, StreamDecoder, StreamEncoder, canonical_order, encode_events
from engine.music.vocab import DEFAULT_VOCAB as V, TASKS

BAR_TICKS = Meter().bar_ticks(V.config.ticks_per_beat)


def state_after(tokens, meter=Meter()):
    s = GrammarState(V, meter)
    s.feed_all(tokens)
    return s


def never_allowed_mid_stream(mask):
    bad = [V.pad, V.bos] + [V.task(t) for t in TASKS] + [V.style(s) for s in V.config.styles]
    return not mask[bad].any()


@st.composite
def note_events(draw, role=1):
    n = draw(st.integers(1, 30))
    events, t = [], 0.0
    for _ in range(n):
        t += draw(st.sampled_from([0, 0, 3, 6, 12, 24, 40, 96, 130]))
        pitch = draw(st.integers(40, 90))
        dur = draw(st.sampled_from([1, 6, 12, 24, 100]))
        vel = draw(st.integers(1, 127))
        events += [NoteEvent(t, True, pitch, vel, role), NoteEvent(t + dur, False, pitch, 0, role)]
    return canonical_order(events)


@settings(max_examples=60, deadline=None)
@given(note_events())
def test_everything_the_encoder_writes_is_allowed(events):
    tokens = encode_events(events, V)
    begin, body = tokens[:3], tokens[3:]
    assert violations(body, V, role=1, state=state_after(begin)) == []


def test_bar_line_rules():
    s = state_after([V.bos, V.task("CONTINUE"), V.style("none"), V.bar])
    m = grammar_mask(s, 0)
    assert m[V.shift(BAR_TICKS)] and not m[V.shift(BAR_TICKS)] is False
    s.feed(V.shift(90))
    m = grammar_mask(s, 0)
    assert m[V.shift(6)] and not m[V.shift(7)]  # no shift passes the bar line at 96
    s.feed(V.shift(6))
    m = grammar_mask(s, 0)
    assert m.sum() == 1 and m[V.bar]  # on the bar line: only BAR
    s.feed(V.bar)
    assert grammar_mask(s, 0)[V.shift(96)]


def test_meter_sets_bar_length():
    s = state_after([V.bar], Meter(3, 4))
    assert s.shift_limit() == 72
    s.set_meter(Meter(6, 8))
    assert s.shift_limit() == 72


def test_note_rules_per_role():
    s = state_after([V.bar, V.role(1), V.velocity(3), V.note_on(60)])
    m = grammar_mask(s, 1)
    assert not m[V.note_off(60)]  # same tick as its note-on: a note lasts at least one tick
    assert not m[V.note_on(60)] and not m[V.velocity(3)] and m[V.velocity(4)]
    assert not m[V.note_off(61)]
    s.feed(V.shift(1))
    assert grammar_mask(s, 1)[V.note_off(60)]
    s.feed(V.role(0))  # the player takes over; the sideman's note keeps sounding
    m = grammar_mask(s, 1)
    assert m[V.role(1)] and not m[V.role(0)] and not m[V.role(2)]
    assert not m[V.note_off(60)] and not m[V.note_on(62)] and not m[V.velocity(4)]
    assert m[V.shift(1)] and m[V.turn]
    assert never_allowed_mid_stream(m) and never_allowed_mid_stream(grammar_mask(state_after([V.bar]), 1))


def test_apply_mask():
    logits = torch.zeros(V.size)
    mask = grammar_mask(state_after([V.bar]), 1)
    out = apply_mask(logits, mask)
    assert torch.isinf(out[~mask]).all() and (out[mask] == 0).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 3), st.sampled_from([Meter(4, 4), Meter(3, 4), Meter(7, 8)]))
def test_random_walks_under_the_mask_decode_cleanly(seed, role, meter):
    rng = random.Random(seed)
    prompt = [V.bos, V.task("CONTINUE"), V.style("none"), V.bar]
    s = state_after(prompt, meter)
    dec = StreamDecoder(V)
    dec.feed_all(prompt)
    bar = meter.bar_ticks(V.config.ticks_per_beat)
    for _ in range(300):
        mask = grammar_mask(s, role)
        assert mask.any() and never_allowed_mid_stream(mask)
        allowed = mask.nonzero().flatten().tolist()
        t = rng.choice(allowed)
        s.feed(t)
        for e in dec.feed(t):
            assert e.role == role
    assert dec.invalid == 0
    assert all(b % bar == 0 for b in dec.bars)  # bar lines exactly on the meter's grid
    assert dec.bars == sorted(set(dec.bars))  # one BAR per bar line


@settings(max_examples=40, deadline=None)
@given(note_events(), st.integers(0, 200))
def test_copies_are_independent_and_equal_to_deep_copies(events, cut):
    """The revision path's cheap copies (encoder, decoder, grammar) follow the stream as a deepcopy does,
    and feeding a copy leaves the original as it was."""
    import copy

    enc = StreamEncoder(V)
    tokens = encode_events(events, V)
    cut = min(cut, len(tokens))
    state = state_after(tokens[:cut])
    for e in events[: len(events) // 2]:
        (enc.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else enc.note_off(e.tick, e.pitch, e.role))
    cheap, deep = state.copy(), copy.deepcopy(state)
    cheap_enc, deep_enc = enc.copy(), copy.deepcopy(enc)
    enc_before = (enc.position, dict(enc.depth), dict(enc.on_tick), enc.role, enc.vel_bin)
    before = (state.position, sorted(state.sounding), dict(state.on_tick), list(state.decoder.bars))
    for t in tokens[cut:]:
        cheap.feed(t)
        deep.feed(t)
        assert torch.equal(grammar_mask(cheap, 1), grammar_mask(deep, 1))
    assert (cheap.position, sorted(cheap.sounding), cheap.on_tick) == (deep.position, sorted(deep.sounding), deep.on_tick)
    assert (state.position, sorted(state.sounding), dict(state.on_tick), list(state.decoder.bars)) == before
    for e in events[len(events) // 2:]:
        a = cheap_enc.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else cheap_enc.note_off(e.tick, e.pitch, e.role)
        b = deep_enc.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else deep_enc.note_off(e.tick, e.pitch, e.role)
        assert a == b
    assert (enc.position, dict(enc.depth), dict(enc.on_tick), enc.role, enc.vel_bin) == enc_before


def test_the_players_voices_are_counted_per_phrase_and_kept_through_the_turn_before_an_answer():
    """The call-and-response texture rule reads `player_voices`: a chordal phrase has 3, the next
    one-voice phrase (after the answer) has 1, and the TURN before an answer forgets nothing."""
    enc = StreamEncoder(V)
    toks = enc.begin()
    for p in (60, 64, 67):  # a three-note chord for a beat
        toks += enc.note_on(0, p, 80)
    for p in (60, 64, 67):
        toks += enc.note_off(24, p)
    toks += enc.advance_to(BAR_TICKS) + enc.turn()
    state = state_after(toks)
    assert state.player_voices == 3  # the turn before the answer keeps the phrase's count
    toks += enc.note_on(BAR_TICKS, 48, 70, role=1) + enc.note_off(BAR_TICKS + 24, 48, role=1)
    toks += enc.advance_to(2 * BAR_TICKS) + enc.turn()
    for i, p in enumerate((62, 64, 66, 67)):  # the next phrase: one legato voice, each key lifted late
        toks += enc.note_on(2 * BAR_TICKS + 12 * i, p, 80)
        if i:
            toks += enc.note_off(2 * BAR_TICKS + 12 * i + 2, (62, 64, 66, 67)[i - 1])
    toks += enc.note_off(2 * BAR_TICKS + 60, 67)
    state = state_after(toks)
    assert state.player_voices == 1
    copy = state.copy()
    copy.feed_all(enc.note_on(2 * BAR_TICKS + 60, 50, 80) + enc.note_on(2 * BAR_TICKS + 60, 53, 80)
                  + enc.advance_to(2 * BAR_TICKS + 72))
    assert copy.player_voices == 2 and state.player_voices == 1
