"""The training corpus: music21's bundled collections and the user's MIDI files, parsed once.

- `piece`: a parsed piece (notes per part, bar grid) and its tokens under a role mapping;
- `music21_source` / `midi_source`: which files make each collection, and file -> `Piece`;
- `build`: parallel parse into a cache keyed by the vocabulary hash (`sideman data build`);
- `dataset`: token arrays by split and collection, training windows, transposition.

Nothing here is imported at runtime by the daemon.
"""
