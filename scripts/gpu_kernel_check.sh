#!/usr/bin/env bash
# The fused scan on the GPU machine, in one command (under 9 minutes): the compiled parity tests, then
# bench.layers and bench.speed_vs_resolution (xl) on every scan backend that imports there (mamba-ssm is optional).
#
#   OUT=/some/dir bash scripts/gpu_kernel_check.sh
#
# Writes into $OUT (flat, at most 6 files): check.log (everything printed), bench.json, speed.json and the
# layer plots layers_b1.png, layers_b8.png. Each step has its own time limit so the whole stays under 9 minutes.
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
  timeout 130 python3 -m pytest -q -s -m gpu tests/test_fused_scan.py tests/test_models_gpu.py 2>&1 | tail -40
  echo "== bench.layers =="
  timeout 220 python3 -m bench.layers --size xl --out "$OUT"
  echo "== bench.speed_vs_resolution =="
  timeout 170 python3 -m bench.speed_vs_resolution --size xl --sides 1024,2048,4096 --repeats 3 \
    --out "$OUT/speed.json" --bench-json "$OUT/bench.json"
} > "$log" 2>&1
tail -60 "$log"
