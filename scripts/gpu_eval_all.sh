#!/usr/bin/env bash
# Once runs/train.done exists, evaluate every variant in runs/pack (FID sweep, class and prompt accuracy,
# paraphrase top-5 on $PARAPHRASES, whose MiniLM states `python -m maskmamba.eval paraphrase-states` caches,
# curves for maskmamba-serial-half) into runs/eval/generators.json and runs/eval/plots; runs/eval.done marks
# the end. Start it detached (setsid) like gpu_train_all.sh.
#
#   scripts/gpu_eval_all.sh DATA INCEPTION [more options of python -m maskmamba.eval generator]
set -uo pipefail
DATA=$1 INCEPTION=$2
shift 2
export PYTHONUNBUFFERED=1
mkdir -p runs/eval
rm -f runs/eval.done
while [ ! -f runs/train.done ]; do sleep 5; done
P=runs/pack/maskmamba-serial-half
python3 -m maskmamba.eval generator --data "$DATA" --checkpoints runs/pack --device cuda --inception "$INCEPTION" \
  --position-runs "head=$P@head,middle=$P,tail=$P@tail" --work runs/eval/work \
  --paraphrases "${PARAPHRASES:-assets/eval/paraphrases.json}" --out runs/eval/generators.json --plots runs/eval/plots "$@" \
  > runs/eval/eval.log 2>&1
touch runs/eval.done
