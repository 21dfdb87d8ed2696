"""`sideman eval`: a model against the Markov baseline and the test set (engine.train.evaluate).
Imports torch only when run."""


def add_arguments(parser) -> None:
    parser.add_argument("--task", choices=("continue", "accompany", "restyle"), default="continue",
                        help="continue: answers to phrases (default); accompany: voices under held-out melodies; "
                             "restyle: held-out phrases into every other style")
    parser.add_argument("--model", action="append", default=None,
                        help="model file(s) to evaluate (default: models/continuation.pt, or "
                             "models/accompaniment.pt with --task accompany)")
    parser.add_argument("--config", default=None,
                        help="training config whose data and mapping to use (default: continuation, or accompaniment)")
    parser.add_argument("--prompts", type=int, default=None,
                        help="prompts (continue, default 100) or test pieces (accompany, default 40)")
    parser.add_argument("--bars", type=int, default=None, help="answer length (default 2), or the bars of each "
                        "test piece accompanied (default 8)")
    parser.add_argument("--windows", type=int, default=64, help="validation windows for the losses")
    parser.add_argument("--markov-order", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-limit", type=int, default=None, help="pieces per collection (quick runs)")
    parser.add_argument("--no-as-played", action="store_true",
                        help="only the clean prompts (skip the as-played and swung ones)")
    parser.add_argument("--ablation", default=None,
                        help="restyle: the model trained without the latent adversary, for the probe's comparison")
    parser.add_argument("--candidates", type=int, default=16,
                        help="restyle: candidates the critics choose among in the critic variants (default 16)")
    parser.add_argument("--temperature", type=float, default=0.8, help="restyle: the sampling temperature")
    parser.add_argument("--guidance", type=float, default=1.5,
                        help="restyle: the guidance of the guided rows (the unguided rows are 0)")
    parser.add_argument("--probe-only", action="store_true", help="restyle: only the probe on z (model, ablation)")
    parser.add_argument("--classifier", default=None,
                        help="restyle: the independent style classifier that judges (default "
                             "models/style-classifier.pt)")
    parser.add_argument("--no-rebar", action="store_true",
                        help="restyle: the model writes in the phrase's own bar lines, not the target style's")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args) -> int:
    if args.task == "restyle":
        import json
        from pathlib import Path

        from engine.train.evaluate_restyle import evaluate_restyle, format_report

        model = (args.model or [str(Path(__file__).resolve().parents[2] / "models" / "restyle.pt")])[0]
        r = evaluate_restyle(model, args.ablation, per_style=args.prompts or 20, seed=args.seed,
                             temperature=args.temperature, candidates=args.candidates,
                             as_played=not args.no_as_played, data_limit=args.data_limit or 0,
                             probe_only=args.probe_only, guidance=args.guidance, rebar=not args.no_rebar,
                             **({"classifier": args.classifier} if args.classifier else {}))
        print(json.dumps(r, indent=2) if args.json else format_report(r))
        return 0
    if args.task == "accompany":
        import json
        from pathlib import Path

        from engine.train.evaluate_accompany import evaluate_accompany, format_report

        models = args.model or [str(Path(__file__).resolve().parents[2] / "models" / "accompaniment.pt")]
        r = evaluate_accompany(models, args.config or "accompaniment", args.prompts or 40,
                               args.bars or 8, args.windows, args.markov_order, args.seed, args.data_limit,
                               as_played=not args.no_as_played)
        print(json.dumps(r, indent=2) if args.json else format_report(r))
        return 0
    from engine.train.evaluate import run as eval_run

    args.config = args.config or "continuation"
    args.bars = args.bars or 2
    args.prompts = args.prompts or 100
    return eval_run(args)
