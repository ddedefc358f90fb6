"""`bench.scan_registers`: the fused scan's kernels compiled for sm_90 on this CPU-only machine, and the tile
configuration flags that it and `bench.train_throughput` take."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from maskmamba.ops.triton_scan import CONFIG, TRITON_AVAILABLE, config_from_text

ROOT = Path(__file__).resolve().parents[1]


def test_config_from_text_changes_only_the_named_fields():
    config = config_from_text("bwd_chunk=8,bwd_state_block=2")
    assert (config.bwd_chunk, config.bwd_state_block) == (8, 2)
    assert (config.chunk, config.block_e, config.state_block) == (CONFIG.chunk, CONFIG.block_e, CONFIG.state_block)
    assert config_from_text("") == CONFIG
    for bad in ("chunks=8", "bwd_chunk=eight", "bwd_chunk"):
        with pytest.raises(ValueError, match="NAME=INT"):
            config_from_text(bad)


@pytest.mark.skipif(not TRITON_AVAILABLE, reason="triton does not import")
def test_registers_spills_and_fences_of_two_backward_chunks():
    """The backward's main kernel holds a whole chunk of several tiles per lane: at 16 positions it runs out of
    its 255 registers and spills, at 8 it fits. No kernel fences its memory: the atomic adds are relaxed (with
    Triton's default order, each brought a MEMBAR and an L1 invalidation: 9 in `_bwd_main`, 4 in `_conv_silu`)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | {"TRITON_DEFAULT_FP_FUSION": "1"}
    command = [sys.executable, "-m", "bench.scan_registers",
               "--config", "bwd_chunk=16,bwd_state_block=1", "--config", "bwd_chunk=8,bwd_state_block=1"]
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    blocks = re.split(r"\n(?=chunk=)", out.stdout)
    usage = {}
    for block in blocks[1:]:
        chunk = int(re.search(r"bwd_chunk=(\d+)", block).group(1))
        for name, regs, stack, fences in re.findall(r"(_\w+)\s+(\d+) registers\s+(\d+) stack bytes\s+(\d+) fences",
                                                    block):
            usage[chunk, name] = (int(regs), int(stack), int(fences))
    assert len(usage) == 10  # five kernels at each backward chunk
    assert all(0 < regs <= 255 and fences == 0 for regs, _, fences in usage.values())
    assert usage[16, "_bwd_main"][1] > 0 and usage[8, "_bwd_main"][1] == 0
    assert usage[8, "_bwd_main"][0] < usage[16, "_bwd_main"][0]


@pytest.mark.skipif(not TRITON_AVAILABLE, reason="triton does not import")
def test_kernels_compile_with_their_unit_strides_as_constants(monkeypatch):
    """A launch with the model's tensors compiles every channel and state stride as the constant 1 (Triton
    specialises an integer equal to 1), which decides the tiles' layout; the tool must compile them so too (left
    generic, Triton 3.6 took other layouts and reported spills the launched kernels do not have)."""
    import inspect

    import triton

    from bench.scan_registers import compile_for, kernel_constants, unit_strides
    from maskmamba.ops import _triton_scan_kernels as kernels

    names = list(inspect.signature(kernels._bwd_main.fn).parameters)
    assert set(unit_strides(names)) == {"sx_e", "sd_e", "sB_n", "sC_n", "sg_e", "sp_e"}
    seen = {}
    monkeypatch.setattr(triton, "compile", lambda source, **_: seen.setdefault("source", source))
    compile_for(kernels._bwd_main, kernel_constants(CONFIG)["_bwd_main"], 90, CONFIG.warps)
    constants = {names[key[0]]: value for key, value in seen["source"].constants.items()}
    assert all(constants[name] == 1 for name in unit_strides(names))
    assert "sx_t" not in constants and constants["CHUNK"] == CONFIG.bwd_chunk  # row strides stay generic
