"""Tokenizer: online == offline, round trips, and every kind of odd input."""

from __future__ import annotations

import io

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import MidiFileError, TokenizerError
from engine.music.midiwire import WireParser
from engine.music.tokens import (
    DecodedEvent,
    Meter,
    NoteEvent,
    StreamDecoder,
    StreamEncoder,
    decode_events,
    encode_events,
    encode_midi,
    events_to_midi,
    quantize,
    tokens_to_midi,
)
from engine.music.vocab import DEFAULT_VOCAB as V
from engine.music.vocab import Vocab, VocabConfig

ALL_ROLES = {0: 0, 1: 1, 2: 2, 3: 3}
PPQ = 480


# ---- generated streams --------------------------------------------------------------------

@st.composite
def performances(draw, max_events=60, roles=(0,)):
    """A live-like performance: (file tick at PPQ 480, raw message bytes) in time order.

    Includes odd things on purpose: overlapping same pitches, stray note-offs, velocity-0 note-ons,
    sustain pedal, controllers and pitch bend, very short notes.
    """
    n = draw(st.integers(1, max_events))
    now = 0
    out = []
    for _ in range(n):
        now += draw(st.one_of(st.just(0), st.integers(1, 40), st.integers(1, 3000)))
        ch = draw(st.sampled_from(roles))
        pitch = draw(st.integers(36, 48))  # a narrow range makes overlaps likely
        kind = draw(st.sampled_from(["on", "on", "off", "off", "vel0", "pedal", "cc", "bend"]))
        if kind == "on":
            msg = (0x90 | ch, pitch, draw(st.integers(1, 127)))
        elif kind == "off":
            msg = (0x80 | ch, pitch, draw(st.integers(0, 127)))
        elif kind == "vel0":
            msg = (0x90 | ch, pitch, 0)
        elif kind == "pedal":
            msg = (0xB0 | ch, 64, draw(st.sampled_from([0, 127])))
        elif kind == "cc":
            msg = (0xB0 | ch, draw(st.integers(1, 10)), draw(st.integers(0, 127)))
        else:
            msg = (0xE0 | ch, draw(st.integers(0, 127)), draw(st.integers(0, 127)))
        out.append((now, msg))
    return out


def performance_to_file(perf, bpm: float, meter=(4, 4)) -> bytes:
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.MetaMessage("time_signature", numerator=meter[0], denominator=meter[1], time=0))
    last = 0
    for tick, msg in perf:
        track.append(mido.Message.from_bytes(list(msg), time=tick - last))
        last = tick
    mid = mido.MidiFile(type=0, ticks_per_beat=PPQ)
    mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


def online_tokens(perf, bpm: float, meter=(4, 4), roles=ALL_ROLES) -> list[int]:
    """What the daemon does: each message arrives at a time in seconds; the clock turns it into ticks."""
    enc = StreamEncoder(V, Meter(*meter))
    out = enc.begin()
    out += enc.set_meter(0.0, Meter(*meter))
    seconds_per_file_tick = 60.0 / bpm / PPQ
    ticks_per_second = bpm / 60.0 * V.config.ticks_per_beat
    t0 = 12345.678  # a monotonic clock does not start at zero
    last = 0.0
    for tick, msg in perf:
        arrival = t0 + tick * seconds_per_file_tick
        last = (arrival - t0) * ticks_per_second
        out += enc.message(last, msg, roles[msg[0] & 0x0F])
    return out + enc.finish(last)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(perf=performances(roles=(0, 1)), bpm=st.sampled_from([60.0, 97.0, 120.0, 133.3, 180.0]),
       meter=st.sampled_from([(4, 4), (3, 4), (6, 8), (5, 4)]))
def test_online_equals_offline(perf, bpm, meter):
    offline, _ = encode_midi(performance_to_file(perf, bpm, meter), role_of_channel=ALL_ROLES)
    assert online_tokens(perf, bpm, meter) == offline


@settings(max_examples=300, deadline=None)
@given(perf=performances(roles=(0, 1, 2)))
def test_tokens_midi_tokens_is_identity(perf):
    tokens, _ = encode_midi(performance_to_file(perf, 120.0), role_of_channel=ALL_ROLES)
    again, enc = encode_midi(tokens_to_midi(tokens), role_of_channel=ALL_ROLES)
    assert again == tokens
    assert not enc.stats.counts  # the decoded file is clean: nothing ignored or dropped


