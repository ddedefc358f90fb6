"""Forward latency against image resolution: Transformer vs MaskMamba (and pure Bi-Mamba-v2), side by side.

    python -m bench.speed_vs_resolution --size xl --sides 256,512,1024,2048,4096 --out assets/results/speed.json

One generator forward (batch 1, bf16, all tokens masked, class condition) per variant and image side. Tokens
follow the paper's setting of a 16x-downsampling tokenizer: side/16 per grid edge, so 2048x2048 is 16,384
tokens. Timed with CUDA events, median of repeats after warm-up; every variant at a side is timed one after
another in the same process, so the ratios compare like with like. Random weights: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys

import torch

from maskmamba import Condition, build_model
from maskmamba.ops import attention_backend, scan_backend


def time_forward(model: torch.nn.Module, grid: int, repeats: int) -> float:
    """Median ms of one forward at batch 1."""
    tokens = torch.full((1, grid * grid), model.mask_id, device="cuda")
    cond = Condition.classes(torch.tensor([1], device="cuda"))
    with torch.no_grad():
        for _ in range(3):
            model(tokens, cond)
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            model(tokens, cond)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="xl")
    parser.add_argument("--sides", default="256,512,1024,2048,4096")
    parser.add_argument("--variants", default="transformer,maskmamba-serial-half,bimamba-v2")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    variants = args.variants.split(",")
    name = torch.cuda.get_device_name()
    print(f"{name}; scan {scan_backend('cuda')}; attention {attention_backend('cuda')}; size {args.size}; batch 1, bf16")
    rows = []
    for side in map(int, args.sides.split(",")):
        grid = side // 16
        for v in variants:
            with torch.device("cuda"):
                model = build_model(v, args.size, num_classes=100, grid=grid).to(torch.bfloat16).eval()
            ms = time_forward(model, grid, args.repeats)
            rows.append({"model": v, "side": side, "tokens": grid * grid, "ms": round(ms, 3)})
            del model
            torch.cuda.empty_cache()
    reference = {r["side"]: r["ms"] for r in rows if r["model"] == "transformer"}
    print(f"{'side':>6s} {'tokens':>7s} " + " ".join(f"{v:>24s}" for v in variants))
    for side in sorted(reference):
        cells = []
        for v in variants:
            ms = next(r["ms"] for r in rows if r["model"] == v and r["side"] == side)
            cells.append(f"{ms:9.2f} ms ({reference[side] / ms:4.2f}x)")
        print(f"{side:6d} {(side // 16) ** 2:7d} " + " ".join(f"{c:>24s}" for c in cells))
    print("(x = transformer time / this time; above 1 is faster than the Transformer)")
    if args.out:
        command = shlex.join(["python", "-m", "bench.speed_vs_resolution", *sys.argv[1:]])
        with open(args.out, "w") as f:
            json.dump({"device": name, "size": args.size, "command": command, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
