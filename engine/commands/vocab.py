"""`sideman vocab`: print the token vocabulary layout (same as `python -m engine.music.vocab`)."""

from engine.music import vocab


def add_arguments(parser) -> None:
    pass


def run(args) -> int:
    vocab.main()
    return 0
