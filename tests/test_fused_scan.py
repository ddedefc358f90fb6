"""The fused Triton scan against the plain-PyTorch reference: forward and backward, fp32 and bf16, both directions.

Without CUDA the kernels run on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set here before any
kernel is built); with CUDA the same checks run compiled (marked `gpu`) and the interpreter ones skip.
"""
from __future__ import annotations

import dataclasses
import os
import sys

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available() and "triton" not in sys.modules:  # triton reads it when imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

import maskmamba.ops.triton_scan as triton_scan  # noqa: E402
from maskmamba.modules import BiMambaV2, BiMambaVim, MMamba, SeqLayout  # noqa: E402
from maskmamba.ops import (  # noqa: E402
    TRITON_AVAILABLE,
    ScanConfig,
    available_scan_backends,
    fused_scan,
    scan_backend,
    selective_scan_ref,
    selective_scan_torch,
    use_scan_backend,
)

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
needs_triton = pytest.mark.skipif(not TRITON_AVAILABLE, reason="triton does not import")
interpreted_only = pytest.mark.skipif(not INTERPRETED, reason="needs TRITON_INTERPRET=1 (no CUDA)")
compiled_only = pytest.mark.skipif(not torch.cuda.is_available() or INTERPRETED, reason="needs CUDA, compiled")


def interpreter(test):
    """Runs through Triton's CPU interpreter."""
    return needs_triton(interpreted_only(test))


def gpu(test):
    """Runs compiled on CUDA."""
    return pytest.mark.gpu(needs_triton(compiled_only(test)))
NAMES = ("x", "conv_w", "conv_b", "delta", "A", "B", "C", "D", "dt_bias", "gate")


def make_inputs(b: int, L: int, n: int, E: int, N: int, K: int, shared: bool, seed: int = 0) -> dict:
    """Random inputs in the ranges a trained mixer sees; B and C are strided views of one projection."""
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=g)  # noqa: E731
    proj = rand(b, L, n, 3 + 2 * N)
    return {
        "x": rand(b, L, E) if shared else rand(b, L, n, E),
        "conv_w": rand(n * E, K) * 0.5, "conv_b": rand(n * E) * 0.1,
        "delta": rand(b, L, n, E) * 0.5 - 1.0, "A": -torch.exp(rand(n * E, N) * 0.5),
        "B": proj[..., 3:3 + N], "C": proj[..., 3 + N:],
        "D": rand(n * E), "dt_bias": rand(n * E) * 0.3, "gate": rand(b, L, E),
    }


def reference(kw: dict, causal: bool, reverse_odd: bool, scan=selective_scan_ref) -> torch.Tensor:
    """The fused op composed from F.conv1d and a plain-PyTorch scan (the sequential `selective_scan_ref`, or
    at GPU sizes the vectorised `selective_scan_torch`, itself checked against it), flips made explicitly."""
    b, L, n, E = kw["delta"].shape
    K = kw["conv_w"].shape[1]
    pad = (K - 1, 0) if causal else ((K - 1) // 2, K // 2)
    outs = []
    for i in range(n):
        chans = slice(i * E, (i + 1) * E)

        def seq(t: torch.Tensor) -> torch.Tensor:  # (b, L, c) in scan order, channels first
            return (t.flip(1) if reverse_odd and i % 2 else t).transpose(1, 2)

        x = kw["x"] if kw["x"].dim() == 3 else kw["x"][:, :, i]
        u = F.silu(F.conv1d(F.pad(seq(x), pad), kw["conv_w"][chans, None], kw["conv_b"][chans], groups=E))
        y = scan(u, seq(kw["delta"][:, :, i]), kw["A"][chans], seq(kw["B"][:, :, i]),
                  seq(kw["C"][:, :, i]), kw["D"][chans], None, kw["dt_bias"][chans], True)
        y = y.transpose(1, 2)  # (b, L, E) in scan order
        outs.append(y.flip(1) if reverse_odd and i % 2 else y)
    outs.append(F.silu(kw["gate"]))
    return torch.cat(outs, dim=-1)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-12)).item()


