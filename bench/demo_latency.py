"""End-to-end latency of the demo's runtime: 12 iterations with CFG, previews decoded at every step.

    python -m bench.demo_latency [--assets DIR] [--device cuda|cpu] [--steps 12] [--repeats 5]

Without --assets it builds `small` generators of the shipped variants and a tokenizer of the shipped shape,
all with random weights (`app.dev_assets`; latency does not depend on the weights). Runs the same Runtime the demo serves: bf16 and CUDA
graphs on GPU. Prints, per variant, the median wall time of a whole run and of the model steps alone.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch

from app.dev_assets import make_dev_assets
from app.runtime import Runtime, find_variants
from maskmamba.pipeline import ASSETS

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(args.assets) if args.assets else make_dev_assets(tmp, "small", variants=find_variants(ASSETS))
        runtime = Runtime(assets, args.device)
        runtime.warm_up()
        timings = runtime.benchmark(steps=args.steps, cfg_scale=3.0, repeats=args.repeats)
    print(json.dumps(runtime.kernels))
    print(f"{'variant':30s} {'run wall ms':>12s} {'model ms':>10s}   ({args.steps} iterations, CFG, median of {args.repeats})")
    for v in runtime.variants:
        runs = [t for t in timings if t.variant == v]
        wall = statistics.median(t.wall_ms for t in runs)
        model = statistics.median(t.model_ms for t in runs)
        print(f"{v:30s} {wall:12.1f} {model:10.1f}")


if __name__ == "__main__":
    main()
