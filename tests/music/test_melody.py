"""A melody phrase: one line from any notes, its RESTYLE stream and back, the style table."""

import numpy as np
import pytest

from engine.errors import SidemanError
from engine.music.melody import Melody, decode_melody, encode_melody, one_line
from engine.music.styles import STYLE_NAMES, all_collections, style_index, style_of_collection
from engine.music.tokens import Meter
from engine.music.vocab import DEFAULT_VOCAB as V


def test_one_line_keeps_the_top_of_a_chord_and_cuts_each_note_where_the_next_begins():
    notes = np.asarray([(0, 30, 60, 80), (0, 30, 67, 80), (24, 48, 64, 70), (48, 60, 62, 90)], dtype=np.int32)
    line = one_line(notes)
    assert line.tolist() == [[0, 24, 67, 80], [24, 48, 64, 70], [48, 60, 62, 90]]


def test_the_stream_names_no_style_and_decodes_back_to_the_phrase_cut_at_its_end():
    m = Melody(np.asarray([(0, 20, 62, 80), (24, 48, 66, 80), (48, 100, 69, 80)], dtype=np.int32), Meter(3, 4), 1)
    tokens = encode_melody(m)
    assert tokens[:4] == [V.bos, V.task("RESTYLE"), V.style("none"), V.bar]
    assert tokens[-1] == V.eos and sum(1 for t in tokens if t == V.bar) == 2  # a 3/4 bar (72 ticks), its two bar lines
    back = decode_melody(tokens, m.meter, m.bars)
    assert back.notes[:, :3].tolist() == [[0, 20, 62], [24, 48, 66], [48, 72, 69]]  # the last cut at 72


def test_decode_drops_what_starts_after_the_end_and_closes_what_sounds_there():
    enc = [V.bos, V.task("RESTYLE"), V.style("none"), V.bar, V.role(0), V.velocity(4), V.note_on(60),
           V.shift(96), V.bar, V.note_on(62), V.shift(10), V.note_off(62)]
    back = decode_melody(enc, Meter(4, 4), 1)
    assert back.notes[:, :3].tolist() == [[0, 96, 60]]


def test_styles_cover_the_collections_once_and_bad_names_say_the_choices():
    assert STYLE_NAMES == ("chorale", "folksong", "fiddle", "renaissance", "medieval")
    assert len(all_collections()) == len(set(all_collections())) == 8
    assert style_of_collection("ryan") == "fiddle" and style_index("Renaissance") == 3
    with pytest.raises(SidemanError, match="choose one of chorale, folksong"):
        style_index("jazz")