@settings(max_examples=200, deadline=None)
@given(perf=performances(roles=(0, 1)))
def test_token_stream_is_well_formed(perf):
    """Every note-on is closed, no note-off without its note-on, bars are evenly spaced in 4/4."""
    tokens, _ = encode_midi(performance_to_file(perf, 120.0), role_of_channel=ALL_ROLES)
    dec = StreamDecoder(V)
    events = dec.feed_all(tokens)
    assert dec.invalid == 0 and not dec.sounding and dec.ended
    on = {}
    for e in events:
        key = (e.role, e.pitch)
        if e.on:
            assert key not in on
            on[key] = e.tick
        else:
            assert e.tick > on.pop(key)  # notes last at least one tick
    assert all(b % 96 == 0 for b in dec.bars)
    assert dec.bars == list(range(0, dec.bars[-1] + 1, 96))


@settings(max_examples=100, deadline=None)
@given(notes=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 100), st.integers(21, 108),
                                st.integers(0, 7), st.integers(0, 1)), min_size=1, max_size=30))
def test_file_tokens_file_equals_quantized_file(notes):
    """An on-grid file without overlaps comes back event for event (velocity to its bin's centre)."""
    events: list[DecodedEvent] = []
    busy: dict[tuple[int, int], int] = {}
    for start, length, pitch, vbin, role in sorted(notes):
        if busy.get((role, pitch), -1) >= start:
            continue
        busy[(role, pitch)] = start + length
        vel = V.bin_velocity(vbin)
        events += [DecodedEvent(start, True, pitch, vel, role), DecodedEvent(start + length, False, pitch, 0, role)]
    events.sort(key=lambda e: (e.tick, e.on, e.role, e.pitch))
    mid = events_to_midi(events)
    tokens, _ = encode_midi(mid, role_of_channel=ALL_ROLES)
    assert decode_events(tokens) == events


def test_quantize_rounds_half_up_despite_float_noise():
    assert quantize(10.5) == 11
    assert quantize(10.499999999) == 11  # float noise around .5
    assert quantize(10.49) == 10
    assert quantize(0.2) == 0


# ---- the vocabulary ------------------------------------------------------------------------

def test_vocab_blocks_are_contiguous_and_named():
    names = [V.name(t) for t in range(V.size)]
    assert len(set(names)) == V.size
    layout = V.layout()
    assert sum(n for _, _, n in layout) == V.size
    assert all(layout[i][1] + layout[i][2] == layout[i + 1][1] for i in range(len(layout) - 1))
    with pytest.raises(ValueError):
        V.name(V.size)


def test_velocity_bins_round_trip():
    for b in range(V.config.velocity_bins):
        assert V.velocity_bin(V.bin_velocity(b)) == b
    assert V.velocity_bin(1) == 0 and V.velocity_bin(127) == V.config.velocity_bins - 1


def test_vocab_hash_tracks_the_config():
    assert Vocab().hash() == V.hash()
    assert Vocab(VocabConfig(velocity_bins=4)).hash() != V.hash()
    assert Vocab.from_json(V.to_json()) == V


def test_vocab_module_prints_layout(capsys):
    from engine.music.vocab import main

    main()
    out = capsys.readouterr().out
    assert f"{V.size} tokens" in out and "note-on" in out


# ---- odd input, one case each --------------------------------------------------------------

def fresh():
    enc = StreamEncoder(V)
    enc.begin()
    return enc


def names(tokens):
    return V.names(tokens)


def test_overlapping_same_pitch_notes_retrigger_and_end_at_last_off():
    enc = fresh()
    toks = enc.note_on(0, 60, 100) + enc.note_on(24, 60, 100) + enc.note_off(48, 60) + enc.note_off(72, 60)
    assert names(toks) == ["BAR", "ROLE_player", "VEL_6", "ON_60", "SHIFT_24", "OFF_60", "ON_60",
                           "SHIFT_48", "OFF_60"]
    assert enc.stats.counts["overlapping_note_on"] == 1
    assert not enc.sounding


