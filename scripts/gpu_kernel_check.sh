#!/usr/bin/env bash
# The fused scan on the GPU machine, in one command (under 10 minutes): the compiled parity tests, then
# bench.layers and bench.speed_vs_resolution (xl) on every scan backend that imports there (mamba-ssm is optional),
# and the training step's throughput at `small` (train_ratio_small).
#
#   OUT=/some/dir bash scripts/gpu_kernel_check.sh
#
# Writes into $OUT (flat, 5 files): check.log (everything printed, with an Nsight Compute summary of the scan's
# kernels), bench.json, speed.json and the
# layer plots layers_b1.png, layers_b8.png. Each step has its own time limit so the whole stays under 10 minutes (580 s).
set -uo pipefail
OUT=${OUT:?set OUT to the folder for results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log="$OUT/check.log"
{
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
  python3 -c "import mamba_ssm; print('mamba-ssm', mamba_ssm.__version__)" 2>/dev/null || echo "mamba-ssm: not importable"
  echo "== parity tests (compiled) =="
  timeout 170 python3 -m pytest -q -s -m gpu tests/test_fused_scan.py tests/test_models_gpu.py 2>&1 | tail -40
  echo "== bench.layers =="
  timeout 160 python3 -m bench.layers --size xl --out "$OUT"
  echo "== Nsight Compute: the fused scan's kernels at 16,384 tokens, batch 1, xl (pipe and memory use) =="
  if command -v ncu >/dev/null; then
    timeout 50 ncu --kernel-name regex:"_fwd_|_carry" --launch-skip 4 --launch-count 3 \
      --section SpeedOfLight --section ComputeWorkloadAnalysis --section Occupancy \
      python3 -m bench.layers --scan-only --repeats 2 2>&1 | grep -v "^==PROF==" | tail -120
  else
    echo "ncu not found"
  fi
  echo "== where a layer's time goes (torch.profiler) =="
  timeout 40 python3 -m bench.layers --profile 2>&1 | grep -v "^STAGE:" | tail -80
  echo "== bench.train_throughput =="
  timeout 60 python3 -m bench.train_throughput --size small --batch 256 \
    --variants transformer,maskmamba-serial-half --bench-json "$OUT/bench.json"
  echo "== bench.speed_vs_resolution =="
  timeout 100 python3 -m bench.speed_vs_resolution --size xl --sides 1024,2048,4096 --repeats 3 \
    --out "$OUT/speed.json" --bench-json "$OUT/bench.json"
} > "$log" 2>&1
tail -60 "$log"
