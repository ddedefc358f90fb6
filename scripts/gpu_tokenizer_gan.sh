#!/usr/bin/env bash
# Decoder-only fine-tunes of a trained tokenizer with the encoder frozen, so its token ids (and every generator
# trained on them) stay valid: the L1 loss plus a patch-GAN term, with and without discriminator feature matching.
# One run per GPU from FIRST_GPU on; each exports its EMA weights to OUTDIR/NAME/export. Resumes like the trainer.
# usage: [FIRST_GPU=0] scripts/gpu_tokenizer_gan.sh INIT DATA MINUTES OUTDIR
set -euo pipefail
INIT=$1; DATA=$2; MINUTES=$3; OUT=$4; GPU=${FIRST_GPU:-0}
mkdir -p "$OUT"
COMMON=(--init "$INIT" --freeze-encoder --data "$DATA" --minutes "$MINUTES" --steps 1000000 --schedule constant
        --lr 1e-4 --warmup 200 --augment --gan-weight 0.1 --gan-start 0 --save-every 3)
trial() {
  local name=$1; shift
  CUDA_VISIBLE_DEVICES=$GPU python3 -m maskmamba.train tokenizer --out "$OUT/$name" --export "$OUT/$name/export" \
    "${COMMON[@]}" "$@" >"$OUT/$name.log" 2>&1 &
  GPU=$((GPU + 1))
}
trial dec-gan
trial dec-gan-fm --fm-weight 1
wait
