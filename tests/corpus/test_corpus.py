"""Corpus pipeline on real music21 data: score -> notes -> tokens, the cached build, the dataset."""

from __future__ import annotations

import json

import mido
import numpy as np
import pytest

from engine.cli import main as cli_main
from engine.corpus import music21_source as m21
from engine.corpus.build import BuildConfig, build, cache_dir, cache_key, split_of
from engine.corpus.dataset import Corpus, WindowConfig, WindowSampler, allowed_shifts, pitch_span, transpose
from engine.corpus.piece import (
    PART,
    PITCH,
    bar_lines,
    call_response_roles,
    encode_piece,
    melody_roles,
    part_roles,
    piece_events,
)
from engine.errors import DataError
from engine.music.tokens import (
    Meter,
    StreamDecoder,
    StreamEncoder,
    canonical_order,
    decode_events,
    encode_events,
    quantize,
)
from engine.music.vocab import DEFAULT_VOCAB as V
from engine.music.vocab import Vocab, VocabConfig

TPB = V.config.ticks_per_beat
CHORALE = "bach/bwv10.7.mxl"  # SATB, 4/4, no pickup
CHORALE_PICKUP = "bach/bwv101.7.mxl"  # SATB with a pickup and bars split at a repeat


def _unit(collection: str, source: str, tune: int = 0) -> m21.Unit:
    if tune:
        return next(u for u in m21.list_units(collection) if u.source == source and u.tune == tune)
    return m21.Unit(collection, source, str(m21.corpus_root()))


def _piece(collection: str, source: str, tune: int = 0):
    (piece,) = m21.parse_unit(_unit(collection, source, tune), TPB)
    return piece


# a few real pieces of different kinds: SATB chorales, monophonic tunes (one with a pickup and
# irregular measures, one without a time signature), and a five-voice mass movement
REAL = [
    ("bach", CHORALE, 0),
    ("bach", CHORALE_PICKUP, 0),
    ("essen", "essenFolksong/altdeu10.abc", 1),
    ("essen", "essenFolksong/altdeu10.abc", 2),
    ("oneill", "oneills1850/0001-0050.abc", 2),
    ("ryan", "ryansMammoth/42dHighlandRegimentStrathspey.abc", 1),
    ("aird", "airdsAirs/book1.abc", 1),
]


@pytest.fixture(scope="module")
def pieces():
    return {(c, s, t): _piece(c, s, t) for c, s, t in REAL}


def _expected(piece, roles):
    """The quantized score events as the decoder must give them back (velocity on its bin's centre)."""
    return [(int(e.tick), e.on, e.pitch, e.role, V.bin_velocity(V.velocity_bin(e.velocity)) if e.on else 0)
            for e in canonical_order(piece_events(piece, roles))]


def _decoded(tokens):
    return [(e.tick, e.on, e.pitch, e.role, e.velocity) for e in decode_events(tokens.tolist())]


# ---- score -> notes ---------------------------------------------------------------------------


def test_chorale_keeps_four_parts_and_the_soprano_is_the_player(pieces):
    piece = pieces[("bach", CHORALE, 0)]
    assert piece.part_names == ("Soprano", "Alto", "Tenor", "Bass")
    assert sorted(set(piece.notes[:, PART].tolist())) == [0, 1, 2, 3]
    # the soprano is the top voice: its mean pitch is the highest
    means = [piece.notes[piece.notes[:, PART] == p, PITCH].mean() for p in range(4)]
    assert means == sorted(means, reverse=True)
    tokens = encode_piece(piece)  # the default mapping: soprano -> player, the rest -> sideman
    events = decode_events(tokens.tolist())
    soprano = sorted((int(on), int(p)) for on, _, p, _, part in piece.notes.tolist() if part == 0)
    assert sorted((e.tick, e.pitch) for e in events if e.on and e.role == 0) == soprano
    assert {e.role for e in events} == {0, 1}
    assert tokens.dtype == np.uint16 and tokens[:3].tolist() == [V.bos, V.task("CONTINUE"), V.style("bach")]


def test_soprano_is_part_zero_when_instruments_come_first():
    piece = _piece("bach", "bach/bwv250.mxl")  # Horn 1, Horn 2, Soprano, Alto, Tenor, Bass in the score
    assert piece.part_names == ("Soprano", "Horn 1", "Horn 2", "Alto", "Tenor", "Bass")