def test_note_off_without_note_on_is_dropped_and_counted():
    enc = fresh()
    assert enc.note_off(10, 60) == []
    assert enc.stats.counts["note_off_without_note_on"] == 1
    assert enc.position == 0  # not even time moved


def test_velocity_zero_note_on_is_a_note_off():
    enc = fresh()
    toks = enc.message(0, (0x90, 60, 90)) + enc.message(12, (0x90, 60, 0))
    assert names(toks)[-2:] == ["SHIFT_12", "OFF_60"]


def test_zero_length_note_lasts_one_tick_and_later_events_follow():
    enc = fresh()
    toks = enc.note_on(5, 60, 64) + enc.note_off(5.2, 60) + enc.note_on(5.3, 62, 64)
    assert names(toks)[-4:] == ["ON_60", "SHIFT_1", "OFF_60", "ON_62"]


def test_sustain_pedal_holds_note_offs_until_release():
    enc = fresh()
    toks = enc.note_on(0, 60, 64) + enc.control(1, 64, 127) + enc.note_off(10, 60)
    assert "OFF_60" not in names(toks)
    toks = enc.control(30, 64, 0)
    assert names(toks) == ["SHIFT_30", "OFF_60"]


def test_restrike_under_pedal_closes_the_held_note():
    enc = fresh()
    enc.note_on(0, 60, 64)
    enc.control(0, 64, 127)
    enc.note_off(4, 60)
    toks = enc.note_on(8, 60, 64)
    assert names(toks) == ["SHIFT_8", "OFF_60", "ON_60"]
    assert enc.control(9, 64, 0) == []  # nothing left held: the new note is still down
    assert enc.sounding == {(0, 60)}


def test_all_notes_off_closes_that_role_only():
    enc = fresh()
    enc.note_on(0, 60, 64, role=0)
    enc.note_on(0, 64, 64, role=1)
    toks = enc.message(6, (0xB0, 123, 0), role=0)
    assert names(toks) == ["SHIFT_6", "ROLE_player", "OFF_60"]
    assert enc.sounding == {(1, 64)}


@pytest.mark.parametrize("msg,reason", [
    ((0xF0, 0x7E, 0x7F, 0x06, 0x01, 0xF7), "sysex"),
    ((0xF8,), "system_message"),
    ((0xE0, 0, 64), "channel_message_ignored"),  # pitch bend
    ((0xD0, 40), "channel_message_ignored"),  # channel pressure
    ((0xC0, 5), "channel_message_ignored"),  # program change
    ((0xB0, 1, 64), "control_change_ignored"),  # mod wheel
    ((0x90, 60), "malformed_message"),  # cut short
    ((0x90, 60, 200), "malformed_message"),  # data byte with the high bit set
    ((0x3C, 60, 60), "malformed_message"),  # no status byte
    ((), "empty_message"),
])
def test_messages_we_do_not_model_are_ignored_and_counted(msg, reason):
    enc = fresh()
    assert enc.message(3, msg) == []
    assert enc.stats.counts[reason] == 1


def test_decoder_ignores_impossible_note_off_and_closes_on_finish():
    dec = StreamDecoder(V)
    assert dec.feed(V.note_off(60)) == []
    assert dec.invalid == 1
    dec.feed(V.note_on(60))
    dec.feed(V.shift(10))
    assert dec.finish() == [DecodedEvent(10, False, 60, 0, 0)]


def test_decoder_rejects_out_of_range_tokens():
    with pytest.raises(TokenizerError):
        StreamDecoder(V).feed(V.size + 3)


def test_long_gaps_are_written_as_bars_and_shifts():
    toks = encode_events([NoteEvent(0, True, 60), NoteEvent(1, False, 60), NoteEvent(300, True, 62),
                          NoteEvent(301, False, 62)])
    dec = StreamDecoder(V)
    events = dec.feed_all(toks)
    assert [e.tick for e in events] == [0, 1, 300, 301]
    assert dec.bars == [0, 96, 192, 288]


def test_meter_change_moves_the_bar_grid():
    enc = fresh()
    toks = enc.set_meter(0, Meter(3, 4)) + enc.note_on(80, 60, 64) + enc.note_off(81, 60)
    toks += enc.set_meter(100, Meter(6, 8)) + enc.note_on(200, 62, 64)
    dec = StreamDecoder(V)
    dec.feed_all(toks)
    assert dec.bars == [0, 72, 100, 172]


