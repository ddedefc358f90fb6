"""End-to-end latency of the demo's serving layer: a whole run with CFG, previews decoded at every step.

    python -m bench.demo_latency [--assets DIR] [--device cuda|cpu] [--steps N] [--repeats 5] [--bench-json PATH]
        [--scan-config walk=1]

Without --assets it builds `small` generators of the shipped variants and a tokenizer of the shipped shape,
all with random weights (`maskmamba.dev_assets`; latency does not depend on the weights). Runs the same Runtime
the demo serves: bf16 and CUDA graphs on GPU, the default sampling settings unless --steps is given. Prints, per
variant, the median wall time of a whole run and of the model steps alone (GPU time on a GPU). --bench-json merges
them into the speed benchmarks' bench.json (`demo_device`, `demo_rows`, and `bars.demo_ms`: serial-half's run).
--scan-config runs the fused scan (GPU) at another `ScanConfig`, as in `bench.train_throughput`.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from bench.layers import merge_bench_json
from maskmamba.dev_assets import make_dev_assets
from maskmamba.ops import triton_scan
from maskmamba.serving import ASSETS, Runtime, find_variants, summarise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="iterations (default: the sampling default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--bench-json", default="", help="merge the results into this bench.json")
    parser.add_argument("--scan-config", type=triton_scan.config_from_text, default=triton_scan.CONFIG,
                        help="ScanConfig fields changed from the default, e.g. walk=1")
    args = parser.parse_args()
    triton_scan.CONFIG = args.scan_config
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(args.assets) if args.assets else make_dev_assets(tmp, "small", variants=find_variants(ASSETS))
        runtime = Runtime(assets, args.device)
        runtime.warm_up()
        timings = runtime.benchmark(steps=args.steps, repeats=args.repeats)
    print(json.dumps(runtime.kernels))
    steps = len(timings[0].step_ms)
    print(f"{'variant':30s} {'run wall ms':>12s} {'model ms':>10s}   ({steps} iterations, CFG, median of {args.repeats})")
    rows = summarise(timings)
    for row in rows:
        print(f"{row['model']:30s} {row['wall_ms']:12.1f} {row['model_ms']:10.1f}")
    if args.bench_json:
        demo_ms = next((round(r["wall_ms"], 2) for r in rows if r["model"] == "maskmamba-serial-half"), None)
        command = shlex.join(["python", "-m", "bench.demo_latency", *sys.argv[1:]])
        merge_bench_json(Path(args.bench_json), {"demo_device": runtime.kernels["device"], "demo_command": command,
                                                 "demo_rows": rows, "bars": {"demo_ms": demo_ms}})


if __name__ == "__main__":
    main()
