"""A phrase's voices as a listener counts them: legato overlaps are one voice, chords count whole."""

from __future__ import annotations

from engine.music.texture import HELD_TICKS, PhraseTexture


def voices(notes, at=None):
    """notes: (start, end) in ticks; the texture after feeding them in time order."""
    t = PhraseTexture()
    edges = sorted([(s, 1) for s, _ in notes] + [(e, 0) for _, e in notes], key=lambda e: (e[0], e[1]))
    for tick, on in edges:
        t.event(tick, bool(on))
    return t.peak(at if at is not None else max(e for _, e in notes))


def test_a_legato_line_with_short_overlaps_is_one_voice():
    line = [(i * 12, i * 12 + 12 + HELD_TICKS - 1) for i in range(8)]  # each key lifted just after the next
    assert voices(line) == 1


def test_a_line_whose_notes_overlap_a_sixteenth_is_two_voices():
    line = [(i * 12, i * 12 + 12 + HELD_TICKS) for i in range(8)]
    assert voices(line) == 2


def test_chords_struck_or_rolled_count_whole():
    assert voices([(0, 48), (0, 48), (0, 48)]) == 3
    assert voices([(0, 48), (1, 48), (3, 48)]) == 3  # rolled over 3 ticks


def test_a_held_bass_under_a_moving_tune_is_two_voices():
    assert voices([(0, 96)] + [(i * 12, i * 12 + 10) for i in range(8)]) == 2


def test_a_chord_still_held_counts_once_it_has_lasted_a_sixteenth():
    t = PhraseTexture()
    for _ in range(3):
        t.event(0, True)
    assert t.peak(HELD_TICKS - 1) == 0 and t.peak(HELD_TICKS) == 3


def test_a_restart_forgets_the_last_phrase_and_the_copy_is_independent():
    t = PhraseTexture()
    for _ in range(3):
        t.event(0, True)
    for _ in range(3):
        t.event(24, False)
    c = t.copy()
    t.restart(48)
    t.event(48, True)
    t.event(60, False)
    assert t.peak(60) == 1 and c.peak(48) == 3
