"""`sideman train --config NAME`: train a model (see engine.train.train); also runs under torchrun."""

from engine.train.train import add_arguments, run  # noqa: F401
