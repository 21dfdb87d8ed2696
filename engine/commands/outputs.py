"""What an offline command writes beside its MIDI file on request: a WAV render and a piano roll."""

from __future__ import annotations


def write_wav_and_png(midi_path: str, wav: str | None, png: str | None, title: str) -> None:
    """Render `midi_path` to `wav` (FluidSynth) and draw it to `png`, each when given; say what was written."""
    if wav:
        from engine.audio.render import render_midi

        render_midi(midi_path, wav)
        print(f"wrote {wav}")
    if png:
        from engine.offline.pianoroll import draw_piano_roll

        draw_piano_roll(midi_path, png, title=title)
        print(f"wrote {png}")
