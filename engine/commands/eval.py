"""`sideman eval`: a model against the Markov baseline and the test set (engine.train.evaluate).
Imports torch only when run."""


def add_arguments(parser) -> None:
    parser.add_argument("--model", action="append", default=None,
                        help="model file(s) to evaluate (default: models/continuation.pt)")
    parser.add_argument("--config", default="continuation", help="training config whose data and mapping to use")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--bars", type=int, default=2)
    parser.add_argument("--windows", type=int, default=64, help="validation windows for the losses")
    parser.add_argument("--markov-order", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-limit", type=int, default=None, help="pieces per collection (quick runs)")
    parser.add_argument("--no-as-played", action="store_true",
                        help="only the clean prompts (skip the as-played and swung ones)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    from engine.train.evaluate import run as eval_run

    return eval_run(args)
