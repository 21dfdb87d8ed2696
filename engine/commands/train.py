"""`sideman train --config NAME`: train a model (engine.train.train); also runs under torchrun as
`torchrun --nproc_per_node 2 -m engine.train.train --config NAME`. Imports torch only when run."""


def add_arguments(parser) -> None:
    parser.add_argument("--config", default="continuation", help="a preset name or a .toml/.json file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a field")
    parser.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from engine.train.train import run as train_run

    return train_run(args)
