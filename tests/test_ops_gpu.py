"""GPU tests of maskmamba.ops: mamba-ssm, the torch scan, SDPA, flash-attn and causal-conv1d against references.

Each test prints its max abs and relative errors (run with `pytest -s -m gpu` to see them).
"""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from maskmamba.ops import (
    CAUSAL_CONV1D_AVAILABLE,
    FLASH_ATTN_AVAILABLE,
    MAMBA_SSM_AVAILABLE,
    attention,
    attention_backend,
    attention_ref,
    causal_conv_silu,
    causal_conv_silu_ref,
    scan_backend,
    selective_scan,
    selective_scan_ref,
    selective_scan_torch,
)

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
needs_mamba_ssm = pytest.mark.skipif(not MAMBA_SSM_AVAILABLE, reason="mamba_ssm does not import")

SCAN_ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
SCAN_CASES = [(2, 256, 16, 272, 0), (2, 256, 16, 1024, 0), (2, 256, 16, 272, 2)]  # b, d, n, l, groups


def scan_inputs(b: int, d: int, n: int, l: int, groups: int, seed: int = 0) -> dict:
    """Realistic float32 inputs on the GPU; groups=0 gives B, C of shape (b, n, l)."""
    gen = torch.Generator().manual_seed(seed)
    bc_shape = (b, n, l) if groups == 0 else (b, groups, n, l)
    kw = {
        "u": torch.randn(b, d, l, generator=gen),
        "delta": F.softplus(torch.randn(b, d, l, generator=gen)) - 1.0,
        "A": -torch.exp(torch.randn(d, n, generator=gen).clamp(-3.0, 3.0)),
        "B": torch.randn(*bc_shape, generator=gen),
        "C": torch.randn(*bc_shape, generator=gen),
        "D": torch.randn(d, generator=gen),
        "z": torch.randn(b, d, l, generator=gen),
        "delta_bias": 0.5 * torch.randn(d, generator=gen),
    }
    return {k: v.cuda() for k, v in kw.items()}


