"""`sideman eval`: a model against the Markov baseline and the test set (see engine.train.evaluate)."""

from engine.train.evaluate import add_arguments, run  # noqa: F401
