"""Registers and spill bytes per thread of the fused scan's kernels, compiled for a GPU on a machine without one.

    python -m bench.scan_registers [--arch 90] [--config "bwd_chunk=8" --config "bwd_chunk=8,bwd_state_block=2" ...]

Triton compiles each kernel ahead of time for the given compute capability (its NVIDIA backend and the ptxas and
cuobjdump it ships run on the CPU) at a `ScanConfig` (default: `triton_scan.CONFIG`, then each --config, fields
changed from the default as `name=value` pairs; `walk=1` compiles the walking variants, any other `walk` the
chunked ones, which the automatic default runs at small batches). Stack bytes above 0 are spills to local memory: a tile
configuration that spills is a poor candidate before any device time is spent timing it. Fences counts the
MEMBAR instructions in the machine code (an atomic add with Triton's default acq_rel order brings one, and an L1
invalidation, per add). Kernel arguments are typed as a bf16 layer runs them (x, delta, B, C, dy and d(delta)
bf16, the rest fp32), with Bi-Mamba-v2's N = 16 states and centred conv of 3 taps, and specialised as a launch
specialises them: every channel and state stride (`s*_e`, `s*_n`) is 1 in the model's tensors, and Triton compiles an
integer argument equal to 1 as the constant 1 (the row strides are kept generic, `_jit`). That constant is what tells
Triton which axis is contiguous, so it decides the tiles' layout: compiled with the strides left generic, the kernels
take other layouts and spill where the launched ones do not.

The figures are those of the Triton that imports: the GPU machine runs 3.6 (`pip install --target /tmp/t36
triton==3.6.0`, then `PYTHONPATH=/tmp/t36/lib/python3.11/site-packages:. python -m bench.scan_registers`).
"""
from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import tempfile

from bench.layers import config_label
from maskmamba.ops.triton_scan import CONFIG, ScanConfig, _pad, config_from_text, lane_sums

BF16_ARGS = {"x_ptr", "dt_ptr", "B_ptr", "C_ptr", "g_ptr", "ddt_ptr", "y_ptr", "z_ptr"}
# Bi-Mamba-v2: 16 states, centred conv of 3 taps, odd direction reversed
LAYER = dict(N=16, K=3, PAD=_pad(3, causal=False), REV_ODD=1)


def kernel_constants(config: ScanConfig) -> dict[str, dict]:
    """The five scan kernels (the conv-only one in its backward form) and the compile-time constants each takes
    at `config`."""
    fwd = dict(CHUNK=config.chunk, BLOCK_E=config.block_e, STATE_BLOCK=config.state_block)
    bwd = dict(CHUNK=config.bwd_chunk, BLOCK_E=config.block_e, STATE_BLOCK=config.bwd_state_block)
    return {
        "_fwd_chunk_summary": LAYER | fwd,
        "_fwd_output": LAYER | fwd | {"GATE": True, "WALK": config.walk == 1},
        "_bwd_chunk_summary": {"N": LAYER["N"], "REV_ODD": 1} | bwd,
        "_bwd_main": LAYER | bwd | {"LANE_SUMS": lane_sums(config), "WALK": config.walk == 1},
        "_conv_silu": {"K": LAYER["K"], "PAD": LAYER["PAD"], "REV_ODD": 1, "BACKWARD": True,
                       "CHUNK": config.chunk, "BLOCK_E": config.block_e},
    }


def unit_strides(names: list[str]) -> dict[str, int]:
    """The channel and state strides among a kernel's arguments, each 1 as the model's tensors have them."""
    return {name: 1 for name in names if re.fullmatch(r"s\w*_[en]", name)}


def compile_for(kernel, constants: dict, arch: int, warps: int):
    """Compile a @triton.jit kernel for compute capability `arch` with the given constexprs, its unit strides
    specialised to 1 as a launch specialises them."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    names = list(inspect.signature(kernel.fn).parameters)
    constants = unit_strides(names) | constants
    signature = {name: "constexpr" if name in constants else
                 ("*bf16" if name in BF16_ARGS else "*fp32") if name.endswith("_ptr") else "i32" for name in names}
    source = ASTSource(fn=kernel, signature=signature,
                       constexprs={(names.index(name),): value for name, value in constants.items()})
    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"num_warps": warps})


def cuobjdump(compiled, flag: str) -> str:
    """What Triton's own cuobjdump prints with `flag` (-res-usage, -sass) for the kernel's cubin."""
    import triton

    tool = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
        f.write(compiled.asm["cubin"])
        f.flush()
        return subprocess.run([tool, flag, f.name], capture_output=True, text=True, check=True).stdout


def resource_usage(compiled) -> dict[str, int]:
    """{'REG': registers per thread, 'STACK': stack (spill) bytes per thread, 'FENCES': MEMBAR instructions}."""
    out = cuobjdump(compiled, "-res-usage")
    usage = dict(re.findall(r"\b(REG|STACK):(\d+)", out))
    if set(usage) != {"REG", "STACK"}:
        raise RuntimeError(f"no REG and STACK figures in cuobjdump's output: {out[:300]!r}")
    sass = cuobjdump(compiled, "-sass")
    if "EXIT" not in sass:
        raise RuntimeError(f"no machine code in cuobjdump's output: {sass[:300]!r}")
    return {key: int(value) for key, value in usage.items()} | {"FENCES": len(re.findall(r"\bMEMBAR\b", sass))}


def main() -> None:
    os.environ.pop("TRITON_INTERPRET", None)  # compiled, not interpreted
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", type=int, default=90, help="compute capability x 10 (90: H100 and H200)")
    parser.add_argument("--config", type=config_from_text, action="append", default=[],
                        help="fields changed from the default ScanConfig, e.g. bwd_chunk=8,bwd_state_block=2")
    args = parser.parse_args()
    import triton

    from maskmamba.ops import _triton_scan_kernels as kernels

    print(f"triton {triton.__version__}, sm_{args.arch}; registers and stack (spill) bytes per thread, fences")
    for config in [CONFIG, *args.config]:
        print(config_label(config))
        for name, constants in kernel_constants(config).items():
            usage = resource_usage(compile_for(getattr(kernels, name), constants, args.arch, config.warps))
            print(f"  {name:20s} {usage['REG']:4d} registers  {usage['STACK']:5d} stack bytes  "
                  f"{usage['FENCES']:3d} fences", flush=True)


if __name__ == "__main__":
    main()