def test_running_status_is_parsed():
    p = WireParser()
    msgs = p.feed(bytes([0x90, 60, 100, 62, 100, 64, 0, 0x80, 60, 0, 62, 0]))
    assert msgs == [(0x90, 60, 100), (0x90, 62, 100), (0x90, 64, 0), (0x80, 60, 0), (0x80, 62, 0)]
    enc = fresh()
    toks = []
    for m in msgs:
        toks += enc.message(0, m)
    assert names(toks).count("ON_60") == 1 and not enc.sounding


def test_wire_parser_realtime_inside_a_message_and_sysex():
    p = WireParser()
    msgs = p.feed(bytes([0x90, 60, 0xF8, 100, 0xF0, 1, 2, 3, 0xF7, 62]))
    assert msgs == [(0xF8,), (0x90, 60, 100), (0xF0, 1, 2, 3, 0xF7)]
    assert p.dropped["data_without_status"] == 1  # sysex cancels running status


def test_wire_parser_drops_garbage_without_raising():
    p = WireParser()
    msgs = p.feed(bytes([5, 6, 0x90, 60, 0x80, 60, 0, 0xF7, 0xF4, 0xF2, 1, 2]))
    assert msgs == [(0x80, 60, 0), (0xF2, 1, 2)]
    assert p.dropped["data_without_status"] == 2
    assert p.dropped["incomplete_message"] == 1
    assert p.dropped["stray_sysex_end"] == 1
    assert p.dropped["undefined_status"] == 1


def test_running_status_in_a_file_is_read():
    """A hand-written SMF whose track uses running status."""
    events = bytes([0x00, 0x90, 60, 100, 0x18, 62, 100, 0x18, 60, 0, 0x18, 62, 0, 0x00, 0xFF, 0x2F, 0x00])
    track = b"MTrk" + len(events).to_bytes(4, "big") + events
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + (24).to_bytes(2, "big")
    tokens, enc = encode_midi(header + track)
    assert [(e.tick, e.on, e.pitch) for e in decode_events(tokens)] == [
        (0, True, 60), (24, True, 62), (48, False, 60), (72, False, 62)]


def test_broken_midi_file_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x00\x18MTrk\x00\x00\x01\x00\x90")
    with pytest.raises(MidiFileError, match="bad.mid"):
        encode_midi(bad)
    with pytest.raises(MidiFileError, match="no such MIDI file"):
        encode_midi(tmp_path / "missing.mid")


def test_role_mapping_skips_unmapped_channels():
    perf = [(0, (0x90, 60, 100)), (0, (0x99, 36, 100)), (240, (0x80, 60, 0)), (240, (0x89, 36, 0))]
    tokens, enc = encode_midi(performance_to_file(perf, 120.0), role_of_channel={0: 0})
    assert [e.pitch for e in decode_events(tokens)] == [60, 60]
    assert enc.stats.counts["channel_not_mapped"] == 2


@settings(max_examples=100, deadline=None)
@given(perf=performances(roles=(0, 1)), cut=st.integers(0, 200))
def test_observe_follows_a_stream_written_elsewhere(perf, cut):
    """An encoder that observes the first part of a stream encodes the rest exactly as the original."""
    tokens, _ = encode_midi(performance_to_file(perf, 120.0), role_of_channel=ALL_ROLES, eos=False)
    events = decode_events(tokens, close=False)
    head = [e for e in events if e.tick < cut]
    tail = [e for e in events if e.tick >= cut]
    whole = StreamEncoder(V)
    expected = whole.begin()
    for e in events:
        expected += whole.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else whole.note_off(e.tick, e.pitch, e.role)
    writer = StreamEncoder(V)
    stream = writer.begin()
    for e in head:
        stream += writer.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else writer.note_off(e.tick, e.pitch, e.role)
    follower = StreamEncoder(V)
    for t in stream:
        follower.observe(t)
    for e in tail:
        stream += follower.note_on(e.tick, e.pitch, e.velocity, e.role) if e.on else follower.note_off(e.tick, e.pitch, e.role)
    assert stream == expected
