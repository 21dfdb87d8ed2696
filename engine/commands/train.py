"""`sideman train --config NAME`: train a model (engine.train.train); also runs under torchrun as
`torchrun --nproc_per_node 2 -m engine.train.train --config NAME`. The restyle model's configs (restyle,
restyle-phrase, restyle-mmd, restyle-mmd-anchor, restyle-noadv, restyle-anchor-noadv and the tiny runs) go to engine.train.train_restyle, the style
classifier's (style-classifier, tiny-style-classifier) to engine.train.style_classifier, the restyle critic's
(restyle-critic, restyle-critic-gan and their tiny runs) to engine.train.train_critic, the decoder taught its
critic's picks (restyle-picks, tiny-restyle-picks) to engine.train.train_picks, the decoder taught by
back-translation (restyle-back, tiny-restyle-back) to engine.train.train_backtranslate, the pick's n-gram critic
(style-ngram, tiny-style-ngram) to engine.train.train_style_ngram. Imports torch only when run."""

from engine.train.arguments import add_arguments

__all__ = ["add_arguments", "run"]

RESTYLE_CONFIGS = ("restyle", "restyle-phrase", "restyle-mmd", "restyle-mmd-anchor", "restyle-noadv",
                   "restyle-anchor-noadv", "tiny-restyle", "tiny-restyle-anchor")  # its PRESETS
CLASSIFIER_CONFIGS = ("style-classifier", "tiny-style-classifier")
PICKS_CONFIGS = ("restyle-picks", "tiny-restyle-picks")
BACK_CONFIGS = ("restyle-back", "tiny-restyle-back")
NGRAM_CONFIGS = ("style-ngram", "tiny-style-ngram")
CRITIC_CONFIGS = ("restyle-critic", "tiny-restyle-critic",
                  "restyle-critic-gan", "tiny-restyle-critic-gan")


def run(args) -> int:
    import json

    overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.config in RESTYLE_CONFIGS:
        from engine.train.train_restyle import load_restyle_config, train_restyle

        print(json.dumps(train_restyle(load_restyle_config(args.config, overrides), resume=not args.fresh,
                                       progress=not args.no_progress), indent=2))
        return 0
    if args.config in CRITIC_CONFIGS:
        from engine.train.train_critic import load_critic_config, train_critic

        print(json.dumps(train_critic(load_critic_config(args.config, overrides)), indent=2))
        return 0
    if args.config in PICKS_CONFIGS:
        from engine.train.train_picks import load_picks_config, train_picks

        print(json.dumps(train_picks(load_picks_config(args.config, overrides)), indent=2))
        return 0
    if args.config in BACK_CONFIGS:
        from engine.train.train_backtranslate import load_back_config, train_backtranslate

        print(json.dumps(train_backtranslate(load_back_config(args.config, overrides)), indent=2))
        return 0
    if args.config in NGRAM_CONFIGS:
        from engine.train.train_style_ngram import load_style_ngram_config, train_style_ngram

        print(json.dumps(train_style_ngram(load_style_ngram_config(args.config, overrides)), indent=2))
        return 0
    if args.config in CLASSIFIER_CONFIGS:
        from dataclasses import replace

        from engine.train.style_classifier import PRESETS, train_classifier

        cfg = replace(PRESETS[args.config], **{k: type(getattr(PRESETS[args.config], k))(v)
                                               for k, v in overrides.items()})
        summary = train_classifier(cfg)
        print(json.dumps({k: summary[k] for k in ("path", "metrics")}, indent=2))
        return 0
    from engine.train.train import run as train_run

    return train_run(args)