def check_parity(b, L, n, E, N, K, shared, causal, dtype, device, config, tol_fwd, tol_bwd):
    kw = make_inputs(b, L, n, E, N, K, shared)
    low = {k: (v.to(dtype) if k in ("x", "delta", "B", "C", "gate") else v).to(device).requires_grad_()
           for k, v in kw.items()}
    ref = {k: v.detach().double().requires_grad_() for k, v in low.items()}  # float64, on the same device
    y = fused_scan(**low, causal=causal, reverse_odd=shared, config=config)
    scan = selective_scan_ref if device == "cpu" else selective_scan_torch
    y_ref = reference(ref, causal, reverse_odd=shared, scan=scan)
    assert y.dtype == dtype and y.shape == y_ref.shape
    err = rel(y, y_ref)
    assert err < tol_fwd, f"forward rel err {err:.2e}"
    dy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(device)
    grads = torch.autograd.grad(y, list(low.values()), dy.to(device, dtype))
    grads_ref = torch.autograd.grad(y_ref, list(ref.values()), dy)
    errors = {name: rel(g, gr) for name, g, gr in zip(NAMES, grads, grads_ref)}
    print(f"L={L} n={n} {dtype}: forward {err:.1e}; " + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()))
    assert max(errors.values()) < tol_bwd, errors


SMALL = ScanConfig(chunk=16, block_e=8, warps=1, bwd_chunk=8, state_block=1)  # one state per turn (2-D tiles)
# the forward's state blocks (N = 4 here: two turns of the state loop, or one), the second with the chunk also
# spread over lanes on a GPU (block_e < 32 x warps)
SMALL_STATE_BLOCKS = [ScanConfig(chunk=16, block_e=8, warps=1, bwd_chunk=8, state_block=2, bwd_state_block=2),
                      ScanConfig(chunk=16, block_e=4, warps=1, bwd_chunk=8, state_block=4, bwd_state_block=4)]
# dB and dC summed by `_lane_sums` (bwd_chunk x bwd_state_block 32 or 16, block_e 32, one warp): 32 rows with two
# states per turn and with one (2-D tiles), and 16 rows (two lanes to a row); E = 8 here, so most lanes hold masked
# channels
LANE_SUMS_16 = ScanConfig(chunk=16, block_e=32, warps=1, bwd_chunk=8, state_block=1, bwd_state_block=2)
LANE_SUMS = [ScanConfig(chunk=16, block_e=32, warps=1, bwd_chunk=16, state_block=1, bwd_state_block=2),
             ScanConfig(chunk=16, block_e=32, warps=1, bwd_chunk=32, state_block=1, bwd_state_block=1), LANE_SUMS_16]
# each program walking its sequence's chunks in turn (`walk`): one state per turn, two, and the 16-row lane sums
WALKS = [dataclasses.replace(c, walk=1) for c in (SMALL, SMALL_STATE_BLOCKS[0], LANE_SUMS_16)]
# (L, n, shared, causal): Bi-Mamba-v2 (shared input, odd direction reversed, centred conv), lengths below, at,
# across and not a multiple of the chunk; M-Mamba-like (4 own sequences, causal conv, no reversal).
CPU_CASES = [(16, 2, True, False), (37, 2, True, False), (23, 4, False, True)]


def config_id(config: ScanConfig | None) -> str:
    return "default" if config is None else "-".join(f"{k}{v}" for k, v in vars(config).items())


