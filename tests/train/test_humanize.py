"""The model of human playing, on real pieces parsed from music21's corpus: only the player's notes
change, they stay paired through the tokenizer, the bar grid stays, and the changes have the sizes a
person's playing has."""

from __future__ import annotations

import numpy as np
import pytest

from engine.corpus import music21_source as m21
from engine.corpus.piece import (OFF, ON, PITCH, VELOCITY, bar_lines, call_response_roles,
                                 call_response_varied_roles, encode_piece, melody_roles, piece_events)
from engine.music.tokens import StreamDecoder, canonical_order, decode_events
from engine.music.vocab import DEFAULT_VOCAB as V
from engine.train.humanize import HumanPlaying, humanize, ms_per_tick, player_phrases

TPB = V.config.ticks_per_beat
PIECES = [
    ("bach", "bach/bwv10.7.mxl", 0),  # SATB: chords to roll, the soprano is the player
    ("essen", "essenFolksong/altdeu10.abc", 1),  # a one-voice tune with a pickup
    ("aird", "airdsAirs/book1.abc", 1),
]


def parse(collection: str, source: str, tune: int):
    if tune:
        unit = next(u for u in m21.list_units(collection) if u.source == source and u.tune == tune)
    else:
        unit = m21.Unit(collection, source, str(m21.corpus_root()))
    (piece,) = m21.parse_unit(unit, TPB)
    return piece


@pytest.fixture(scope="module")
def pieces():
    return [parse(*p) for p in PIECES]


def roles_of(piece):
    """Call and response for the tunes (phrases alternate), melody vs the rest for the chorale."""
    return (melody_roles(piece, V) if piece.n_parts > 1 else call_response_roles(piece, V))[0]


def test_only_the_players_notes_change_and_the_bar_grid_stays(pieces):
    for piece in pieces:
        roles = roles_of(piece)
        played = humanize(piece, roles, np.random.default_rng(1))
        sideman = roles != 0
        assert np.array_equal(played.notes[sideman], piece.notes[sideman]), piece.id
        assert np.array_equal(played.bars, piece.bars)
        assert played.part_names == piece.part_names
        player = ~sideman
        assert (played.notes[player, ON] != piece.notes[player, ON]).any()  # it does play off the grid
        assert (played.notes[player, OFF] - played.notes[player, ON] >= 1).all()
        assert ((played.notes[player, VELOCITY] >= 1) & (played.notes[player, VELOCITY] <= 127)).all()


def test_the_played_piece_encodes_with_every_note_paired_and_every_bar_line(pieces):
    for seed, piece in enumerate(pieces):
        roles = roles_of(piece)
        played = humanize(piece, roles, np.random.default_rng(seed))
        mapping = "melody" if piece.n_parts > 1 else "call_response"
        tokens = encode_piece(played, V, mapping=mapping).tolist()
        dec = StreamDecoder()
        for t in tokens:
            dec.feed(t)
        assert not dec.sounding, f"{piece.id}: notes left open {dec.sounding}"
        events = decode_events(tokens)
        assert sum(e.on for e in events) == len(played.notes)  # no note lost or merged
        clean = encode_piece(piece, V, mapping=mapping).tolist()
        lines = bar_lines(piece, TPB)
        # every bar line of the score is still a bar line (a note held past the end may add one more)
        assert sum(t == V.bar for t in tokens) in (sum(t == V.bar for t in clean), sum(t == V.bar for t in clean) + 1)
        assert len(lines) > 2


def test_a_key_is_released_before_it_is_struck_again(pieces):
    loose = HumanPlaying(articulation=(1.0, 1.05))  # legato with overlaps: repeated pitches would collide
    for piece in pieces:
        roles = roles_of(piece)
        played = humanize(piece, roles, np.random.default_rng(3), loose)
        notes = played.notes[roles == 0]
        for pitch in np.unique(notes[:, PITCH]):
            same = notes[notes[:, PITCH] == pitch]
            same = same[np.argsort(same[:, ON], kind="stable")]
            assert (same[1:, ON] >= same[:-1, OFF]).all(), f"{piece.id}: pitch {pitch} struck while held"
            assert (same[1:, ON] > same[:-1, ON]).all()


def test_the_changes_have_the_size_of_a_persons_playing(pieces):
    """Over many seeds: held 50-105 % (give or take the tick rounding and the drift), onsets off by about
    the jitter, phrases drifting and offset by no more than configured."""
    config = HumanPlaying()
    tick_ms = ms_per_tick(config.bpm, TPB)
    piece = pieces[2]  # the Aird air: a tune of eighths and quarters
    roles = roles_of(piece)
    player = roles == 0
    written = piece.notes[player]
    ratios, errors = [], []
    for seed in range(40):
        played = humanize(piece, roles, np.random.default_rng(seed), config).notes[player]
        length = written[:, OFF] - written[:, ON]
        long_enough = length >= 6  # an eighth or longer: the tick rounding is small beside it
        ratios.append((played[long_enough, OFF] - played[long_enough, ON]) / length[long_enough])
        errors.append((played[:, ON] - written[:, ON]) * tick_ms)
    ratios = np.concatenate(ratios)
    errors = np.concatenate(errors)
    slack = 1.0 / 6 + config.tempo_drift  # one tick of rounding on an eighth, plus the drift
    assert ratios.min() >= config.articulation[0] - slack and ratios.max() <= config.articulation[1] + slack
    assert np.percentile(ratios, 10) < 0.7 and np.percentile(ratios, 90) > 0.9  # detached and legato both
    phrase_ticks = max(len(p) for p in player_phrases(piece.notes, roles)) * 12  # a generous phrase length
    bound_ms = config.phrase_offset_ms + config.tempo_drift * phrase_ticks * tick_ms + 4 * 15 + tick_ms
    assert np.abs(errors).max() <= bound_ms
    assert 5.0 < np.std(errors) < 150.0  # off the grid, not scrambled


