"""Forward latency against image resolution: Transformer vs MaskMamba (and pure Bi-Mamba-v2), side by side.

    python -m bench.speed_vs_resolution --size xl --sides 256,512,1024,2048,4096 --out assets/results/speed.json

One generator forward (batch 1, bf16, all tokens masked, class condition) per variant and image side. Tokens
follow the paper's setting of a 16x-downsampling tokenizer: side/16 per grid edge, so 2048x2048 is 16,384
tokens. Timed with CUDA events, median of repeats after warm-up; every variant at a side is timed one after
another in the same process, so the ratios compare like with like. Random weights: speed does not depend on them.
Variants with Mamba layers run on every scan backend of --backends (default: all on CUDA); rows of the default
(fastest) backend carry the variant's name, the others "<variant> [<backend>]". --bench-json adds the end-to-end
bars (e2e_speedup_<side>: Transformer time over serial-half time) to bench.layers' bench.json. --cuda-graph replays
every model's forward from a CUDA graph (as the demo's decoding does), which takes the host's kernel launches out
of the time; its rows and bars go under e2e_graph_* beside the eager ones.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Callable

import torch

from bench.layers import cuda_ms, merge_bench_json, time_sdpa_backends
from maskmamba import SIZES, Condition, build_model
from maskmamba.ops import attention_backend, available_scan_backends, scan_backend, use_scan_backend

E2E_SIDES = (1024, 2048, 4096)


def forward_fn(model: torch.nn.Module, grid: int, cuda_graph: bool) -> Callable[[], torch.Tensor]:
    """One forward at batch 1 (all tokens masked, a class condition), eager or replayed from a CUDA graph (whose
    output buffer each replay returns)."""
    tokens = torch.full((1, grid * grid), model.mask_id, device="cuda")
    cond = Condition.classes(torch.tensor([1], device="cuda"))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return model(tokens, cond)

    if not cuda_graph:
        return forward
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):  # compiles the Triton kernels and picks the SDPA kernels before capture
            forward()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = forward()

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def time_forward(model: torch.nn.Module, grid: int, repeats: int, cuda_graph: bool = False) -> float:
    """Median ms of one forward at batch 1 (CUDA events, after warm-up)."""
    return cuda_ms(forward_fn(model, grid, cuda_graph), repeats, warmup=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="xl")
    parser.add_argument("--sides", default="256,512,1024,2048,4096")
    parser.add_argument("--variants", default="transformer,maskmamba-serial-half,bimamba-v2")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="")
    parser.add_argument("--backends", default="", help="scan backends (default: all available on CUDA)")
    parser.add_argument("--torch-max-tokens", type=int, default=4096, help="the PyTorch scan only up to here")
    parser.add_argument("--bench-json", default="", help="merge the end-to-end bars into this bench.json")
    parser.add_argument("--cuda-graph", action="store_true", help="replay each forward from a CUDA graph")
    args = parser.parse_args()
    variants = args.variants.split(",")
    backends = args.backends.split(",") if args.backends else list(available_scan_backends("cuda"))
    name = torch.cuda.get_device_name()
    size = SIZES[args.size]
    sdpa = time_sdpa_backends(size.heads, size.width // size.heads, args.repeats)
    print(f"{name}; scan {scan_backend('cuda')} (also timed: {backends}); attention {attention_backend('cuda')}; "
          f"size {args.size}; batch 1, bf16; {'CUDA graph' if args.cuda_graph else 'eager'}")
    rows = []
    for side in map(int, args.sides.split(",")):
        grid = side // 16
        for v in variants:
            for i, backend in enumerate([None] if v == "transformer" else backends):
                if backend == "torch" and grid * grid > args.torch_max_tokens:
                    continue
                with use_scan_backend(backend), torch.device("cuda"):
                    model = build_model(v, args.size, num_classes=100, grid=grid).to(torch.bfloat16).eval()
                    ms = time_forward(model, grid, args.repeats, args.cuda_graph)
                label = v if i == 0 else f"{v} [{backend}]"
                rows.append({"model": label, "scan": backend, "side": side, "tokens": grid * grid, "ms": round(ms, 3)})
                print(f"{side:6d} {label:36s} {ms:9.2f} ms", flush=True)
                del model
                torch.cuda.empty_cache()
        report(rows, args, name, sdpa)  # after every side, in case a time limit cuts the run


def report(rows: list[dict], args: argparse.Namespace, name: str, sdpa: dict) -> None:
    """Print the table; write --out and merge the end-to-end bars into --bench-json."""
    reference = {r["side"]: r["ms"] for r in rows if r["model"] == "transformer"}
    labels = list(dict.fromkeys(r["model"] for r in rows))
    print(f"{'side':>6s} {'tokens':>7s} " + " ".join(f"{v:>30s}" for v in labels))
    for side in sorted(reference):
        cells = []
        for v in labels:
            ms = next((r["ms"] for r in rows if r["model"] == v and r["side"] == side), None)
            cells.append("-" if ms is None else f"{ms:9.2f} ms ({reference[side] / ms:4.2f}x)")
        print(f"{side:6d} {(side // 16) ** 2:7d} " + " ".join(f"{c:>30s}" for c in cells))
    print("(x = transformer time / this time; above 1 is faster than the Transformer)")
    command = shlex.join(["python", "-m", "bench.speed_vs_resolution", *sys.argv[1:]])
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"device": name, "size": args.size, "command": command, "cuda_graph": args.cuda_graph,
                       "sdpa_backends": sdpa, "rows": rows}, f, indent=1)
    if args.bench_json:
        def speedup(model: str, side: int) -> float | None:
            ms = next((r["ms"] for r in rows if r["model"] == model and r["side"] == side), None)
            return round(reference[side] / ms, 4) if ms and side in reference else None

        prefix = "e2e_graph" if args.cuda_graph else "e2e"
        bars = {f"{prefix}_speedup_{side}": speedup("maskmamba-serial-half", side) for side in E2E_SIDES}
        bars[f"{prefix}_bimamba_v2_speedup_2048"] = speedup("bimamba-v2", 2048)
        print("bars:", bars)
        merge_bench_json(Path(args.bench_json), {f"{prefix}_device": name, f"{prefix}_command": command,
                                                 f"{prefix}_sdpa_backends": sdpa, f"{prefix}_rows": rows, "bars": bars})


if __name__ == "__main__":
    main()