def errors(out: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """Max abs error and the same relative to the reference's max magnitude."""
    abs_err = (out.double() - ref.double()).abs().max().item()
    return abs_err, abs_err / ref.double().abs().max().item()


def forward_backward(fn, kw: dict, grad_out: torch.Tensor) -> tuple[torch.Tensor, dict]:
    leaves = {k: v.detach().clone().requires_grad_() for k, v in kw.items()}
    out = fn(**leaves, delta_softplus=True)
    out.backward(grad_out.to(out.dtype))
    return out.detach(), {k: v.grad for k, v in leaves.items()}


def check_scan_against_ref(label: str, fn, kw: dict, tol: float) -> None:
    """Forward and every input gradient of fn vs the float64 sequential reference."""
    grad_out = torch.randn(kw["u"].shape, generator=torch.Generator().manual_seed(1)).cuda()
    out, grads = forward_backward(fn, kw, grad_out)
    ref, ref_grads = forward_backward(selective_scan_ref, {k: v.double() for k, v in kw.items()}, grad_out)
    results = {"out": errors(out, ref)} | {f"d{k}": errors(grads[k], ref_grads[k]) for k in SCAN_ARG_NAMES}
    for name, (abs_err, rel) in results.items():
        print(f"[{label}] {name}: max_abs={abs_err:.3e} rel={rel:.3e}")
    assert all(rel < tol for _, rel in results.values()), results


def case_label(kind: str, case: tuple) -> str:
    b, d, n, l, groups = case
    return f"{kind} b={b} d={d} n={n} l={l} g={groups or 1}"


@needs_mamba_ssm
@pytest.mark.parametrize("case", SCAN_CASES)
def test_mamba_ssm_scan_matches_ref_fp32(case: tuple) -> None:
    assert scan_backend("cuda") == "mamba-ssm"
    check_scan_against_ref(case_label("mamba-ssm fp32", case), selective_scan, scan_inputs(*case), tol=1e-3)


@needs_mamba_ssm
def test_mamba_ssm_scan_bf16_inputs() -> None:
    """bf16 u/delta/z with fp32 B/C (cast by the dispatcher) and fp32 A/D/delta_bias."""
    kw = scan_inputs(2, 256, 16, 272, 0, seed=2)
    for name in ("u", "delta", "z"):
        kw[name] = kw[name].bfloat16()
    out = selective_scan(**kw, delta_softplus=True)
    ref = selective_scan_ref(**{k: v.double() for k, v in kw.items()}, delta_softplus=True)
    abs_err, rel = errors(out, ref)
    print(f"[mamba-ssm bf16 b=2 d=256 l=272] out: max_abs={abs_err:.3e} rel={rel:.3e}")
    assert out.dtype == torch.bfloat16
    assert rel < 2e-2


@pytest.mark.parametrize("case", SCAN_CASES)
def test_torch_scan_on_cuda_matches_ref_fp32(case: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    check_scan_against_ref(case_label("torch-scan fp32", case), selective_scan_torch, scan_inputs(*case), tol=1e-3)


ATTN_CASES = [(2, 8, 272, 272, 64), (2, 8, 272, 77, 64)]  # b, heads, lq, lk, head_dim
ATTN_TOL = {torch.float32: 1e-3, torch.bfloat16: 2e-2}


def check_attention(label: str, case: tuple, dtype: torch.dtype) -> None:
    b, heads, lq, lk, dh = case
    gen = torch.Generator().manual_seed(lq + lk)
    q, k, v = (torch.randn(b, heads, n, dh, generator=gen).cuda().to(dtype) for n in (lq, lk, lk))
    out = attention(q, k, v)
    ref = attention_ref(q.double(), k.double(), v.double())
    abs_err, rel = errors(out, ref)
    print(f"[{label} {str(dtype)[6:]} lq={lq} lk={lk}] max_abs={abs_err:.3e} rel={rel:.3e}")
    assert out.shape == (b, heads, lq, dh) and out.dtype == dtype
    assert rel < ATTN_TOL[dtype]


@pytest.mark.parametrize("case", ATTN_CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sdpa_attention_matches_ref(case: tuple, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.import_module("maskmamba.ops.attention"), "FLASH_ATTN_AVAILABLE", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    check_attention("sdpa", case, dtype)


@pytest.mark.parametrize("backend", ["cudnn", "flash", "efficient"])
def test_each_sdpa_backend_matches_ref_or_refuses_the_shape(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from maskmamba.ops import use_sdpa_backend

    monkeypatch.setattr(importlib.import_module("maskmamba.ops.attention"), "FLASH_ATTN_AVAILABLE", False)
    use_sdpa_backend(backend)
    try:
        check_attention(f"sdpa {backend}", ATTN_CASES[0], torch.bfloat16)
    except RuntimeError as err:  # this backend has no kernel for the shape on this device: the bench records None
        pytest.skip(f"{backend}: {err}")
    finally:
        use_sdpa_backend(None)


@pytest.mark.skipif(not FLASH_ATTN_AVAILABLE, reason="flash_attn does not import")
@pytest.mark.parametrize("case", ATTN_CASES)
def test_flash_attention_matches_ref(case: tuple) -> None:
    assert attention_backend("cuda") == "flash-attn"
    check_attention("flash-attn", case, torch.bfloat16)


@pytest.mark.skipif(not CAUSAL_CONV1D_AVAILABLE, reason="causal_conv1d does not import")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_causal_conv1d_matches_ref_forward_and_backward(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(7)
    u, weight, bias = (t.cuda() for t in (torch.randn(2, 64, 300, generator=gen), torch.randn(64, 1, 4, generator=gen),
                                          torch.randn(64, generator=gen)))
    grads = []
    for fn in (causal_conv_silu, causal_conv_silu_ref):
        leaves = [t.clone().to(dtype).requires_grad_() for t in (u, weight, bias)]
        out = fn(*leaves)
        out.float().square().sum().backward()
        grads.append((out.float(), *(leaf.grad.float() for leaf in leaves)))
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    for got, want in zip(*grads):
        assert errors(got, want)[1] < tol
