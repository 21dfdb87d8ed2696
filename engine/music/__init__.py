"""The music and its tokens: the vocabulary, the stream tokenizer, MIDI files, what a listener measures.
Never imports torch."""