def test_chords_are_sometimes_rolled_low_to_high(pieces):
    chorale = pieces[0]
    roles = np.zeros(len(chorale.notes), dtype=np.int64)  # every voice the player's: chords to roll
    config = HumanPlaying(roll_probability=1.0, onset_jitter_ms=(0.0, 0.0), phrase_offset_ms=0.0, tempo_drift=0.0,
                          roll_ms=120.0)
    played = humanize(chorale, roles, np.random.default_rng(5), config).notes
    rolled = 0
    for tick in np.unique(chorale.notes[:, ON]):
        chord = np.flatnonzero(chorale.notes[:, ON] == tick)
        if len(chord) < 3 or len(set(chorale.notes[chord, PITCH].tolist())) < len(chord):
            continue  # a unison of two voices is one key: struck once, the second a tick on
        by_pitch = chord[np.argsort(chorale.notes[chord, PITCH])]
        onsets = played[by_pitch, ON]
        assert (np.diff(onsets) >= 0).all(), "a rolled chord goes from the lowest note up"
        rolled += onsets[-1] > onsets[0]
    assert rolled > 10


def test_phrases_of_one_to_eight_bars_alternate_with_a_turn_at_each_change(pieces):
    piece = pieces[2]
    roles, turns = call_response_varied_roles(piece, V)
    assert set(roles.tolist()) == {0, 1} and len(turns) >= 2
    lines = bar_lines(piece, TPB).tolist()
    bars = [lines.index(t) for t in turns]
    lengths = np.diff([0] + bars)
    assert ((lengths >= 1) & (lengths <= 8)).all()
    assert len(set(lengths.tolist())) > 1  # not one fixed length
    assert np.array_equal(call_response_varied_roles(piece, V)[0], roles)  # the same on every run
    tokens = encode_piece(piece, V, mapping="call_response_varied")
    assert (tokens == V.turn).sum() == len(turns)
    events = canonical_order(piece_events(piece, roles))
    assert sum(e.on for e in events) == len(piece.notes)


def test_as_played_tokens_take_turns_as_live_turn_taking_does(pieces):
    from engine.corpus.piece import role_mapping
    from engine.train.humanize import encode_as_played, settle_turns, turns_as_played

    for seed, piece in enumerate(pieces[1:]):  # the tunes: phrases alternate
        tokens = encode_as_played(piece, np.random.default_rng(seed)).tolist()
        dec = StreamDecoder()
        for t in tokens:
            dec.feed(t)
        assert not dec.sounding, f"{piece.id}: notes left open"
        roles, turns = role_mapping("call_response_varied")(piece, V)
        assert tokens.count(V.turn) == len(turns)
        played = humanize(piece, roles, np.random.default_rng(seed))
        live = turns_as_played(played, piece, roles, turns)
        settled = settle_turns(played, roles, live).notes
        events = decode_events(tokens)
        for tick, to_player in live:
            if to_player:  # the TURN comes with the player's first note ...
                assert any(e.on and e.role == 0 and e.tick == tick for e in events)
                # ... and whatever the sideman held then ends there (a cut-in)
                assert not ((roles != 0) & (settled[:, ON] < tick) & (settled[:, OFF] > tick)).any()
            else:  # the answer starts on its bar line, after the player let go
                assert tick in turns
                assert not ((roles == 0) & (settled[:, ON] < tick) & (settled[:, OFF] > tick)).any()
        assert np.array_equal(settled[roles != 0, ON], piece.notes[roles != 0, ON])  # the sideman's onsets as written
        assert sum(e.on for e in events) == len(piece.notes)


def test_swing_moves_the_off_beat_eighths_and_leaves_the_beats(pieces):
    from engine.train.humanize import swing

    piece = pieces[2]
    roles = roles_of(piece)
    swung = swing(piece, roles).notes
    player = roles == 0
    on, new = piece.notes[player, ON], swung[player, ON]
    assert (new[on % TPB == 0] == on[on % TPB == 0]).all()  # on the beat: unchanged
    off_beat = on % TPB == TPB // 2
    assert off_beat.any() and (new[off_beat] == on[off_beat] + 4).all()  # 12 -> 16 of 24: 2:1
    assert np.array_equal(swung[~player], piece.notes[~player])
