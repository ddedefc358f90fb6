#!/usr/bin/env bash
# Tokenizer trials side by side on one GPU, each in its own run folder with the same wall-clock budget:
#   dec-large      the shipped encoder kept (token ids unchanged), a fresh 2x-wider decoder, L1
#   dec-large-gan  the same plus the patch-GAN term from step 2,000
#   joint-large    encoder and decoder both wider, trained from scratch, L1 (a bound: new token ids)
# Constant learning rate; the EMA weights are exported. A second call with the same OUTDIR resumes.
# usage: scripts/gpu_tokenizer_trials.sh DATA MINUTES OUTDIR
set -euo pipefail
DATA=$1; MINUTES=$2; OUT=$3
mkdir -p "$OUT"
COMMON=(--data "$DATA" --minutes "$MINUTES" --steps 1000000 --schedule constant --save-every 2)
WIDE_DECODER=(--dec-channels 32 64 128 224 --dec-blocks 2)
KEEP_ENCODER=(--init assets/tokenizer --freeze-encoder --new-decoder)
trial() {
  local name=$1; shift
  python3 -m maskmamba.train tokenizer --out "$OUT/$name" --export "$OUT/$name/export" "${COMMON[@]}" "$@" \
    >"$OUT/$name.log" 2>&1
}
trial dec-large "${KEEP_ENCODER[@]}" "${WIDE_DECODER[@]}" &
trial dec-large-gan "${KEEP_ENCODER[@]}" "${WIDE_DECODER[@]}" --gan-weight 0.1 --gan-start 2000 &
trial joint-large --enc-channels 24 48 96 192 --enc-blocks 2 "${WIDE_DECODER[@]}" &
wait
