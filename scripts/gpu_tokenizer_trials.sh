#!/usr/bin/env bash
# Tokenizer trials side by side, one per GPU (round robin when there are fewer GPUs), each in its own run folder
# with the same wall-clock budget, cosine schedule over --steps, shift+flip augmentation; the EMA weights are
# exported to OUTDIR/NAME/export. A second call with the same OUTDIR resumes.
#   fsq1000        levels 8 5 5 5 (1,000 codes), the v1 shape
#   fsq1920        levels 8 8 6 5 (1,920 codes)
#   fsq2560        levels 8 8 8 5 (2,560 codes)
#   fsq2560-wdec   levels 8 8 8 5, decoder widened to 32 64 96 144 (3.9 MB fp16)
# usage: scripts/gpu_tokenizer_trials.sh DATA MINUTES OUTDIR [STEPS]
set -euo pipefail
DATA=$1; MINUTES=$2; OUT=$3; STEPS=${4:-15000}
mkdir -p "$OUT"
NGPU=$(nvidia-smi -L | wc -l)
COMMON=(--data "$DATA" --minutes "$MINUTES" --steps "$STEPS" --augment --save-every 3)
i=0
trial() {
  local name=$1; shift
  CUDA_VISIBLE_DEVICES=$((i % NGPU)) python3 -m maskmamba.train tokenizer --out "$OUT/$name" \
    --export "$OUT/$name/export" "${COMMON[@]}" "$@" >"$OUT/$name.log" 2>&1 &
  i=$((i + 1))
}
trial fsq1000 --levels 8 5 5 5
trial fsq1920 --levels 8 8 6 5
trial fsq2560 --levels 8 8 8 5
trial fsq2560-wdec --levels 8 8 8 5 --dec-channels 32 64 96 144
wait
