#!/usr/bin/env bash
# One generator training on one GPU or on several under torchrun (DistributedDataParallel).
#
#   scripts/launch_train.sh GPUS TRAINER_ARGS...
#     GPUS: a GPU index, or several joined by + (0+1); each taken modulo NGPU (default: every GPU of this machine).
#     BATCH (256) is the global batch: each of n processes gets BATCH / n. DEVICE=cpu runs one process.
set -euo pipefail
gpus=$1; shift
BATCH=${BATCH:-256} DEVICE=${DEVICE:-cuda}
NGPU=${NGPU:-$( [ "$DEVICE" = cuda ] && nvidia-smi -L | wc -l || echo 1 )}
list=""
for g in ${gpus//+/ }; do list+="${list:+,}$(( g % NGPU ))"; done
n=$(( $(tr -cd , <<< "$list" | wc -c) + 1 ))
(( BATCH % n == 0 )) || { echo "batch $BATCH does not split over $n GPUs" >&2; exit 2; }
[ "$DEVICE" = cuda ] && export CUDA_VISIBLE_DEVICES=$list
if (( n > 1 )) && [ "$DEVICE" = cuda ]; then
  exec python3 -m torch.distributed.run --standalone --nproc-per-node "$n" -m maskmamba.train generator "$@" \
    --batch $(( BATCH / n ))
fi
exec python3 -m maskmamba.train generator "$@" --batch "$BATCH"
