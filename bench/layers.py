"""One whole layer of each kind (norm, mixer with its projections, MLP) at a named width, on every scan backend.

    python -m bench.layers [--size xl] [--tokens 256,1024,4096,16384,65536] [--batches 1,8] [--out assets/results]
    python -m bench.layers --size xl --sweep-only    # only the fused scan's tile sweep (SCAN_CONFIGS)

bf16 forward, CUDA events (median of --repeats after warm-up), peak memory above the layer's weights and input.
Every kind and scan backend runs in the same process, so each ratio to the Transformer layer ("attn") compares
like with like. Then the fused scan alone at 16,384 tokens batch 1 at the size's widths, as a fraction of the
measured device-to-device copy bandwidth (each input read once, each output written once). Writes bench.json
(`device`, the tables, `bars`) and log-log plots into --out; `bench.speed_vs_resolution --bench-json` adds the
end-to-end figures to the same file.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

from maskmamba import SIZES
from maskmamba.modules import SeqLayout
from maskmamba.modules.block import make_block
from maskmamba.ops import (
    PROBE_TOKENS,
    SDPA_BACKENDS,
    ScanConfig,
    attention_backend,
    available_scan_backends,
    fastest_sdpa,
    fused_scan,
    selective_scan,
    use_scan_backend,
    use_sdpa_backend,
)
from maskmamba.ops import triton_scan
from maskmamba.eval.plots import save_plot

KINDS = ("attn", "bimamba_v2", "bimamba_vim", "mmamba", "parallel2", "parallel4")
MAMBA_KINDS = KINDS[1:]
LAYER_PLOT_MAX_BYTES = 120_000  # two panels, each with a legend of every layer kind and backend
BARS = {"ratio_L16384_b1": (16384, 1), "ratio_L4096_b8": (4096, 8), "ratio_L65536_b1": (65536, 1),
        "ratio_L1024_b8": (1024, 8)}


def cuda_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median milliseconds of fn() by CUDA events, after warm-up."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def time_layer(kind: str, width: int, heads: int, d_state: int, tokens: int, batch: int, repeats: int) -> dict:
    """ms and peak MB (above weights and input) of one bf16 forward of a layer of `kind`; None where it OOMs."""
    grid = math.isqrt(tokens)
    layout = SeqLayout(grid=grid, slots=tokens - grid * grid).cuda()
    block = make_block(kind, width, heads, d_state).cuda().to(torch.bfloat16).eval()
    x = torch.randn(batch, tokens, width, device="cuda", dtype=torch.bfloat16)
    try:
        with torch.no_grad():
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
            block(x, layout)
            torch.cuda.synchronize()
            peak = (torch.cuda.max_memory_allocated() - base) / 2**20
            ms = cuda_ms(lambda: block(x, layout), repeats)
        return {"ms": round(ms, 4), "peak_mb": round(peak, 1)}
    except torch.OutOfMemoryError:
        return {"ms": None, "peak_mb": None}
    finally:
        del block, x
        torch.cuda.empty_cache()


def profile_layers(width: int, heads: int, d_state: int) -> None:
    """Where a layer's time goes: torch.profiler's CUDA kernel table, and CPU time per forward (launch cost)."""
    from torch.profiler import ProfilerActivity, profile

    for kind, tokens, batch in (("bimamba_v2", 1024, 8), ("bimamba_v2", 16384, 1), ("attn", 1024, 8)):
        grid = math.isqrt(tokens)
        layout = SeqLayout(grid=grid, slots=0).cuda()
        block = make_block(kind, width, heads, d_state).cuda().to(torch.bfloat16).eval()
        x = torch.randn(batch, tokens, width, device="cuda", dtype=torch.bfloat16)
        with torch.no_grad():
            for _ in range(3):
                block(x, layout)
            torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(10):
                block(x, layout)
            cpu_ms = (time.perf_counter() - start) * 100  # per forward, before waiting for the GPU
            torch.cuda.synchronize()
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                for _ in range(5):
                    block(x, layout)
                torch.cuda.synchronize()
        print(f"== {kind}, {tokens} tokens x {batch}: CPU {cpu_ms:.3f} ms per forward to launch; CUDA kernels x5:")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14, max_name_column_width=60))


def copy_bandwidth() -> float:
    """Measured device-to-device copy bandwidth in GB/s (bytes read plus bytes written)."""
    src = torch.empty(2**28, device="cuda", dtype=torch.float32)  # 1 GiB
    dst = torch.empty_like(src)
    ms = cuda_ms(lambda: dst.copy_(src), repeats=10)
    return 2 * src.numel() * 4 / ms / 1e6


def scan_alone(width: int, heads: int, d_state: int, tokens: int, repeats: int) -> dict:
    """The Bi-Mamba-v2 scan at the size's widths, batch 1: the fused kernel, and mamba-ssm's two scans if present."""
    mixer = make_block("bimamba_v2", width, heads, d_state).mixer
    E, n, N = mixer.scan.inner, 2, d_state
    bf = dict(device="cuda", dtype=torch.bfloat16)
    x, gate = torch.randn(1, tokens, E, **bf), torch.randn(1, tokens, E, **bf)
    delta = torch.randn(1, tokens, n, E, **bf) * 0.5 - 4.0
    B, C = (torch.randn(1, n, N, tokens, device="cuda").permute(0, 3, 1, 2) for _ in range(2))  # as mixers give them
    params = dict(conv_w=torch.randn(n * E, 3, device="cuda") * 0.3, conv_b=torch.zeros(n * E, device="cuda"),
                  A=-torch.arange(1, N + 1, device="cuda").float().repeat(n * E, 1), D=torch.ones(n * E, device="cuda"),
                  dt_bias=torch.zeros(n * E, device="cuda"))
    moved = sum(t.numel() * t.element_size() for t in (x, gate, delta, B, C)) + tokens * 3 * E * 2  # + output
    result = {"tokens": tokens, "batch": 1, "E": E, "directions": n, "d_state": N, "bytes": moved,
              "config": vars(triton_scan.CONFIG).copy()}
    with torch.no_grad():
        ms = cuda_ms(lambda: fused_scan(x, params["conv_w"], params["conv_b"], delta, params["A"], B, C,
                                        params["D"], params["dt_bias"], gate, causal=False, reverse_odd=True),
                     repeats)
        result["triton_ms"] = round(ms, 4)
        result["triton_gbps"] = round(moved / ms / 1e6, 1)
        if "mamba-ssm" in available_scan_backends("cuda"):
            u = torch.randn(1, n * E, tokens, **bf)
            d2 = torch.randn(1, n * E, tokens, **bf)
            B2, C2 = torch.randn(1, n, N, tokens, **bf), torch.randn(1, n, N, tokens, **bf)
            with use_scan_backend("mamba-ssm"):
                result["mamba_ssm_ms"] = round(cuda_ms(lambda: selective_scan(
                    u, d2, params["A"], B2, C2, params["D"], None, params["dt_bias"], True), repeats), 4)
    return result


# (chunk, block_e, warps, state_block): block_e = 32 x warps puts one channel on each lane, a smaller block_e
# spreads the chunk over lanes too; state_block states per turn of the forward's state loop. The six fastest of
# twelve timed on one H100 (xl, 16,384 tokens; ms): (32,32,1,2) 0.766, (16,32,1,2) 0.827, (32,16,1,1) 0.854,
# (16,32,1,4) 0.862, (16,64,2,4) 0.865, (32,32,1,1) 0.878; left out: (32,16,1,4) 0.906, (16,32,1,1) 0.960,
# (32,64,2,1) 1.068, (32,32,2,1) 1.163, (8,32,1,8) 1.194, (16,128,4,2) 1.263
SCAN_CONFIGS = [(32, 32, 1, 2), (16, 32, 1, 2), (32, 16, 1, 1), (16, 32, 1, 4), (16, 64, 2, 4), (32, 32, 1, 1)]


def config_label(config: ScanConfig) -> str:
    """'chunk=32 block_e=32 ...': every field of a scan tile configuration."""
    return " ".join(f"{k}={v}" for k, v in vars(config).items())


def sweep_scan_configs(width: int, heads: int, d_state: int, tokens: int, repeats: int) -> list[dict]:
    """The fused scan alone under each of SCAN_CONFIGS; leaves the fastest in triton_scan.CONFIG."""
    results = []
    for chunk, block_e, warps, state_block in SCAN_CONFIGS:
        triton_scan.CONFIG = ScanConfig(chunk, block_e, warps, state_block=state_block)
        try:
            r = scan_alone(width, heads, d_state, tokens, repeats)
        except Exception as error:  # a tile too large for the device's registers or shared memory
            print(f"config {config_label(triton_scan.CONFIG)}: {type(error).__name__}: {error}"[:300], flush=True)
            continue
        print(f"config {config_label(triton_scan.CONFIG)}: {r['triton_ms']:.3f} ms", flush=True)
        results.append(r)
    best = min(results, key=lambda r: r["triton_ms"])
    triton_scan.CONFIG = ScanConfig(**best["config"])
    return results


def plot(rows: list[dict], out: Path, batch: int, device: str | None = None) -> None:
    """Log-log time and peak memory against tokens, one line per layer kind and scan backend."""
    try:
        import matplotlib
    except ImportError:
        print("matplotlib is missing: no plots (redraw them with --replot bench.json)")
        return

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4.5))
    for label in dict.fromkeys(r["label"] for r in rows):
        pts = [r for r in rows if r["label"] == label and r["batch"] == batch and r["ms"] is not None]
        if pts:
            style = dict(marker="o", label=label, linestyle="--" if pts[0]["scan"] == "torch" else "-")
            ax_t.plot([r["tokens"] for r in pts], [r["ms"] for r in pts], **style)
            ax_m.plot([r["tokens"] for r in pts], [r["peak_mb"] for r in pts], **style)
    for ax, ylabel in ((ax_t, "forward ms"), (ax_m, "peak memory above weights and input (MB)")):
        ax.set(xscale="log", yscale="log", xlabel="tokens", ylabel=ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"one layer, batch {batch}, bf16, {device or torch.cuda.get_device_name()}")
    fig.tight_layout()
    save_plot(fig, out / f"layers_b{batch}.png", max_bytes=LAYER_PLOT_MAX_BYTES)


def time_sdpa_backends(heads: int, head_dim: int, repeats: int, tokens: tuple[int, ...] = PROBE_TOKENS) -> dict:
    """Milliseconds of one bf16 SDPA call, batch 1, per CUDA backend and sequence length (None where the backend
    refuses the shape), then the fastest made the one `attention` uses: {"ms": {backend: {tokens: ms}}, "choice"}."""
    timings: dict[str, dict[int, float | None]] = {}
    for name in (n for n in SDPA_BACKENDS if n != "math"):
        timings[name] = {}
        for length in tokens:
            q, k, v = (torch.randn(1, heads, length, head_dim, device="cuda", dtype=torch.bfloat16) for _ in range(3))
            try:
                with sdpa_kernel(SDPA_BACKENDS[name]):
                    timings[name][length] = round(cuda_ms(lambda: F.scaled_dot_product_attention(q, k, v), repeats), 4)
            except RuntimeError:  # the backend does not support this shape or device
                timings[name][length] = None
    choice = fastest_sdpa(timings)
    use_sdpa_backend(choice)
    print(f"SDPA backends, ms at {tokens} tokens: {timings}; using {choice}", flush=True)
    return {"ms": timings, "choice": choice}


def merge_bench_json(path: Path, update: dict) -> None:
    """Merge `update` into bench.json (its `bars` merged key by key), so both benchmarks can write it."""
    data = json.loads(path.read_text()) if path.exists() else {}
    bars = {**data.get("bars", {}), **update.pop("bars", {})}
    data.update(update)
    data["bars"] = bars
    path.write_text(json.dumps(data, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="xl")
    parser.add_argument("--tokens", default="256,1024,4096,16384,65536")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--backends", default="", help="scan backends to time (default: all on CUDA)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--torch-max-tokens", type=int, default=16384, help="the PyTorch scan only up to here")
    parser.add_argument("--no-sweep", action="store_true", help="keep the default tile configuration")
    parser.add_argument("--out", default="assets/results")
    parser.add_argument("--replot", default="", help="only redraw the plots from this bench.json")
    parser.add_argument("--scan-only", action="store_true", help="only the fused scan at 16,384 tokens (for ncu)")
    parser.add_argument("--sweep-only", action="store_true", help="only the scan tile sweep at 16,384 tokens")
    parser.add_argument("--profile", action="store_true", help="only the kernel breakdown of a few layers")
    args = parser.parse_args()
    if args.replot:
        replot(Path(args.replot))
        return
    size = SIZES[args.size]
    if args.scan_only:
        print(scan_alone(size.width, size.heads, size.d_state, 16384, args.repeats))
        return
    if args.sweep_only:
        sweep = sweep_scan_configs(size.width, size.heads, size.d_state, 16384, args.repeats)
        best = min(sweep, key=lambda r: r["triton_ms"])
        print(f"best of {len(sweep)} on {torch.cuda.get_device_name()}, size {args.size}: "
              f"config {config_label(triton_scan.CONFIG)}: {best['triton_ms']:.3f} ms")
        return
    if args.profile:
        profile_layers(size.width, size.heads, size.d_state)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    backends = args.backends.split(",") if args.backends else list(available_scan_backends("cuda"))
    device = torch.cuda.get_device_name()
    sdpa = time_sdpa_backends(size.heads, size.width // size.heads, args.repeats)
    print(f"{device}; scan backends {backends}; attention {attention_backend('cuda')}; size {args.size}; bf16")
    bw = copy_bandwidth()
    print(f"device-to-device copy: {bw:.0f} GB/s")
    sweep = []
    if "triton" in backends and not args.no_sweep:
        sweep = sweep_scan_configs(size.width, size.heads, size.d_state, 16384, args.repeats)
    alone = scan_alone(size.width, size.heads, size.d_state, 16384, max(args.repeats, 10)) if "triton" in backends else None
    if alone:
        print(f"fused scan alone, 16384 tokens: {alone}; {alone['triton_gbps'] / bw:.2f} of copy bandwidth")
    rows: list[dict] = []
    command = shlex.join(["python", "-m", "bench.layers", *sys.argv[1:]])
    header = {"device": device, "layers_command": command, "size": args.size, "copy_gbps": round(bw, 1),
              "attention": attention_backend("cuda"), "sdpa_backends": sdpa,
              "bars_scan_backend": backends[0] if backends else None,
              "scan_alone": alone, "scan_config_sweep": sweep}
    for tokens in map(int, args.tokens.split(",")):
        for batch in map(int, args.batches.split(",")):
            for kind in args.kinds.split(","):
                for backend in backends if kind in MAMBA_KINDS else [None]:
                    if backend == "torch" and tokens > args.torch_max_tokens:
                        continue
                    with use_scan_backend(backend):
                        r = time_layer(kind, size.width, size.heads, size.d_state, tokens, batch, args.repeats)
                    label = kind if backend is None else f"{kind} [{backend}]"
                    rows.append({"kind": kind, "scan": backend, "label": label, "tokens": tokens, "batch": batch, **r})
                    print(f"{tokens:6d} x{batch}  {label:28s} {r['ms']} ms  {r['peak_mb']} MB", flush=True)
            write_results(out / "bench.json", header, rows, bw)  # as it goes, in case a time limit cuts the run
    for batch in map(int, args.batches.split(",")):
        plot(rows, out, batch)


def write_results(path: Path, header: dict, rows: list[dict], bw: float) -> None:
    """Ratios to the Transformer layer, the bars (from the fastest scan backend), merged into bench.json."""
    attn = {(r["tokens"], r["batch"]): r["ms"] for r in rows if r["kind"] == "attn"}
    for r in rows:
        ref = attn.get((r["tokens"], r["batch"]))
        r["ratio_to_attn"] = round(r["ms"] / ref, 4) if r["ms"] and ref else None

    def ratio(tokens: int, batch: int) -> float | None:
        return next((r["ratio_to_attn"] for r in rows if r["kind"] == "bimamba_v2" and r["tokens"] == tokens
                     and r["batch"] == batch and r["scan"] == header["bars_scan_backend"]), None)

    bars = {name: ratio(*key) for name, key in BARS.items()}
    if header["scan_alone"]:
        bars["scan_bw_fraction"] = round(header["scan_alone"]["triton_gbps"] / bw, 4)
    print("bars:", bars, flush=True)
    merge_bench_json(path, {**header, "layers": rows, "bars": bars})


def replot(path: Path) -> None:
    """Redraw the layer plots from a bench.json (e.g. on a machine without the GPU run's matplotlib)."""
    data = json.loads(path.read_text())
    for batch in sorted({r["batch"] for r in data["layers"]}):
        plot(data["layers"], path.parent, batch, data["device"])


if __name__ == "__main__":
    main()
