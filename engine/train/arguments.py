"""The training command's arguments, for `sideman train` and for `python -m engine.train.train` (torchrun).
No torch here: the command line builds every command's parser at start."""


def add_arguments(parser) -> None:
    parser.add_argument("--config", default="continuation", help="a preset name or a .toml/.json file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--no-progress", action="store_true")
