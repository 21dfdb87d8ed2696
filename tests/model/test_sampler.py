"""Sampler: seeded determinism, top-k/top-p, and musical constraints never violated (property tests);
generation and beam search over a real session."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.model.grammar import GrammarState, grammar_mask, violations
from engine.model.modelfile import load_model
from engine.model.sampler import Constraints, Sampler, SamplingConfig, allowed_mask, beam_search, generate, parse_key
from engine.model.session import ModelSession
from engine.music.tokens import Meter
from engine.train.export import export_model
from engine.train.model import ModelConfig, TransformerLM
from engine.music.vocab import DEFAULT_VOCAB as V

PROMPT = [V.bos, V.task("CONTINUE"), V.style("none"), V.bar]


def test_parse_key():
    assert parse_key("D minor") == {2, 4, 5, 7, 9, 10, 0}
    assert parse_key("C") == {0, 2, 4, 5, 7, 9, 11}
    assert parse_key("F# dorian") == {6, 8, 9, 11, 1, 3, 4}
    assert parse_key("Bb  major pentatonic") == {10, 0, 2, 5, 7}
    with pytest.raises(ValueError, match="known scales"):
        parse_key("D minr")
    with pytest.raises(ValueError, match="tonic"):
        parse_key("H major")


def test_seeded_determinism():
    logits = torch.randn(V.size, generator=torch.Generator().manual_seed(0))
    draw = lambda seed: [Sampler(SamplingConfig(seed=seed)).sample(logits) for _ in range(1)]  # noqa: E731
    a = Sampler(SamplingConfig(temperature=1.2, top_p=0.9, seed=7))
    b = Sampler(SamplingConfig(temperature=1.2, top_p=0.9, seed=7))
    assert [a.sample(logits) for _ in range(50)] == [b.sample(logits) for _ in range(50)]
    assert len({tuple(draw(s)) for s in range(20)}) > 1  # different seeds differ


def test_draws_follow_the_distribution():
    """20,000 seeded draws over four allowed tokens land in proportion to their probabilities (each
    share within 0.015 of it: ~4.5 standard deviations), and never on a masked or zero-probability one."""
    target = torch.tensor([0.5, 0.25, 0.15, 0.1])
    logits = torch.full((V.size,), 3.0)  # the masked tokens would dominate if the mask were ignored
    allowed = [7, 100, 200, 381]  # the last token too: the end of the cumulative sum
    logits[allowed] = target.log()
    mask = torch.zeros(V.size, dtype=torch.bool)
    mask[allowed] = True
    s = Sampler(SamplingConfig(seed=11))
    draws = [s.sample(logits, mask) for _ in range(20_000)]
    assert set(draws) <= set(allowed)
    for tok, p in zip(allowed, target.tolist()):
        assert abs(draws.count(tok) / len(draws) - p) < 0.015, (tok, draws.count(tok) / len(draws), p)


def test_greedy_takes_the_best_allowed():
    logits = torch.arange(V.size, dtype=torch.float32)
    mask = torch.zeros(V.size, dtype=torch.bool)
    mask[[3, 10, 20]] = True
    assert Sampler(SamplingConfig(temperature=0)).sample(logits, mask) == 20


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 20), st.floats(0.05, 1.0))
def test_top_k_and_top_p(seed, k, p):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(V.size, generator=g) * 3
    s = Sampler(SamplingConfig(top_k=k, top_p=p, seed=seed))
    probs = s.probabilities(logits)
    support = probs.nonzero().flatten()
    assert len(support) <= k
    assert set(support.tolist()) <= set(torch.topk(logits, k).indices.tolist())
    assert abs(probs.sum().item() - 1) < 1e-5
    for _ in range(10):
        assert s.sample(logits) in support.tolist()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), key=st.sampled_from([None, "D minor", "C major", "F# blues"]),
       low=st.integers(30, 60), span=st.integers(0, 40), poly=st.integers(0, 3),
       temperature=st.sampled_from([0.0, 0.7, 1.0, 2.0]), top_k=st.sampled_from([0, 5, 50]),
       top_p=st.sampled_from([1.0, 0.9, 0.5]), role=st.integers(0, 2))
def test_sampled_streams_never_violate_masks(seed, key, low, span, poly, temperature, top_k, top_p, role):
    cons = Constraints.parse(key, low, min(127, low + span), poly)
    sampler = Sampler(SamplingConfig(temperature, top_k, top_p, seed))
    g = torch.Generator().manual_seed(seed)
    state = GrammarState(V, Meter(3, 4))
    state.feed_all(PROMPT)
    pcs = parse_key(key) if key else set(range(12))
    generated = []
    for _ in range(150):
        logits = torch.randn(V.size, generator=g) * 4
        logits[V.note_on_base:V.note_off_base] += 2  # push towards note-ons to stress the constraints
        token = sampler.sample(logits, allowed_mask(state, role, cons))
        if V.is_note_on(token):
            pitch = V.pitch_of(token)
            assert pitch % 12 in pcs and cons.low <= pitch <= cons.high
            assert not poly or len(state.sounding_pitches(role)) < poly
        generated.append(token)
        state.feed(token)
        assert not poly or len(state.sounding_pitches(role)) <= poly
    start = GrammarState(V, Meter(3, 4))
    start.feed_all(PROMPT)
    assert violations(generated, V, role, state=start) == []


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    torch.manual_seed(0)
    model = TransformerLM(ModelConfig(vocab_size=V.size, d_model=32, n_layers=2, n_heads=2, d_ff=64,
                                      window=32, max_rollback=24)).eval()
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    export_model(model, path)
    return ModelSession(load_model(path), device="cpu", threads=1)


def test_generate_over_a_session(session):
    session.reset()
    session.feed(PROMPT)
    state = GrammarState(V)
    state.feed_all(PROMPT)
    cons = Constraints.parse("D minor", 50, 80, 2)
    tokens = generate(session, state, Sampler(SamplingConfig(seed=3)), 100, role=1, constraints=cons)
    assert session.position == len(PROMPT) + 100 and len(tokens) == 100
    start = GrammarState(V)
    start.feed_all(PROMPT)
    assert violations(tokens, V, 1, state=start) == []


def test_beam_search(session):
    session.reset()
    session.feed(PROMPT)
    state = GrammarState(V)
    state.feed_all(PROMPT)
    greedy_tokens = generate(session, state.copy(), Sampler(SamplingConfig(temperature=0)), 12, role=1)
    session.rollback(len(PROMPT))
    tokens1, _ = beam_search(session, state, 12, role=1, beam_width=1)
    assert tokens1 == greedy_tokens  # width 1 is greedy
    session.rollback(len(PROMPT))
    tokens, score = beam_search(session, state, 12, role=1, beam_width=4)
    assert len(tokens) == 12 and session.position == len(PROMPT) + 12
    assert session.tokens_since(len(PROMPT)) == tokens  # left after the best tokens
    assert violations(tokens, V, 1, state=state) == []

    def logprob(toks):
        session.rollback(len(PROMPT))
        st, total = state.copy(), 0.0
        for t in toks:
            lp = torch.log_softmax(session.logits.masked_fill(~grammar_mask(st, 1), float("-inf")), -1)
            total += lp[t].item()
            session.append(t)
            st.feed(t)
        return total

    assert abs(logprob(tokens) - score) < 1e-3
    assert score >= logprob(greedy_tokens) - 1e-4  # the beam found at least the greedy path's probability


def test_follow_texture_caps_an_answer_at_the_phrase_plus_its_extra_voices():
    from engine.model.sampler import follow_texture

    base = Constraints.parse("D major", 40, 90, max_polyphony=8)
    assert follow_texture(base, 1, 1) == Constraints.parse("D major", 40, 90, max_polyphony=2)
    assert follow_texture(base, 0, 0).max_polyphony == 1  # a phrase of staccato notes is still one voice
    assert follow_texture(base, 4, 1).max_polyphony == 5
    assert follow_texture(Constraints.parse(max_polyphony=3), 4, 1).max_polyphony == 3  # the preset's cap stays
    assert follow_texture(Constraints(), 2, 2).max_polyphony == 4  # unlimited before: the phrase sets it
    assert follow_texture(base, 1, None) is base and follow_texture(None, 1, None) is None
    assert follow_texture(None, 1, 1) == Constraints(max_polyphony=2)


def test_follow_note_length_holds_an_answer_note_no_longer_than_the_phrase_or_its_bars():
    from engine.model.sampler import follow_note_length

    base = Constraints.parse("D major", 40, 90, max_polyphony=2)
    assert follow_note_length(base, 24, 96, 1) == Constraints(base.pitch_classes, 40, 90, 2, max_note_ticks=96)
    assert follow_note_length(base, 200, 96, 1).max_note_ticks == 200  # the phrase held longer: so may the answer
    assert follow_note_length(None, 0, 72, 2) == Constraints(max_note_ticks=144)
    assert follow_note_length(base, 24, 96, None) is base and follow_note_length(None, 24, 96, None) is None


def test_a_note_held_to_max_note_ticks_stops_time_until_it_is_released():
    """A sideman note struck at tick 0 under max_note_ticks 30: at tick 20 no shift past 10 ticks; at tick
    30 its note-off is the only token allowed (a BAR due first comes first); another note sounding shorter
    keeps its own room."""
    c = Constraints(max_note_ticks=30)
    g = GrammarState(V, Meter())
    g.feed_all([V.bos, V.task("CONTINUE"), V.style("none"), V.bar, V.role(1), V.note_on(60), V.shift(20)])
    mask = allowed_mask(g, 1, c)
    assert mask[V.shift(10)] and not mask[V.shift(11)] and not mask[V.shift(96)]
    g.feed_all([V.note_on(64), V.shift(10)])
    mask = allowed_mask(g, 1, c)
    assert mask.nonzero().flatten().tolist() == [V.note_off(60)]  # released now, nothing struck to wait
    g.feed(V.note_off(60))
    mask = allowed_mask(g, 1, c)
    assert mask[V.shift(20)] and not mask[V.shift(21)]  # the note struck at 20 may sound 20 more ticks
    g.feed_all([V.shift(20), V.note_on(67), V.shift(46)])  # at the bar line, 64 held 66 ticks
    assert allowed_mask(g, 1, c).nonzero().flatten().tolist() == [V.bar]  # the grammar's BAR first ...
    g.feed(V.bar)
    assert allowed_mask(g, 1, c).nonzero().flatten().tolist() == [V.note_off(64), V.note_off(67)]  # ... then both
    assert allowed_mask(g, 1, Constraints())[V.shift(60)]  # without the rule: up to the bar line


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, V.size - 1), min_size=1, max_size=300), st.integers(1, 120), st.integers(0, 10**6))
def test_sampled_notes_are_never_held_longer_than_max_note_ticks(prefs, limit, seed):
    """Whatever the logits prefer (here: random tokens boosted, shifts always strongly), no sideman note
    outlasts the limit, and some token is always allowed."""
    c = Constraints(max_note_ticks=limit)
    st_ = GrammarState(V, Meter())
    st_.feed_all(PROMPT + [V.role(1)])
    s = Sampler(SamplingConfig(seed=seed))
    started: dict[int, int] = {}
    for pref in prefs:
        logits = torch.zeros(V.size)
        logits[V.shift_base:V.shift_base + V.config.max_shift] = 6.0
        logits[pref] += 8.0
        mask = allowed_mask(st_, 1, c)
        mask[V.turn] = mask[V.eos] = False
        tok = s.sample(logits, mask)
        st_.feed(tok)
        if V.is_note_on(tok):
            started[V.pitch_of(tok)] = st_.position
        elif V.is_note_off(tok):
            started.pop(V.pitch_of(tok))
        assert all(st_.position - t <= limit for t in started.values()), (started, st_.position, limit)


def test_the_players_longest_note_restarts_with_each_phrase():
    st_ = GrammarState(V, Meter())
    st_.feed_all(PROMPT + [V.role(0), V.note_on(60), V.shift(30), V.note_off(60), V.note_on(62), V.shift(10)])
    assert st_.player_longest_note() == 30
    st_.feed_all([V.shift(40)])
    assert st_.player_longest_note() == 50  # a note still held counts as held till now
    st_.feed_all([V.note_off(62), V.turn, V.role(1), V.note_on(50), V.shift(96), V.bar, V.note_off(50)])
    assert st_.player_longest_note() == 50  # the answer's notes are not the player's
    st_.feed_all([V.turn, V.role(0), V.note_on(64), V.shift(5), V.note_off(64)])
    assert st_.player_longest_note() == 5  # a new phrase
