#!/usr/bin/env bash
# One GPU-machine command that trains the tokenizer's decoder (GAN fine-tune, encoder frozen so token ids do
# not change) and every generator in RUNS, spread round-robin over the visible GPUs, then packs the
# exports (int8 generators, fp16 tokenizer) for the trip back.
#
#   scripts/gpu_train_all.sh DATA TOKENIZER_INIT OUT STEPS MINUTES
#   RUNS="transformer maskmamba-serial-half@head ..." overrides the list; NAME@POS trains at that condition position.
#
# DATA holds the shards, tokens.safetensors, captions.safetensors and manifest.json. mamba-ssm is built from
# its sdist in .gpu/ in the background (the GPU machine has no registry); Mamba-based runs start once it is
# installed, with the same step count as the others (same token budget), so they get less wall time.
set -uo pipefail
DATA=$1 TOK=$2 OUT=$3 STEPS=$4 MINUTES=$5
RUNS=${RUNS:-"transformer uvit maskmamba-serial-half maskmamba-serial-interleave maskmamba-parallel-2 maskmamba-parallel-4 bimamba-v2 bimamba-vim mmamba maskmamba-serial-half@head maskmamba-serial-half@tail"}
START=$(date +%s)
NGPU=$(nvidia-smi -L | wc -l)
export OMP_NUM_THREADS=4 PYTHONUNBUFFERED=1
mkdir -p "$OUT/pack" "$OUT/logs" runs
left() { python3 -c "print(max(0.5, $MINUTES - ($(date +%s) - $START) / 60))"; }

python3 -c "import mamba_ssm" 2>/dev/null && touch /tmp/mamba.ready || (
  MAX_JOBS=$(nproc) bash .gpu/build-wheels.sh /tmp/wheels mamba_ssm > "$OUT/logs/mamba_build.log" 2>&1 &&
  python3 -m pip install -q --no-deps --no-index /tmp/wheels/mamba_ssm-*.whl >> "$OUT/logs/mamba_build.log" 2>&1 &&
  touch /tmp/mamba.ready) &

[ "${TOK_STEPS:-7000}" -gt 0 ] && CUDA_VISIBLE_DEVICES=0 python3 -m maskmamba.train tokenizer --data "$DATA" --out runs/tokgan --init "$TOK" \
  --freeze-encoder --gan-weight 0.5 --gan-start 0 --lr 2e-4 --warmup 200 --steps ${TOK_STEPS:-7000} \
  --minutes "$(left)" --export "$OUT/pack/tokenizer" > "$OUT/logs/tokenizer.log" 2>&1 &

train() {  # name gpu
  local variant=${1%@*} position=middle
  [[ $1 == *@* ]] && position=${1#*@}
  CUDA_VISIBLE_DEVICES=$2 python3 -m maskmamba.train generator --variant "$variant" --cond-position "$position" \
    --data "$DATA" --out "runs/$1" --steps "$STEPS" --minutes "$(left)" --export "$OUT/pack/$1" --int8 \
    > "$OUT/logs/$1.log" 2>&1
}
i=1
for run in $RUNS; do
  gpu=$(( i % NGPU )); i=$((i + 1))
  case ${run%@*} in
    transformer|uvit) train "$run" "$gpu" & ;;
    *) ( while [ ! -f /tmp/mamba.ready ] && [ $(( $(date +%s) - START )) -lt 400 ]; do sleep 5; done; train "$run" "$gpu" ) & ;;
  esac
done
wait
for run in runs/*/; do cp "$run/log.jsonl" "$OUT/logs/$(basename "$run").jsonl" 2>/dev/null; done
tar cf "$OUT/logs.tar" -C "$OUT" logs && rm -r "$OUT/logs"
tar cf - -C "$OUT" pack | split -b 15M - "$OUT/pack.tar.part." && rm -r "$OUT/pack"
ls -la "$OUT"
grep -h '"event": "stop"' runs/*/log.jsonl | cut -c1-200
