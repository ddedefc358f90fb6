#!/usr/bin/env bash
# The scaling study (issue 14) on every GPU of this machine: each of VARIANTS at each of SIZES trained with the
# recipe for the same IMAGES images seen (steps = IMAGES / BATCH), one run per free slot (PARALLEL runs per GPU,
# each on one GPU with its CUDA-graphed step), an EMA snapshot every 1/SNAPSHOTS of the steps, every snapshot scored
# by one judge (FID of EVAL_N class-conditioned images at the best scale of SWEEP, class accuracy, prompt and
# paraphrase top-5), then collected into OUT/scaling.json and OUT/scaling_*.png (copy them to assets/results/).
#
# Resumable: a run continues from its checkpoint and finished evaluations are kept, so the same command picks up
# after a lost machine. Start it detached (setsid ... &) so it outlives the 10-minute device command; OUT/done
# appears when everything has finished; OUT/logs has one log per run.
#
#   scripts/gpu_scaling.sh BUNDLE DATA INCEPTION
#     BUNDLE: `python -m maskmamba.data pack` output (tokens, captions, classes); DATA: the built data set (pixels,
#     for the judge and FID); INCEPTION: the TF-Inception TorchScript file.
#   env: VARIANTS ("maskmamba-serial-half transformer uvit"), SIZES ("small mid medium"), IMAGES (3840000),
#        BATCH (256), SNAPSHOTS (4), PARALLEL (2), EVAL_N (2000), SWEEP (1,2,3), TOKENIZER (assets/tokenizer),
#        PARAPHRASES (assets/eval/paraphrases.json), TRAIN_FLAGS (extra recipe flags, e.g. "--dropout 0.1"), OUT
set -uo pipefail
BUNDLE=$1 DATA=$2 INCEPTION=$3
VARIANTS=${VARIANTS:-"maskmamba-serial-half transformer uvit"}
SIZES=${SIZES:-"small mid medium"}
IMAGES=${IMAGES:-3840000} BATCH=${BATCH:-256} SNAPSHOTS=${SNAPSHOTS:-4} PARALLEL=${PARALLEL:-2}
EVAL_N=${EVAL_N:-2000} SWEEP=${SWEEP:-1,2,3} TOKENIZER=${TOKENIZER:-assets/tokenizer}
PARAPHRASES=${PARAPHRASES:-assets/eval/paraphrases.json} TRAIN_FLAGS=${TRAIN_FLAGS:-} OUT=${OUT:-runs/scaling}
STEPS=$(( IMAGES / BATCH ))
NGPU=$(nvidia-smi -L | wc -l)
export BUNDLE DATA INCEPTION BATCH STEPS SNAPSHOTS EVAL_N SWEEP TOKENIZER PARAPHRASES TRAIN_FLAGS OUT NGPU
export OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs" "$OUT/eval"
rm -f "$OUT/done"
bash scripts/gpu_install_mamba.sh > "$OUT/logs/mamba_install.log" 2>&1 || echo "mamba-ssm unavailable: PyTorch scan" >> "$OUT/logs/mamba_install.log"

evaluate() {  # FOLDER (holding VARIANT/) OUTFILE VARIANT; GPU from CUDA_VISIBLE_DEVICES
  python3 -m maskmamba.eval generator --data "$DATA" --checkpoints "$1" --variants "$3" --tokenizer "$TOKENIZER" \
    --inception "$INCEPTION" --device cuda --n "$EVAL_N" --sweep "$SWEEP" --sweep-n "$EVAL_N" --steps-curve "" \
    --paraphrases "$PARAPHRASES" --work "$OUT/judge" --out "$2" --plots "$OUT/eval/plots"
}
export -f evaluate

# one judge for every run: train it (and the real features) once, before the runs evaluate in parallel
[ -f "$OUT/judge/classifier/classifier.json" ] || CUDA_VISIBLE_DEVICES=0 evaluate "$OUT" "$OUT/eval/judge.json" "" > "$OUT/logs/judge.log" 2>&1

run_one() {  # VARIANT@SIZE; xargs sets SLOT, so each GPU holds PARALLEL runs at most
  local name=$1 variant=${1%@*} size=${1#*@}
  export CUDA_VISIBLE_DEVICES=$(( SLOT % NGPU ))
  python3 -m maskmamba.train generator --variant "$variant" --size "$size" --data "$BUNDLE" --out "$OUT/$name" \
    --steps "$STEPS" --batch "$BATCH" --snapshot-every $(( STEPS / SNAPSHOTS )) --eval-every $(( STEPS / 20 > 0 ? STEPS / 20 : 1 )) \
    --minutes 600 $TRAIN_FLAGS > "$OUT/logs/$name.log" 2>&1
  mkdir -p "$OUT/eval/$name"
  for snap in "$OUT/$name"/snapshots/*/; do
    local step; step=$(basename "$snap")
    [ -f "$OUT/eval/$name/$step.json" ] || evaluate "$snap" "$OUT/eval/$name/$step.json" "$variant" >> "$OUT/logs/$name.eval.log" 2>&1
  done
}
export -f run_one
for size in $SIZES; do for variant in $VARIANTS; do echo "$variant@$size"; done; done \
  | xargs -P $(( PARALLEL * NGPU )) --process-slot-var=SLOT -L1 bash -c 'run_one "$0"'
python3 -m maskmamba.eval scaling --runs "$OUT" --out "$OUT/scaling.json" --plots "$OUT" > "$OUT/logs/collect.log" 2>&1
for name in "$OUT"/*@*/; do cp "$name/curves.png" "$OUT/eval/$(basename "$name")_curves.png" 2>/dev/null; done
touch "$OUT/done"
