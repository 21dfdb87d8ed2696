"""The listener's accompaniment metrics: presence of each voice inside the melody."""

from engine.music.harmony import accompaniment_metrics, voice_presence
from engine.music.metrics import Note


def test_voice_presence_counts_each_voices_notes_and_longest_silence_inside_the_melodies():
    notes = [Note(0, 500, 60, 64, 1), Note(500, 1000, 62, 64, 1), Note(2500, 3000, 64, 64, 1),  # alto: 1.5 s gap
             Note(200, 900, 50, 64, 2),  # tenor: silent from 0.9 s to the span's end
             Note(5000, 5500, 40, 64, 3)]  # bass: outside the span
    out = voice_presence(notes, [(0.0, 4000.0)], beat=500.0)
    assert out[1] == {"notes": 3, "longest_silence_beats": 3.0, "longest_note_beats": 1.0}
    assert out[2] == {"notes": 1, "longest_silence_beats": 6.2, "longest_note_beats": 1.4}
    assert out[3] == {"notes": 0, "longest_silence_beats": 8.0, "longest_note_beats": 0.0}


def test_the_metrics_report_the_worst_voices_silence_and_longest_note_inside_the_melody():
    beat = 24
    melody = [Note(i * beat, (i + 1) * beat, 72, 80, 0) for i in range(16)]  # 4 bars of quarter notes
    alto = [Note(i * beat, (i + 1) * beat, 67, 64, 1) for i in range(16)]  # on every beat
    bass = [Note(0, 2 * beat, 48, 64, 3), Note(10 * beat, 16 * beat, 48, 64, 3)]  # out beats 2-10, then 6 held
    m = accompaniment_metrics(melody + alto + bass, bar_ticks=4 * beat, beat_ticks=beat)
    assert m.longest_silence_beats == 8.0
    assert m.longest_note_beats == 6.0
    steady = accompaniment_metrics(melody + alto, bar_ticks=4 * beat, beat_ticks=beat)
    assert steady.longest_silence_beats == 0.0 and steady.longest_note_beats == 1.0
