#!/usr/bin/env bash
# The human-playing issue's full-size comparison: plain / human-playing augmentation / augmentation + FGSM,
# each the shipped continuation model's size (2.86 M parameters) and run on the same evaluation.
#   plain:        the model trained on the scores as written (6a625f8's models/continuation.pt, 2,400 steps)
#   augmentation: the shipped models/continuation.pt (4,000 steps, then 1,500 more: continuation-human-more)
#   + FGSM:       the same 4,000-step model (cc1ec31's models/continuation.pt) trained the same 1,500 steps
#                 on with FGSM on the embeddings (continuation-human-fgsm-more; the same seed, so the same
#                 batches as the shipped run: the adversarial term is the only difference)
# Usage: scripts/experiment_full_size_robustness.sh  (about an hour on 2 CPU cores; resumable: the training
# run resumes from its checkpoint). Needs the corpus cache (`sideman data build`).
set -euo pipefail
cd "$(dirname "$0")/.."
SIDEMAN=${SIDEMAN:-.venv/bin/sideman}
DIR=runs/full-size
mkdir -p "$DIR"
[ -f "$DIR/continuation-plain.pt" ] || git show 6a625f8:models/continuation.pt > "$DIR/continuation-plain.pt"
[ -f "$DIR/continuation-human-4000.pt" ] || git show cc1ec31:models/continuation.pt > "$DIR/continuation-human-4000.pt"
FGSM=runs/continuation-human-fgsm-more/continuation-human-fgsm-more.pt
[ -f "$FGSM" ] || "$SIDEMAN" train --config continuation-human-fgsm-more --no-progress
MODELS=(--model models/continuation.pt --model "$FGSM" --model "$DIR/continuation-plain.pt")
# as played, clean and swung answers (100 test phrases, 2-bar answers, the shipped decode rules)
"$SIDEMAN" eval "${MODELS[@]}" --config continuation-human --prompts 100 --markov-order 4 --json \
    > "$DIR/eval-as-played.json"
# the clean loss on the written scores' own validation windows (the issue's 3 % budget)
"$SIDEMAN" eval "${MODELS[@]}" --config continuation --no-as-played --prompts 10 --json > "$DIR/eval-clean.json"
echo "wrote $DIR/eval-as-played.json and $DIR/eval-clean.json"