def test_pickup_sets_the_bar_origin(pieces):
    piece = pieces[("bach", CHORALE_PICKUP, 0)]
    assert piece.bars.tolist() == [[TPB, 4, 4]]  # a one-beat pickup; split bars at repeats joined
    dec = StreamDecoder()
    dec.feed_all(encode_piece(piece).tolist())
    assert dec.bars[0] == TPB and all(b - a == 4 * TPB for a, b in zip(dec.bars, dec.bars[1:]))


def test_music21_ties_are_stripped_and_notes_quantized(pieces):
    for piece in pieces.values():
        notes = piece.notes
        assert (notes[:, 1] > notes[:, 0]).all()  # every note lasts at least one tick
        assert ((0 <= notes[:, PITCH]) & (notes[:, PITCH] <= 127)).all()
    # a tied note is one note: the soprano has as many notes as music21's stripTies leaves
    from music21 import converter

    score = converter.parse(str(m21.corpus_root() / CHORALE))
    soprano = score.parts[0].stripTies(inPlace=False).flatten().notes
    piece = pieces[("bach", CHORALE, 0)]
    assert (piece.notes[:, PART] == 0).sum() == len(soprano)


# ---- tokens of real pieces --------------------------------------------------------------------


@pytest.mark.parametrize("key", REAL, ids=[f"{c}:{s}#{t}" for c, s, t in REAL])
def test_real_pieces_round_trip(pieces, key):
    """decode(encode(piece)) gives back the quantized score events, and BAR tokens sit on its bar lines."""
    piece = pieces[key]
    roles, _ = part_roles(piece, V)  # SATB -> four roles: no unisons merge
    tokens = encode_piece(piece, mapping="parts")
    assert _decoded(tokens) == _expected(piece, roles)
    dec = StreamDecoder()
    dec.feed_all(tokens.tolist())
    assert dec.bars == bar_lines(piece, TPB).tolist()
    assert dec.style == key[0] and dec.ended


def test_offline_equals_encode_events_for_a_single_meter(pieces):
    piece = pieces[("bach", CHORALE_PICKUP, 0)]
    roles, _ = melody_roles(piece, V)
    (origin, num, den), = piece.bars.tolist()
    expected = encode_events(canonical_order(piece_events(piece, roles)), V, style="bach",
                             meter=Meter(num, den), bar_origin=origin)
    assert encode_piece(piece).tolist() == expected


@pytest.mark.parametrize("key", [REAL[1], REAL[3], REAL[5]], ids=["chorale", "essen-no-meter", "ryan-odd-bar"])
@pytest.mark.parametrize("bpm", [120.0, 97.3])
def test_offline_equals_online(pieces, key, bpm):
    """The online encoder fed the same events one at a time, at float times from a tempo, as a live
    clock gives them (seconds -> ticks), with the meter changes where the clock knows them."""
    piece = pieces[key]
    roles, _ = melody_roles(piece, V)
    rows = piece.bars.tolist()
    enc = StreamEncoder(V, Meter(rows[0][1], rows[0][2]), rows[0][0])
    out = enc.begin(piece.collection)
    changes = rows[1:]
    for e in canonical_order(piece_events(piece, roles)):
        seconds = e.tick / TPB * 60.0 / bpm  # when the event happens
        tick = seconds * bpm / 60.0 * TPB  # what the clock says, with float noise
        while changes and changes[0][0] <= quantize(tick):
            at, num, den = changes.pop(0)
            out += enc.set_meter(at / TPB * 60.0 / bpm * bpm / 60.0 * TPB, Meter(num, den))
        out += enc.note_on(tick, e.pitch, e.velocity, e.role) if e.on else enc.note_off(tick, e.pitch, e.role)
    out += enc.finish()
    assert len(piece.bars) > 1 or key == REAL[1]
    assert out == encode_piece(piece).tolist()


def test_call_response_alternates_phrases_with_turns(pieces):
    piece = pieces[("aird", "airdsAirs/book1.abc", 1)]
    roles, turns = call_response_roles(piece, V, bars_per_phrase=2)
    assert set(roles.tolist()) == {0, 1} and len(turns) >= 2
    tokens = encode_piece(piece, mapping="call_response")
    assert (tokens == V.turn).sum() == len(turns)
    # every TURN sits on a bar line (the start of a phrase), and the role changes there
    dec = StreamDecoder()
    for t in tokens.tolist():
        dec.feed(t)
        if t == V.turn:
            assert dec.position in dec.bars
    assert _decoded(tokens) == _expected(piece, roles)


