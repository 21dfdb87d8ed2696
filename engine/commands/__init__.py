"""Subcommands of the `sideman` CLI; each module has `add_arguments(parser)` and `run(args) -> int`."""