@interpreter
@pytest.mark.parametrize("L,n,shared,causal", CPU_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", [SMALL, *SMALL_STATE_BLOCKS, *LANE_SUMS, *WALKS], ids=config_id)
def test_fused_scan_interpreted(L, n, shared, causal, dtype, config):
    if dtype == torch.bfloat16 and L != 37:
        pytest.skip("bf16 once, to keep the interpreter run short")
    if config is not SMALL and L == 16:
        pytest.skip("state blocks on the lengths that are not a multiple of the chunk")
    if (config.walk == 1 or config is LANE_SUMS_16) and (dtype == torch.bfloat16 or (triton_scan.lane_sums(config)
                                                                                and n == 4)):
        pytest.skip("walking chunks and 16-row lane sums in fp32, the lane sums on one layout, to keep the run short")
    tol = (1e-5, 1e-5) if dtype == torch.float32 else (1e-2, 2e-2)
    check_parity(1, L, n, 8, 4, 4 if causal else 3, shared, causal, dtype, "cpu", config, *tol)


def test_lane_sums_takes_the_tiles_of_one_row_and_one_channel_per_lane():
    assert all(triton_scan.lane_sums(config) for config in LANE_SUMS) and triton_scan.lane_sums(ScanConfig())
    assert not any(triton_scan.lane_sums(config) for config in (SMALL, *SMALL_STATE_BLOCKS))
    assert not triton_scan.lane_sums(ScanConfig(block_e=64, warps=2))  # a channel per lane, but two warps


def _mixer_grads(mixer: torch.nn.Module, x: torch.Tensor, layout, backend: str):
    with use_scan_backend(backend):
        y = mixer(x, layout)
    grads = torch.autograd.grad(y, [x, *mixer.parameters()], torch.ones_like(y))
    return y, grads


@interpreter
@pytest.mark.parametrize("kind", ["bimamba-v2", "bimamba-vim", "mmamba"])
def test_mixers_on_fused_backend_match_torch(kind, monkeypatch):
    """Whole mixers (projections, conv, scan, gate) on the "triton" backend against the "torch" backend."""
    monkeypatch.setattr(triton_scan, "CONFIG", SMALL)
    torch.manual_seed(0)
    layout = SeqLayout(grid=3, slots=2)
    mixer = {"bimamba-v2": BiMambaV2, "bimamba-vim": BiMambaVim, "mmamba": MMamba}[kind](16, 8, d_state=4)
    x = torch.randn(1, layout.length, 16, requires_grad=True)
    y, grads = _mixer_grads(mixer, x, layout, "triton")
    y_ref, grads_ref = _mixer_grads(mixer, x, layout, "torch")
    assert rel(y, y_ref) < 1e-5
    assert max(rel(g, gr) for g, gr in zip(grads, grads_ref)) < 1e-4


def test_backend_choice_and_forcing():
    assert scan_backend("cpu") == "torch"  # the interpreter is never chosen on its own
    with use_scan_backend("torch"):
        assert scan_backend("cpu") == "torch"
    with pytest.raises(ValueError, match="unknown scan backend"):
        with use_scan_backend("cudnn"):
            pass
    with use_scan_backend("mamba-ssm"), pytest.raises(RuntimeError, match="not available"):
        scan_backend("cpu")
    if torch.cuda.is_available() and TRITON_AVAILABLE:
        assert available_scan_backends("cuda")[0] == scan_backend("cuda") == "triton"


def test_bad_shapes_are_rejected():
    kw = make_inputs(1, 16, 2, 8, 4, 3, shared=True)
    with pytest.raises(ValueError, match="B and C"):
        fused_scan(**{**kw, "B": kw["B"][..., :3]}, causal=False, reverse_odd=True)
    with pytest.raises(ValueError, match="x must be"):
        fused_scan(**{**kw, "x": kw["x"][:, :5]}, causal=False, reverse_odd=True)
    with pytest.raises(ValueError, match="state_block"):  # not a power of two
        fused_scan(**kw, causal=False, reverse_odd=True, config=ScanConfig(state_block=3))
    with pytest.raises(ValueError, match="bwd_state_block"):
        fused_scan(**kw, causal=False, reverse_odd=True, config=ScanConfig(bwd_state_block=3))


def test_walking_is_chosen_by_programs_per_sm(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert triton_scan.walks(ScanConfig(walk=1), 1, cpu) and not triton_scan.walks(ScanConfig(walk=0), 10**6, cuda)
    assert not triton_scan.walks(ScanConfig(), 10**6, cpu)  # automatic: the interpreter does not walk
    monkeypatch.setattr(triton_scan, "_sm_count", lambda device: 132)  # an H200
    per_sm = triton_scan.WALK_PROGRAMS_PER_SM
    assert triton_scan.walks(ScanConfig(), 132 * per_sm, cuda)  # serial-half and parallel-2 at batch 256
    assert not triton_scan.walks(ScanConfig(), 132 * per_sm - 1, cuda)  # parallel-4 at batch 256; any batch 1


@interpreter
def test_a_state_block_over_n_takes_all_states_at_once():
    kw = make_inputs(1, 20, 2, 8, 4, 3, shared=True)
    whole, over = (fused_scan(**kw, causal=False, reverse_odd=True, config=dataclasses.replace(SMALL, state_block=k))
                   for k in (4, 8))  # N = 4
    assert torch.equal(whole, over)


GPU_CASES = [(1000, 2, True, False), (4096, 2, True, False), (777, 4, False, True), (300, 2, True, True)]
# state blocks (N = 16), one with more warps and one with the chunk spread over lanes too; chunks walked in turn
GPU_STATE_BLOCKS = [ScanConfig(chunk=16, block_e=64, warps=2, state_block=4, bwd_state_block=4),
                    ScanConfig(chunk=32, block_e=16, warps=1, state_block=2, bwd_state_block=2),
                    ScanConfig(walk=1), ScanConfig(bwd_chunk=8, walk=1)]  # walking chunks; 16-row lane sums


@gpu
@pytest.mark.parametrize("L,n,shared,causal", GPU_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("config", [None, *GPU_STATE_BLOCKS], ids=config_id)
def test_fused_scan_compiled(L, n, shared, causal, dtype, config):
    if dtype == torch.bfloat16 and not (shared and not causal):
        pytest.skip("bf16 on Bi-Mamba-v2's layout only: every other combination is another set of compilations")
    if config is not None and L not in (1000, 777):
        pytest.skip("state blocks on one length per layout")
    tol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-2, 2e-2)
    check_parity(2, L, n, 80, 16, 4 if causal else 3, shared, causal, dtype, "cuda", config, *tol)


@gpu
@pytest.mark.parametrize("kind", ["bimamba-v2", "bimamba-vim", "mmamba"])
def test_mixers_compiled_match_torch(kind):
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    layout = SeqLayout(grid=16, slots=2).cuda()  # scan_index must sit with the mixer
    mixer = {"bimamba-v2": BiMambaV2, "bimamba-vim": BiMambaVim, "mmamba": MMamba}[kind](64, 48).cuda()
    x = torch.randn(2, layout.length, 64, device="cuda", requires_grad=True)
    y, grads = _mixer_grads(mixer, x, layout, "triton")
    y_ref, grads_ref = _mixer_grads(mixer, x, layout, "torch")
    assert rel(y, y_ref) < 1e-4
    assert max(rel(g, gr) for g, gr in zip(grads, grads_ref)) < 1e-3


@gpu
def test_offsets_past_int32():
    """Batch and direction strides of 2^31 elements (65,536 tokens x 8 of a wide M-Mamba reach them) must not
    wrap: inputs spread that far give exactly what their dense copies give."""
    b, L, n, E, N = 2, 300, 2, 32, 16
    dense = {k: v.cuda() for k, v in make_inputs(b, L, n, E, N, 3, shared=True).items()}
    dense["x"], dense["delta"] = dense["x"].bfloat16(), dense["delta"].bfloat16()
    big = 2**31
    spread = dict(dense)
    for name, strides in (("x", (big, E, 1)), ("delta", (L * E, E, big, 1))):  # batch, then direction, stride
        t = dense[name]
        storage = torch.zeros(big + t.numel(), device="cuda", dtype=t.dtype)
        spread[name] = storage.as_strided(t.shape, strides)
        spread[name].copy_(t)
    with torch.no_grad():
        assert torch.equal(fused_scan(**spread, causal=False, reverse_odd=True),
                           fused_scan(**dense, causal=False, reverse_odd=True))
