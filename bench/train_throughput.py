"""Training throughput (images/s) of every variant: the eager step against the step replayed from a CUDA graph.

    python -m bench.train_throughput --device cuda --size small --batch 256 [--out results.json]
        [--bench-json assets/results/bench.json] [--scan-config bwd_chunk=8,bwd_state_block=2] [--profile]

Random tokens and conditions (throughput does not depend on the data), bf16 autocast, the training AdamW with
gradient clipping: the step `python -m maskmamba.train generator` runs, less its EMA update (under 1% of a step). Prints one row per variant and the
graph/eager ratio, measured side by side in one process. --scan-config runs the fused scan at another tile
configuration (`ScanConfig` fields changed from the default; `python -m bench.scan_registers` says which spill).
--profile also prints torch.profiler's table of the CUDA kernels of five eager steps of each variant.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from maskmamba import VARIANTS, build_model
from maskmamba.ops import attention_backend, scan_backend, triton_scan
from maskmamba.text_encoder import PROMPT_TOKENS, TEXT_DIM
from maskmamba.train.generator import make_train_step
from maskmamba.train.optim import configure_optimizers
from maskmamba.graphs import GraphedStep

from bench.layers import config_label, merge_bench_json


def random_batch(model: torch.nn.Module, batch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(ids, inputs, mask, class_ids, text, text_mask): half masked, half the samples prompt-conditioned."""
    n = model.grid**2
    ids = torch.randint(0, model.codebook_size, (batch, n), device=device)
    mask = torch.rand(batch, n, device=device) < 0.5
    classes = torch.randint(0, 10, (batch,), device=device)
    classes[::2] = -1
    text_mask = (classes < 0)[:, None] & (torch.arange(PROMPT_TOKENS, device=device) < 6)
    text = torch.randn(batch, PROMPT_TOKENS, TEXT_DIM, device=device)
    return ids, torch.where(mask, model.mask_id, ids), mask, classes, text, text_mask


def training_step(variant: str, size: str, batch: int, device: torch.device,
                  graphed: bool) -> tuple[Callable, tuple[torch.Tensor, ...]]:
    """(step, batch tensors): one training step of a fresh model, eager or replayed from a CUDA graph."""
    model = build_model(variant, size, num_classes=10).to(device)
    optimizer = configure_optimizers(model, 1e-4, 0.05, graphed)
    step = make_train_step(model, optimizer, 0.1, device)
    return (GraphedStep(step) if graphed else step), random_batch(model, batch, device)


def images_per_s(variant: str, size: str, batch: int, device: torch.device, graphed: bool, steps: int) -> float:
    step, batch_tensors = training_step(variant, size, batch, device, graphed)
    for _ in range(5):  # warm-up (and, graphed, the capture)
        step(*batch_tensors)
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(*batch_tensors)
    torch.cuda.synchronize(device)
    return steps * batch / (time.perf_counter() - start)


def print_profile(variant: str, size: str, batch: int, device: torch.device) -> None:
    """torch.profiler's CUDA kernel table of five eager training steps (after three of warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    step, batch_tensors = training_step(variant, size, batch, device, False)
    for _ in range(3):
        step(*batch_tensors)
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            step(*batch_tensors)
        torch.cuda.synchronize(device)
    print(f"== {variant}: CUDA kernels of five training steps")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=16, max_name_column_width=50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="small")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default="")
    parser.add_argument("--bench-json", default="", help="merge the rows and train_ratio_small into this bench.json")
    parser.add_argument("--scan-config", type=triton_scan.config_from_text, default=triton_scan.CONFIG,
                        help="ScanConfig fields changed from the default, e.g. bwd_chunk=8,bwd_state_block=2")
    parser.add_argument("--profile", action="store_true", help="also print each variant's CUDA kernel table")
    args = parser.parse_args()
    triton_scan.CONFIG = args.scan_config
    device = torch.device(args.device)
    if device.type != "cuda":
        raise SystemExit("this benchmark compares CUDA-graph replay with eager steps: it needs --device cuda")
    name = torch.cuda.get_device_name(device)
    print(f"device {name}; scan {scan_backend(device)}; attention {attention_backend(device)}; size {args.size}; "
          f"batch {args.batch}; scan tiles {config_label(args.scan_config)}")
    print(f"{'variant':30s} {'eager img/s':>12s} {'graph img/s':>12s} {'graph/eager':>12s}")
    rows = []
    for variant in args.variants.split(","):
        eager = images_per_s(variant, args.size, args.batch, device, False, args.steps)
        graph = images_per_s(variant, args.size, args.batch, device, True, args.steps)
        rows.append({"variant": variant, "eager_img_s": round(eager, 1), "graph_img_s": round(graph, 1)})
        print(f"{variant:30s} {eager:12.0f} {graph:12.0f} {graph / eager:11.2f}x", flush=True)
    if args.profile:
        for variant in args.variants.split(","):
            print_profile(variant, args.size, args.batch, device)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": name, "size": args.size, "batch": args.batch,
                       "scan_config": vars(args.scan_config), "rows": rows}, f, indent=1)
    if args.bench_json:
        command = shlex.join(["python", "-m", "bench.train_throughput", *sys.argv[1:]])
        merge_bench_json(Path(args.bench_json), {"train_device": name, "train_command": command, "train_rows": rows,
                                                 "train_scan_config": vars(args.scan_config),
                                                 "bars": train_bars(rows, args.size)})


def train_bars(rows: list[dict], size: str) -> dict:
    """`train_ratio_small`: serial-half's images/s over the Transformer's, each as training runs it (the step
    replayed from a CUDA graph), when both were measured at `small`."""
    rate = {r["variant"]: r["graph_img_s"] for r in rows}
    if size != "small" or not {"transformer", "maskmamba-serial-half"} <= rate.keys():
        return {}
    return {"train_ratio_small": round(rate["maskmamba-serial-half"] / rate["transformer"], 4)}


if __name__ == "__main__":
    main()