# ---- the build ---------------------------------------------------------------------------------


def _write_midi_folder(folder):
    folder.mkdir()
    mid = mido.MidiFile(type=1, ticks_per_beat=96)
    for channel, pitches in ((0, (72, 74, 76)), (1, (48, 43, 48)), (9, (36, 38, 36))):
        track = mido.MidiTrack([mido.MetaMessage("track_name", name=f"ch{channel}", time=0)])
        for p in pitches:
            track.append(mido.Message("note_on", channel=channel, note=p, velocity=90, time=0))
            track.append(mido.Message("note_off", channel=channel, note=p, velocity=0, time=96))
        mid.tracks.append(track)
    mid.save(folder / "duo.mid")
    single = mido.MidiFile(type=0, ticks_per_beat=480)
    single.tracks.append(mido.MidiTrack([
        mido.MetaMessage("time_signature", numerator=3, denominator=4, time=0),
        mido.Message("note_on", note=60, velocity=64, time=0),
        mido.Message("note_on", note=60, velocity=0, time=480),
    ]))
    single.save(folder / "solo.mid")
    (folder / "broken.mid").write_bytes(b"MThd\x00\x00\x00\x06 this is not a MIDI file")


def test_broken_user_file_is_skipped_counted_and_named(tmp_path, capsys):
    midi = tmp_path / "midi"
    _write_midi_folder(midi)
    config = BuildConfig(collections=("user",), midi_dir=midi, workers=2, data_dir=tmp_path, progress=False)
    report = build(config)
    summary = report.collections["user"]
    assert summary["pieces"] == 2 and summary["failed"] == 1
    assert [f["source"] for f in report.failed["user"]] == ["broken.mid"]
    corpus = Corpus(report.dir)
    duo = corpus.piece(next(r for r in corpus.refs() if r.id == "user:duo.mid"))
    assert duo.n_parts == 2 and set(duo.notes[:, PITCH].tolist()) == {72, 74, 76, 48, 43}  # drums skipped
    assert corpus.piece(next(r for r in corpus.refs() if r.id == "user:solo.mid")).bars.tolist() == [[0, 3, 4]]
    # the command line says so too
    code = cli_main(["data", "build", "--collections", "user", "--midi-dir", str(midi), "--data-dir", str(tmp_path),
                     "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "broken.mid" in out and "cached already: user" in out


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    data = tmp_path_factory.mktemp("data")
    config = BuildConfig(collections=("bach", "essen", "oneill"), limit=4, workers=2, data_dir=data, progress=False)
    return config, build(config)


def test_build_caches_and_reuses(small_corpus):
    config, report = small_corpus
    assert report.dir == cache_dir(config.data_dir, V, limit=4) and report.dir.parent.name == "cache"
    assert report.reused == []
    for c in ("bach", "essen", "oneill"):
        s = report.collections[c]
        assert s["pieces"] == 4 and s["failed"] == 0 and s["notes"] > 0 and s["tokens"] > s["notes"]
    assert sorted(p.name for p in report.dir.iterdir()) == sorted(
        ["manifest.json"] + [f"{c}.{x}" for c in ("bach", "essen", "oneill") for x in ("json", "npz")])
    again = build(config)
    assert sorted(again.reused) == ["bach", "essen", "oneill"] and again.collections == report.collections


def test_cached_tokens_equal_a_fresh_parse(small_corpus):
    config, report = small_corpus
    corpus = Corpus(report.dir)
    refs = corpus.refs(collections=["essen"])
    units = m21.list_units("essen", limit=4)
    assert [r.id for r in refs] == [u.id for u in units]
    for ref, unit in zip(refs, units):
        (piece,) = m21.parse_unit(unit, TPB)
        assert corpus.tokens(ref).tolist() == encode_piece(piece).tolist()
        assert np.array_equal(corpus.piece(ref).notes, piece.notes)


def test_split_is_deterministic(small_corpus):
    assert split_of("essen:essenFolksong/altdeu10.abc#1") == "train"
    assert split_of("essen:essenFolksong/altdeu10.abc#10") == "val"
    assert split_of("essen:essenFolksong/altdeu10.abc#6") == "test"
    counts = {s: 0 for s in ("train", "val", "test")}
    for i in range(4000):
        counts[split_of(f"piece {i}")] += 1
    assert 0.87 < counts["train"] / 4000 < 0.93 and counts["val"] > 120 and counts["test"] > 120
    _, report = small_corpus
    corpus = Corpus(report.dir)
    for ref in corpus.refs():
        assert ref.split == split_of(ref.id)
    assert len(corpus.refs("train")) + len(corpus.refs("val")) + len(corpus.refs("test")) == len(corpus.refs())


def test_cache_key_follows_the_vocabulary(tmp_path, small_corpus):
    other = Vocab(VocabConfig(velocity_bins=16))
    assert cache_key(other) != cache_key(V)
    assert cache_key(V, "corpus-other") != cache_key(V)
    assert cache_dir(tmp_path, other) != cache_dir(tmp_path, V)
    _, report = small_corpus
    with pytest.raises(DataError, match="rebuild"):
        Corpus(report.dir, other)
    manifest = json.loads((report.dir / "manifest.json").read_text())
    assert manifest["vocab_hash"] == V.hash()


# ---- augmentation and windows ---------------------------------------------------------------


def test_transposition_shifts_every_note_and_stays_in_range(pieces):
    tokens = encode_piece(pieces[("bach", CHORALE, 0)])
    lo, hi = pitch_span(tokens)
    shifts = allowed_shifts(tokens, range(-5, 7), (lo - 3, hi + 2))
    assert shifts == [-3, -2, -1, 0, 1, 2]
    is_note = (tokens >= V.note_on_base)
    for k in shifts:
        moved = transpose(tokens, k)
        assert (moved[is_note].astype(int) - tokens[is_note].astype(int) == k).all()
        assert (moved[~is_note] == tokens[~is_note]).all()
        events = decode_events(moved.tolist())
        original = decode_events(tokens.tolist())
        assert [(e.tick, e.on, e.pitch - k, e.role) for e in events] == [(e.tick, e.on, e.pitch, e.role) for e in original]
    with pytest.raises(ValueError):
        transpose(tokens, 128 - lo)


def test_windows_are_deterministic_in_range_and_carry_context(small_corpus):
    _, report = small_corpus
    corpus = Corpus(report.dir)
    arrays = [corpus.tokens(r) for r in corpus.refs()]
    config = WindowConfig(length=64, transpose=(-5, 6), pitch_range=(55, 84), seed=7)
    a = WindowSampler(arrays, config).batch(32)
    b = WindowSampler(arrays, config).batch(32)
    c = WindowSampler(arrays, WindowConfig(length=64, pitch_range=(55, 84), seed=8)).batch(32)
    assert a.shape == (32, 65) and np.array_equal(a, b) and not np.array_equal(a, c)
    # every window in range after its shift, or (when no shift could bring it there) not shifted
    sampler = WindowSampler(arrays, config)
    shifted = 0
    for _ in range(64):
        w, k = sampler.draw()
        original = transpose(w, -k)
        lo, hi = pitch_span(original)
        assert -5 <= k <= 6
        if any(55 <= lo + j and hi + j <= 84 for j in range(-5, 7)):
            assert 55 <= lo + k and hi + k <= 84
        else:
            assert k == 0
        shifted += k != 0
    assert shifted > 10
    for w in a:
        assert w[0] == V.bos and V.is_task(int(w[1])) and V.is_style(int(w[2]))
    # transposition happened: some window differs from the untransposed one at the same place
    sampler = WindowSampler(arrays, WindowConfig(length=64, seed=7, transpose=(0, 0)))
    mid_piece = sampler.window(arrays[0], 40)
    assert mid_piece[:3].tolist() == arrays[0][:3].tolist()
    assert V.is_role(int(mid_piece[3])) and V.is_velocity(int(mid_piece[4]))
    assert mid_piece[5:].tolist() == arrays[0][40:40 + 60].tolist()


def test_reencode_with_another_role_mapping(small_corpus):
    _, report = small_corpus
    corpus = Corpus(report.dir)
    ref = corpus.refs(collections=["bach"])[0]
    assert corpus.encode(ref).tolist() == corpus.tokens(ref).tolist()
    parts = corpus.encode(ref, "parts", task="ACCOMPANY")
    assert parts[1] == V.task("ACCOMPANY")
    assert {e.role for e in decode_events(parts.tolist())} == {0, 1, 2, 3}
    tune = corpus.encode(corpus.refs(collections=["oneill"])[0], "call_response")
    assert {e.role for e in decode_events(tune.tolist())} == {0, 1} and (tune == V.turn).any()
