"""`sideman train --config NAME`: train a model (engine.train.train); also runs under torchrun as
`torchrun --nproc_per_node 2 -m engine.train.train --config NAME`. Imports torch only when run."""

from engine.train.arguments import add_arguments

__all__ = ["add_arguments", "run"]


def run(args) -> int:
    from engine.train.train import run as train_run

    return train_run(args)
