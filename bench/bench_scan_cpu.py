"""CPU timings of selective-scan designs at the demo's shapes (float32, forward, no grad).

    python bench/bench_scan_cpu.py [--threads N] [--reps R] [--budget S] [--clock wall|cpu]

Every design shares `selective_scan_torch`'s set-up (decays, inputs, the C contraction) and differs
only in the in-place linear scan h_t = a_t h_{t-1} + x_t along dim 1 of (b, l, d, n) tensors:
  blelloch     the library's work-efficient in-place recursion on strided views (`_scan_`);
  hillis       Hillis-Steele: log2(l) steps, each over the whole sequence;
  chunked16    Hillis-Steele inside chunks of 16 positions, a loop over chunks for the carries,
               and one correction pass;
  sequential   `selective_scan_ref`, a Python loop over positions.
Prints the minimum and median ms over the repetitions (the minimum is the least disturbed by
other processes on the machine); each cell stops after about --budget seconds.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable
from unittest import mock

import torch
import torch.nn.functional as F

ss = importlib.import_module("maskmamba.ops.selective_scan")  # the module; the package re-exports a function of that name

SHAPES = [(2, 64, 16, 272), (2, 192, 16, 272), (2, 256, 16, 272), (2, 384, 16, 272)]


def hillis_steele_(a: torch.Tensor, x: torch.Tensor, products: bool = False) -> None:
    """In place along dim 1: log-step scan; overlapping updates go through one scratch buffer.

    With products=True, a ends holding the running products a_0 ... a_t (else the last step skips them).
    """
    length = a.shape[1]
    scratch = torch.empty_like(x)
    step = 1
    while step < length:
        tmp = scratch[:, : length - step]
        torch.mul(a[:, step:], x[:, :-step], out=tmp)
        x[:, step:].add_(tmp)
        if products or 2 * step < length:
            torch.mul(a[:, step:], a[:, :-step], out=tmp)
            a[:, step:].copy_(tmp)
        step *= 2


def chunked_(a: torch.Tensor, x: torch.Tensor, chunk: int = 16) -> None:
    """In place along dim 1: Hillis-Steele inside chunks, then carries from chunk to chunk."""
    b, length = a.shape[:2]
    assert length % chunk == 0, "this bench design needs l divisible by the chunk"
    av = a.view(b, length // chunk, chunk, *a.shape[2:]).transpose(1, 2)  # (b, chunk, n_chunks, ...)
    xv = x.view(b, length // chunk, chunk, *x.shape[2:]).transpose(1, 2)
    hillis_steele_(av, xv, products=True)  # av: within-chunk decay products; xv: within-chunk states
    ends_x, ends_a = xv[:, -1], av[:, -1]  # (b, n_chunks, ...)
    for c in range(1, ends_x.shape[1]):
        ends_x[:, c].addcmul_(ends_a[:, c], ends_x[:, c - 1])
    xv[:, :-1, 1:].addcmul_(av[:, :-1, 1:], ends_x[:, None, :-1])


DESIGNS: dict[str, Callable[[torch.Tensor, torch.Tensor], None] | None] = {
    "blelloch": ss._scan_,
    "hillis": hillis_steele_,
    "chunked16": chunked_,
    "sequential": None,
}


def make_inputs(b: int, d: int, n: int, l: int) -> tuple:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(b, d, l, generator=g)
    delta = torch.randn(b, d, l, generator=g)
    A = -torch.exp(torch.randn(d, n, generator=g))
    B = torch.randn(b, n, l, generator=g)
    C = torch.randn(b, n, l, generator=g)
    D = torch.randn(d, generator=g)
    z = torch.randn(b, d, l, generator=g)
    delta_bias = F.softplus(torch.randn(d, generator=g))
    return u, delta, A, B, C, D, z, delta_bias, True


def run_design(name: str, args: tuple) -> torch.Tensor:
    if DESIGNS[name] is None:
        return ss.selective_scan_ref(*args)
    with mock.patch.object(ss, "_scan_", DESIGNS[name]):
        return ss.selective_scan_torch(*args)


def time_ms(
    fn: Callable[[], torch.Tensor], reps: int, clock: Callable[[], float], budget_s: float
) -> tuple[float, float, torch.Tensor]:
    """Min and median ms of fn over up to `reps` timed calls after one warm-up call, stopping early
    once `budget_s` wall seconds are spent; also returns the warm-up call's output."""
    deadline = time.perf_counter() + budget_s
    out = fn()
    times: list[float] = []
    while len(times) < reps and (not times or time.perf_counter() < deadline):
        start = clock()
        fn()
        times.append((clock() - start) * 1e3)
    return min(times), statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--budget", type=float, default=1.0, help="wall seconds per cell at most (roughly)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: process CPU time, less disturbed by other processes (meaningful with --threads 1)",
    )
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    clock = time.perf_counter if opts.clock == "wall" else time.process_time
    print(f"torch {torch.__version__}, {opts.threads} thread(s); {opts.clock}-clock ms, min / median of <= {opts.reps}")
    print(f"{'b,d,n,l':>16} " + " ".join(f"{name:>17}" for name in DESIGNS) + "   max rel err vs seq")
    with torch.no_grad():
        for shape in SHAPES:
            args = make_inputs(*shape)
            ref = ss.selective_scan_ref(*args)
            cells, worst = [], 0.0
            for name in DESIGNS:
                lo, med, out = time_ms(lambda: run_design(name, args), opts.reps, clock, opts.budget)
                cells.append(f"{lo:7.2f} / {med:7.2f}")
                worst = max(worst, ((out - ref).abs().max() / ref.abs().max()).item())
            print(f"{','.join(map(str, shape)):>16} " + " ".join(f"{c:>17}" for c in cells) + f"   {worst:.1e}")


if __name__ == "__main__":
    main()
