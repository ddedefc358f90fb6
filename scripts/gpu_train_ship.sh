#!/usr/bin/env bash
# Train the shipped generators with the recipe (issue 14) on every GPU of this machine, export each in fp32, int8
# and int4 side by side, and evaluate them all with one judge: FID at the best CFG of the sweep, class accuracy,
# prompt and paraphrase top-5, and the same model in the other storage formats on the same seeds; the best scale
# is written into each exported config.json as `default_cfg`. Also trains `transformer` at the serial-half's size
# for the paper's comparison.
#
# Each run trains on one GPU with its CUDA-graphed step, PARALLEL runs per GPU (or, with DDP=1, one run at a time
# over all GPUs with torchrun: BATCH is per GPU, so a DDP run sees NGPU times the images). Resumable: rerun the same command after a lost machine. Start it detached
# (setsid ... &) so it outlives the 10-minute device command; OUT/done appears at the end.
#
#   scripts/gpu_train_ship.sh BUNDLE DATA INCEPTION STEPS
#   env: RUNS (VARIANT:SIZE items; default the four hybrids and uvit at medium, mmamba at small, transformer at
#        medium), SHIPPED (the variants recorded as shipped: all but transformer), BATCH (256 per GPU), PARALLEL (2), DDP (0), STORAGE (the format scored first and recorded as
#        shipped: int8), TOKENIZER (assets/tokenizer), PARAPHRASES (assets/eval/paraphrases.json),
#        TRAIN_FLAGS (extra recipe flags, e.g. "--dropout 0.1 --weight-decay 0.05"), EVAL_FLAGS, OUT (runs/ship)
#   Ship: copy OUT/pack/VARIANT/{config.json,classes.json,training.json} and the chosen weights file to assets/VARIANT/.
set -uo pipefail
BUNDLE=$1 DATA=$2 INCEPTION=$3 STEPS=$4
RUNS=${RUNS:-"maskmamba-serial-half:medium uvit:medium transformer:medium maskmamba-serial-interleave:medium maskmamba-parallel-2:medium maskmamba-parallel-4:medium mmamba:small"}
BATCH=${BATCH:-256} PARALLEL=${PARALLEL:-2} DDP=${DDP:-0} STORAGE=${STORAGE:-int8}
TOKENIZER=${TOKENIZER:-assets/tokenizer} PARAPHRASES=${PARAPHRASES:-assets/eval/paraphrases.json}
TRAIN_FLAGS=${TRAIN_FLAGS:-} EVAL_FLAGS=${EVAL_FLAGS:-} OUT=${OUT:-runs/ship}
SHIPPED=${SHIPPED:-maskmamba-serial-half,maskmamba-serial-interleave,maskmamba-parallel-2,maskmamba-parallel-4,uvit,mmamba}
NGPU=$(nvidia-smi -L | wc -l)
export BUNDLE STEPS BATCH TRAIN_FLAGS OUT NGPU OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
mkdir -p "$OUT/logs" "$OUT/pack" "$OUT/eval"
rm -f "$OUT/done"
bash scripts/gpu_install_mamba.sh > "$OUT/logs/mamba_install.log" 2>&1 || echo "mamba-ssm unavailable: PyTorch scan" >> "$OUT/logs/mamba_install.log"

train_one() {  # VARIANT:SIZE [LAUNCHER...]; the exported folder is OUT/pack/VARIANT
  local item=$1 variant=${1%%:*} size=${1#*:}; shift
  "$@" -m maskmamba.train generator --variant "$variant" --size "$size" --data "$BUNDLE" --out "$OUT/$variant" \
    --steps "$STEPS" --batch "$BATCH" --minutes 600 --export "$OUT/pack/$variant" --storage fp32,int8,int4 \
    $TRAIN_FLAGS >> "$OUT/logs/$variant.log" 2>&1
}
export -f train_one
if [ "$DDP" = 1 ]; then
  for item in $RUNS; do train_one "$item" torchrun --standalone --nproc-per-node "$NGPU"; done
else
  printf '%s\n' $RUNS | xargs -P $(( PARALLEL * NGPU )) --process-slot-var=SLOT -L1 \
    bash -c 'CUDA_VISIBLE_DEVICES=$(( SLOT % NGPU )) train_one "$0" python3'
fi
for item in $RUNS; do v=${item%%:*}; cp "$OUT/$v/curves.png" "$OUT/eval/${v}_curves.png" 2>/dev/null; cp "$OUT/$v/curves.json" "$OUT/eval/${v}_curves.json" 2>/dev/null; done

VARIANT_LIST=$(for item in $RUNS; do printf '%s,' "${item%%:*}"; done)
python3 -m maskmamba.eval generator --data "$DATA" --checkpoints "$OUT/pack" --variants "${VARIANT_LIST%,}" \
  --tokenizer "$TOKENIZER" --inception "$INCEPTION" --device cuda --paraphrases "$PARAPHRASES" \
  --storage "$STORAGE" --compare-storage "$(echo fp32,int8,int4 | sed "s/$STORAGE//; s/,,/,/; s/^,//; s/,$//")" \
  --shipped "$SHIPPED" --write-default-cfg --work "$OUT/judge" --out "$OUT/eval/generators.json" --plots "$OUT/eval" \
  $EVAL_FLAGS > "$OUT/logs/eval.log" 2>&1
touch "$OUT/done"
