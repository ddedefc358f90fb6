#!/usr/bin/env bash
# Train every generator in RUNS to the same STEPS (same token budget) on this machine's GPUs, PARALLEL runs
# per GPU at a time, slowest first, each exporting int8 EMA weights to runs/pack/NAME. Resumable: a run that
# finds its checkpoint continues. Start it detached (setsid) to outlive the device command that starts it;
# runs/train.done appears when every run has stopped.
#
#   scripts/gpu_train_all.sh DATA STEPS
#   RUNS="transformer maskmamba-serial-half@head ..." overrides the list; NAME@POS trains at that condition position.
set -uo pipefail
DATA=$1 STEPS=$2
RUNS=${RUNS:-"mmamba bimamba-vim bimamba-v2 maskmamba-parallel-4 maskmamba-parallel-2 maskmamba-serial-interleave maskmamba-serial-half maskmamba-serial-half@head maskmamba-serial-half@tail transformer uvit"}
NGPU=$(nvidia-smi -L | wc -l)
export DATA STEPS NGPU OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
mkdir -p runs/logs runs/pack
rm -f runs/train.done
bash scripts/gpu_install_mamba.sh > runs/logs/mamba_install.log 2>&1 || echo "mamba-ssm unavailable: Mamba runs use the PyTorch scan" >> runs/logs/mamba_install.log

train_one() {  # NAME; xargs sets SLOT, the free slot this run took, so each GPU holds PARALLEL runs at most
  local name=$1 variant=${1%@*} position=middle
  [[ $name == *@* ]] && position=${name#*@}
  CUDA_VISIBLE_DEVICES=$(( SLOT % NGPU )) python3 -m maskmamba.train generator --variant "$variant" --cond-position "$position" \
    --data "$DATA" --out "runs/$name" --steps "$STEPS" --minutes 60 --export "runs/pack/$name" --storage int8 \
    > "runs/logs/$name.log" 2>&1
}
export -f train_one
printf '%s\n' $RUNS | xargs -P $(( ${PARALLEL:-4} * NGPU )) --process-slot-var=SLOT -L1 bash -c 'train_one "$0"'
for run in $RUNS; do cp "runs/$run/log.jsonl" "runs/logs/$run.jsonl" 2>/dev/null; done
touch runs/train.done
