"""The CPU scan without autograd over whole sequences against blocks of positions, in the shipped Mamba models.

    python -m bench.cpu_scan_blocks [--assets assets] [--rounds 6] [--threads 2]

`selective_scan_torch` runs large (b, l, d, n) tensors a block of `_CPU_BLOCK` positions at a time (see
`_CPU_WHOLE_BYTES`). Times one guided forward (batch 2, every token masked) of each model with every scan forced
whole and forced blocked, alternating in one process so that both see the same machine, and prints per model
and mode the minimum and median ms over the rounds (each round the mean of 3 forwards after one warm-up).
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import time
from pathlib import Path

import torch

from maskmamba.models import Condition, load_generator

ss = importlib.import_module("maskmamba.ops.selective_scan")  # the module: the package re-exports its function
MODES = {"whole": 1 << 62, "blocked": 0}  # _CPU_WHOLE_BYTES forcing each mode
VARIANTS = ("maskmamba-serial-half", "maskmamba-serial-interleave", "maskmamba-parallel-2", "maskmamba-parallel-4",
            "mmamba")


def forward_ms(model: torch.nn.Module, whole_bytes: int, repeats: int = 3) -> float:
    """Mean ms of a guided forward (batch 2) with `_CPU_WHOLE_BYTES` set to `whole_bytes`, after one warm-up."""
    tokens = torch.full((2, model.grid**2), model.mask_id)
    cond = Condition.classes(torch.tensor([3, 3]))
    previous, ss._CPU_WHOLE_BYTES = ss._CPU_WHOLE_BYTES, whole_bytes
    try:
        with torch.no_grad():
            model(tokens, cond)
            start = time.perf_counter()
            for _ in range(repeats):
                model(tokens, cond)
            return (time.perf_counter() - start) / repeats * 1000
    finally:
        ss._CPU_WHOLE_BYTES = previous


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=Path, default=Path("assets"))
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    models = {v: load_generator(args.assets / v).eval() for v in VARIANTS if (args.assets / v).is_dir()}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for variant, model in models.items():
            for mode, whole_bytes in MODES.items():
                times.setdefault((variant, mode), []).append(forward_ms(model, whole_bytes))
    print(f"{'variant':<30}{'mode':>9}{'min ms':>9}{'median ms':>11}   ({args.threads} threads, {args.rounds} rounds)")
    for (variant, mode), ts in times.items():
        print(f"{variant:<30}{mode:>9}{min(ts):>9.1f}{statistics.median(ts):>11.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
