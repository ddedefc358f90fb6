#!/usr/bin/env bash
# On the GPU machine: the serving layer's CUDA path (Pipeline.enable_cuda_graphs, the Runtime's warm-up with shared
# graphs, bf16) through the gpu-marked tests, then the demo's latency on random `small` stand-ins and on the
# shipped checkpoints. Logs go to $OUT (default runs/serving-check).
#
#   bash scripts/gpu_serving_check.sh
set -uo pipefail
OUT=${OUT:-runs/serving-check}
mkdir -p "$OUT"
python3 -m pytest -q -m gpu tests/test_serving.py tests/test_pipeline.py tests/test_models_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
python3 -m bench.demo_latency --device cuda 2>&1 | tee "$OUT/demo_latency_standins.log"
python3 -m bench.demo_latency --device cuda --assets assets 2>&1 | tee "$OUT/demo_latency_shipped.log"
