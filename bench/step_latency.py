"""Per-step latency of MaskGIT sampling (batch 1 with CFG, so the forward sees batch 2) for every variant.

    python -m bench.step_latency --device cuda --size small [--out results.json]
    python -m bench.step_latency --device cpu --size small --threads 2

Random weights: latency does not depend on what the weights are. On CUDA the model runs in bf16, eager and
with the guided forward replayed from a CUDA graph. Prints one row per variant: median ms per step.
"""
from __future__ import annotations

import argparse
import json
import statistics

import torch

from maskmamba import VARIANTS, Condition, build_model, maskgit
from maskmamba.sampler import guidance
from maskmamba.settings import SamplingSettings
from maskmamba.ops import attention_backend, scan_backend


def step_times(model: torch.nn.Module, device: torch.device, steps: int, repeats: int, logits_fn=None) -> list[float]:
    """Latency of every step over `repeats` runs after one warm-up run."""
    cond = Condition.classes(torch.tensor([3], device=device))
    times: list[float] = []
    for run in range(repeats + 1):
        settings = SamplingSettings(steps=steps, seed=run)
        lat = [s.latency_ms for s in maskgit(logits_fn or guidance(model), cond, model.grid, model.mask_id, settings)]
        if run:
            times += lat
    return times


def measure(variant: str, size: str, device: torch.device, steps: int, repeats: int) -> dict:
    model = build_model(variant, size, num_classes=100).to(device).eval()
    if device.type == "cuda":
        model = model.to(torch.bfloat16)
    row = {"variant": variant, "eager_ms": statistics.median(step_times(model, device, steps, repeats))}
    if device.type == "cuda":
        from maskmamba.graphs import GraphedGuidance

        graphed = GraphedGuidance(model, batch=1)
        row["graph_ms"] = statistics.median(step_times(model, device, steps, repeats, logits_fn=graphed))
    row["total_ms"] = steps * row.get("graph_ms", row["eager_ms"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", default="small")
    parser.add_argument("--steps", type=int, default=SamplingSettings().steps)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"device {name}; scan {scan_backend(device)}; attention {attention_backend(device)}; size {args.size}; {args.steps} steps, CFG")
    rows = [measure(v, args.size, device, args.steps, args.repeats) for v in args.variants.split(",")]
    print(f"{'variant':30s} {'eager ms/step':>14s} {'graph ms/step':>14s} {f'{args.steps}-step ms':>11s}")
    for r in rows:
        graph = f"{r['graph_ms']:14.2f}" if "graph_ms" in r else f"{'-':>14s}"
        print(f"{r['variant']:30s} {r['eager_ms']:14.2f} {graph} {r['total_ms']:11.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": name, "size": args.size, "steps": args.steps, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
