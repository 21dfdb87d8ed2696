"""Offline tools on MIDI files: continuing a phrase, drawing piano rolls."""
