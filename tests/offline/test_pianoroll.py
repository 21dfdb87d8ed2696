"""Piano-roll pictures from real MIDI files: parts, bar lines, header, and a valid PNG."""

from __future__ import annotations

import struct

import mido
import pytest

from engine.errors import MidiFileError
from engine.offline.pianoroll import PLAYER, draw_piano_roll, read_roll

TPB = 480
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def two_part_file(path, named_tracks: bool = False, numerator: int = 4) -> None:
    """A player phrase on channel 0 (bars 1-2) answered by a sideman part on channel 1 (bars 3-4)."""
    mid = mido.MidiFile(ticks_per_beat=TPB)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(100)))
    meta.append(mido.MetaMessage("time_signature", numerator=numerator, denominator=4))
    mid.tracks.append(meta)
    bar = numerator * TPB
    for name, channel, first_bar, pitches in (
        ("player", 0, 0, [60, 62, 64, 65, 67, 65, 64, 62]),
        ("sideman bass", 1, 2, [48, 43, 48, 43]),
    ):
        track = mido.MidiTrack()
        if named_tracks:
            track.append(mido.MetaMessage("track_name", name=name))
        step = 2 * bar // len(pitches)
        track.append(mido.Message("note_on", channel=channel, note=pitches[0], velocity=90, time=first_bar * bar))
        for i, pitch in enumerate(pitches):
            if i:
                track.append(mido.Message("note_on", channel=channel, note=pitch, velocity=90, time=0))
            track.append(mido.Message("note_off", channel=channel, note=pitch, velocity=0, time=step))
        mid.tracks.append(track)
    mid.save(path)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_parts_by_channel_bars_and_tempo(tmp_path):
    midi = tmp_path / "call_and_response.mid"
    two_part_file(midi)
    roll = read_roll(midi)
    parts = {n.part for n in roll.notes}
    assert parts == {PLAYER, "sideman ch 1"}
    assert sum(n.part == PLAYER for n in roll.notes) == 8
    assert sum(n.part != PLAYER for n in roll.notes) == 4
    assert roll.tempo_bpm == pytest.approx(100)
    assert roll.time_signature == (4, 4)
    assert roll.length == pytest.approx(16.0)  # four bars of 4/4
    assert roll.bar_lines == (0.0, 4.0, 8.0, 12.0, 16.0)
    assert roll.title == "call_and_response"
    assert min(n.start for n in roll.notes if n.part != PLAYER) == pytest.approx(8.0)


def test_parts_by_track_name_and_three_four(tmp_path):
    midi = tmp_path / "named.mid"
    two_part_file(midi, named_tracks=True, numerator=3)
    roll = read_roll(midi, title="a waltz")
    assert {n.part for n in roll.notes} == {PLAYER, "sideman bass"}
    assert roll.bar_lines == (0.0, 3.0, 6.0, 9.0, 12.0)
    assert roll.title == "a waltz"


def test_png_from_a_two_part_file(tmp_path):
    midi = tmp_path / "two_parts.mid"
    two_part_file(midi)
    png = draw_piano_roll(midi, tmp_path / "out" / "roll.png")
    width, height = png_size(png)
    assert (width, height) == (1200, 500)
    assert 10_000 < png.stat().st_size < 2_000_000


def test_cli_roll(tmp_path):
    from engine.cli import main

    midi = tmp_path / "two_parts.mid"
    two_part_file(midi, named_tracks=True)
    assert main(["-q", "roll", str(midi), "-o", str(tmp_path / "r.png"), "--width", "8", "--height", "4"]) == 0
    assert png_size(tmp_path / "r.png") == (800, 400)


def test_empty_file_still_draws(tmp_path):
    midi = tmp_path / "empty.mid"
    mido.MidiFile(tracks=[mido.MidiTrack()]).save(midi)
    png_size(draw_piano_roll(midi, tmp_path / "empty.png"))


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.mid"
    bad.write_text("no")
    with pytest.raises(MidiFileError, match="bad.mid"):
        draw_piano_roll(bad, tmp_path / "bad.png")
