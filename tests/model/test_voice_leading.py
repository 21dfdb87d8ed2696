"""The voice-leading mask: the note-ons it forbids are exactly the parallels and crossings that
engine.music.harmony counts, and nothing else."""

from __future__ import annotations

from engine.model.grammar import GrammarState
from engine.model.voice_leading import voice_leading_ons
from engine.music.harmony import crossing_shares, parallels
from engine.music.metrics import Note
from engine.music.tokens import StreamEncoder
from engine.music.vocab import DEFAULT_VOCAB as V

TPB = V.config.ticks_per_beat
ALTO, TENOR, BASS = 1, 2, 3


def state_of(events) -> GrammarState:
    """The grammar after an ACCOMPANY stream of (tick, on, pitch, role) events, in stream order."""
    enc = StreamEncoder(V)
    g = GrammarState(V, allow_eos=False)
    tokens = enc.begin("bach", "ACCOMPANY")
    for tick, on, pitch, role in events:
        tokens += enc.note_on(tick, pitch, 80, role) if on else enc.note_off(tick, pitch, role)
    g.feed_all(tokens)
    return g


def allowed(g: GrammarState, role: int) -> set[int]:
    ok = voice_leading_ons(g, role)
    return {p for p in range(128) if ok[V.note_on(p)]}


def notes_with(events, role, pitch, tick, end):
    """The events' notes (open ones closed at `end`) and the candidate note of `role` at `tick`."""
    out, open_ = [], {}
    for t, on, p, r in events:
        if on:
            open_[(r, p)] = t
        else:
            out.append(Note(open_.pop((r, p)), t, p, 80, r))
    out += [Note(t, end, p, 80, r) for (r, p), t in open_.items()]
    return out + [Note(tick, end, pitch, 80, role)]


# alto and tenor a fifth apart on beat 1, the melody above; on beat 2 the alto steps up a tone
FIFTH_THEN_ALTO_UP = [(0, True, 67, ALTO), (0, True, 60, TENOR), (0, True, 72, 0),
                      (TPB, False, 67, ALTO), (TPB, True, 69, ALTO), (TPB, False, 60, TENOR)]


def test_a_voice_may_not_follow_another_in_parallel_fifths_and_the_metric_agrees():
    g = state_of(FIFTH_THEN_ALTO_UP)
    ok = allowed(g, TENOR)
    assert 62 not in ok  # 67 -> 69 over 60 -> 62: a fifth to a fifth, both up
    assert {58, 59, 60, 61, 63, 64, 65} <= ok  # contrary, oblique, or to another interval
    for pitch in (62, 58, 64):
        count = parallels(notes_with(FIFTH_THEN_ALTO_UP, TENOR, pitch, TPB, 2 * TPB), [0, ALTO, TENOR])
        assert (count > 0) == (pitch not in ok), pitch


def test_parallel_octaves_are_forbidden_in_either_direction_and_a_held_voice_forbids_nothing():
    down = [(0, True, 72, ALTO), (0, True, 60, TENOR), (TPB, False, 72, ALTO), (TPB, True, 71, ALTO),
            (TPB, False, 60, TENOR)]
    ok = allowed(state_of(down), TENOR)
    assert 59 not in ok and 47 not in ok  # every octave of 71 the tenor reaches moving down with the alto
    assert {60, 62, 71} <= ok  # held, or up to it: oblique and contrary motion
    held = [(0, True, 72, ALTO), (0, True, 60, TENOR), (TPB, False, 60, TENOR)]  # the alto holds its 72
    assert {59, 61, 62, 64, 67} <= allowed(state_of(held), TENOR)


def test_no_voice_is_placed_above_a_voice_written_above_it_or_below_one_below():
    events = [(0, True, 72, 0), (0, True, 64, ALTO), (0, True, 48, BASS)]
    ok = allowed(state_of(events), TENOR)
    assert max(ok) == 64 and min(ok) == 48  # a unison with a neighbour is no crossing
    for pitch, crossed in ((66, True), (64, False), (47, True), (55, False)):
        share, _ = crossing_shares(notes_with(events, TENOR, pitch, 0, TPB))
        assert (share > 0) == crossed and (pitch in ok) == (not crossed), pitch


def test_between_the_melodys_notes_its_last_note_stands_for_it():
    events = [(0, True, 67, 0), (TPB // 2, False, 67, 0)]
    assert max(allowed(state_of(events), ALTO)) == 67


def test_other_tokens_are_never_touched():
    ok = voice_leading_ons(state_of(FIFTH_THEN_ALTO_UP), TENOR)
    assert ok[:V.note_on_base].all() and ok[V.note_on_base + V.config.n_pitches:].all()
