"""CPU tests of maskmamba.ops: the vectorised selective scan and attention against their references."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F

from maskmamba.ops import (
    MAMBA_SSM_AVAILABLE,
    TRITON_AVAILABLE,
    attention,
    attention_backend,
    attention_ref,
    scan_backend,
    selective_scan,
    selective_scan_ref,
    selective_scan_torch,
)

selective_scan_module = importlib.import_module("maskmamba.ops.selective_scan")  # the package exports the function
SCAN_ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def scan_inputs(
    b: int,
    d: int,
    n: int,
    l: int,
    groups: int = 0,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    with_D: bool = True,
    with_z: bool = True,
    with_bias: bool = True,
    delta_shift: float = 0.0,
) -> dict:
    """Fresh random scan inputs of realistic magnitudes; groups=0 gives B, C of shape (b, n, l)."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen, dtype=dtype)

    bc_shape = (b, n, l) if groups == 0 else (b, groups, n, l)
    return {
        "u": randn(b, d, l),
        "delta": F.softplus(randn(b, d, l)) + delta_shift,
        "A": -torch.exp(randn(d, n).clamp(-3.0, 3.0)),  # in about [-20, -0.05]
        "B": randn(*bc_shape),
        "C": randn(*bc_shape),
        "D": randn(d) if with_D else None,
        "z": randn(b, d, l) if with_z else None,
        "delta_bias": 0.5 * randn(d) if with_bias else None,
    }


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out - ref).abs().max() / ref.abs().max()).item()


SHAPES = [  # b, d, n, l, groups
    (2, 8, 4, 1, 0),
    (1, 6, 3, 2, 0),
    (2, 8, 4, 7, 0),
    (2, 16, 8, 33, 0),
    (1, 12, 4, 100, 0),
    (2, 8, 4, 37, 2),
    (1, 16, 16, 64, 4),
]
OPTIONS = [  # D, z, delta_bias, delta_softplus
    (True, True, True, True),
    (False, False, False, False),
    (True, False, True, False),
    (False, True, False, True),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("options", OPTIONS)
def test_scan_torch_matches_ref_float64(shape: tuple, options: tuple) -> None:
    b, d, n, l, groups = shape
    with_D, with_z, with_bias, softplus = options
    kw = scan_inputs(b, d, n, l, groups, torch.float64, seed=l + d, with_D=with_D, with_z=with_z, with_bias=with_bias)
    out = selective_scan_torch(**kw, delta_softplus=softplus)
    ref = selective_scan_ref(**kw, delta_softplus=softplus)
    assert out.shape == (b, d, l) and out.dtype == torch.float64
    assert rel_err(out, ref) < 1e-10


@pytest.mark.parametrize("d,groups", [(64, 0), (64, 2), (256, 0)])
def test_scan_torch_matches_ref_float32_demo_shape(d: int, groups: int) -> None:
    kw = scan_inputs(2, d, 16, 272, groups, seed=d + groups)
    out = selective_scan_torch(**kw, delta_softplus=True)
    ref = selective_scan_ref(**kw, delta_softplus=True)
    assert out.dtype == torch.float32
    assert rel_err(out, ref) < 1e-4


@pytest.mark.parametrize("length", [31, 32, 33, 100])
def test_scan_torch_cpu_blocks_carry_the_state_exactly_as_the_whole_sequence(length: int, monkeypatch) -> None:
    """Without autograd the CPU scan runs large tensors in blocks of positions; with it, the whole sequence at once."""
    monkeypatch.setattr(selective_scan_module, "_CPU_WHOLE_BYTES", 0)
    kw = scan_inputs(2, 8, 4, length, 2, torch.float64, seed=length)
    blocked = selective_scan_torch(**kw, delta_softplus=True)
    whole = selective_scan_torch(**{**kw, "u": kw["u"].clone().requires_grad_()}, delta_softplus=True)
    assert rel_err(blocked, whole.detach()) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_scan_stable_when_decay_underflows(dtype: torch.dtype) -> None:
    kw = scan_inputs(2, 16, 8, 257, dtype=dtype, seed=3, delta_shift=40.0)
    kw["A"] = kw["A"] * 20.0  # delta * |A| up to ~2e4: exp(delta A) underflows to 0
    out = selective_scan_torch(**kw, delta_softplus=False)
    ref = selective_scan_ref(**kw, delta_softplus=False)
    assert torch.isfinite(out).all()
    assert rel_err(out, ref) < (1e-4 if dtype == torch.float32 else 1e-10)


def test_scan_long_memory_float32() -> None:
    """Tiny steps (decay near 1) over a long sequence: errors must not accumulate."""
    kw = scan_inputs(1, 8, 4, 1024, seed=5, with_bias=False)
    kw["delta"] = kw["delta"] * 1e-3
    out = selective_scan_torch(**kw)
    ref = selective_scan_ref(**kw)
    assert rel_err(out, ref) < 1e-4


@pytest.mark.parametrize("shape", [(2, 6, 3, 13, 0), (1, 8, 4, 16, 2), (2, 4, 2, 1, 0)])
def test_scan_torch_gradients_match_ref(shape: tuple) -> None:
    kw = scan_inputs(*shape, dtype=torch.float64, seed=7)
    grad_out = torch.randn(shape[0], shape[1], shape[3], dtype=torch.float64)
    grads = {}
    for fn in (selective_scan_torch, selective_scan_ref):
        leaves = {k: v.clone().requires_grad_() for k, v in kw.items()}
        (fn(**leaves, delta_softplus=True) * grad_out).sum().backward()
        grads[fn] = {k: v.grad for k, v in leaves.items()}
    for name in SCAN_ARG_NAMES:
        got, want = grads[selective_scan_torch][name], grads[selective_scan_ref][name]
        assert got is not None and got.shape == kw[name].shape, name
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-11), name


def test_scan_torch_gradcheck() -> None:
    kw = scan_inputs(1, 4, 3, 9, groups=2, dtype=torch.float64, seed=11)
    leaves = tuple(kw[k].requires_grad_() for k in SCAN_ARG_NAMES)
    assert torch.autograd.gradcheck(lambda *args: selective_scan_torch(*args, delta_softplus=True), leaves)


def test_scan_torch_leaves_inputs_untouched() -> None:
    kw = scan_inputs(2, 8, 4, 19)
    before = {k: v.clone() for k, v in kw.items()}
    with torch.no_grad():
        selective_scan_torch(**kw, delta_softplus=True)
    selective_scan_torch(**{k: v.clone().requires_grad_() for k, v in kw.items()}, delta_softplus=True)
    assert all(torch.equal(kw[k], before[k]) for k in kw)


def test_scan_torch_low_precision_and_autocast() -> None:
    kw = scan_inputs(2, 16, 8, 40, seed=13)
    ref = selective_scan_ref(**kw, delta_softplus=True)
    low = {k: (v.bfloat16() if k in ("u", "delta", "B", "C", "z") else v) for k, v in kw.items()}
    out = selective_scan_torch(**low, delta_softplus=True)
    assert out.dtype == torch.bfloat16
    assert rel_err(out.float(), ref) < 3e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_autocast = selective_scan_torch(**kw, delta_softplus=True)
    assert out_autocast.dtype == torch.float32
    assert rel_err(out_autocast, ref) < 1e-5  # computed in float32 despite autocast


def test_scan_dispatch_on_cpu_uses_torch_path() -> None:
    assert scan_backend("cpu") == "torch"
    fastest = "triton" if TRITON_AVAILABLE else "mamba-ssm" if MAMBA_SSM_AVAILABLE else "torch"
    assert scan_backend(torch.device("cuda")) == fastest
    kw = scan_inputs(2, 8, 4, 21, groups=2)
    assert torch.equal(selective_scan(**kw, delta_softplus=True), selective_scan_torch(**kw, delta_softplus=True))


@pytest.mark.parametrize("lq,lk", [(33, 33), (17, 5), (1, 40)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attention_matches_ref(lq: int, lk: int, dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(lq * 100 + lk)
    q = torch.randn(2, 3, lq, 16, generator=gen, dtype=dtype)
    k = torch.randn(2, 3, lk, 16, generator=gen, dtype=dtype)
    v = torch.randn(2, 3, lk, 16, generator=gen, dtype=dtype)
    out = attention(q, k, v)
    assert out.shape == (2, 3, lq, 16) and out.dtype == dtype
    assert rel_err(out, attention_ref(q, k, v)) < (1e-5 if dtype == torch.float32 else 1e-12)


def test_attention_ref_is_softmax_attention() -> None:
    q = torch.tensor([[[[1.0, 0.0]]]])
    k = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    v = torch.tensor([[[[2.0], [4.0]]]])
    w = torch.softmax(torch.tensor([2.0**-0.5, 0.0]), dim=0)
    assert torch.allclose(attention_ref(q, k, v), (w[0] * 2 + w[1] * 4).reshape(1, 1, 1, 1))


def test_attention_backend_on_cpu_is_sdpa() -> None:
    assert attention_backend("cpu") == "sdpa"


def test_the_fastest_sdpa_backend_is_the_least_total_time_over_lengths_it_ran_all_of() -> None:
    from maskmamba.ops import fastest_sdpa

    timings = {"cudnn": {4096: 0.1, 16384: 1.0, 65536: None}, "flash": {4096: 0.2, 16384: 1.2, 65536: 15.0},
               "efficient": {4096: 0.3, 16384: 2.0, 65536: 30.0}}
    assert fastest_sdpa(timings) == "flash"  # cudnn refused one length
    assert fastest_sdpa({"cudnn": {4096: None}}) is None and fastest_sdpa({}) is None


def test_a_named_sdpa_backend_is_used_and_reported() -> None:
    from maskmamba.ops import use_sdpa_backend

    q = torch.randn(1, 2, 9, 16)
    try:
        use_sdpa_backend("math")
        assert attention_backend("cpu") == "sdpa (math)"
        assert rel_err(attention(q, q, q), attention_ref(q, q, q)) < 1e-5
        with pytest.raises(ValueError, match="unknown SDPA backend 'fastest'"):
            use_sdpa_backend("fastest")
    finally:
        use_sdpa_backend(None)
    assert attention_backend("cpu") == "sdpa"


def test_causal_conv_reference_sees_only_the_past() -> None:
    from maskmamba.ops import causal_conv_silu, causal_conv_silu_ref

    gen = torch.Generator().manual_seed(4)
    u, weight = torch.randn(2, 6, 11, generator=gen), torch.randn(6, 1, 4, generator=gen)
    bias = torch.randn(6, generator=gen)
    out = causal_conv_silu_ref(u, weight, bias)
    def at(t: int) -> torch.Tensor:  # output position t: taps on positions t-3 .. t
        return sum(weight[:, 0, 3 - j] * u[..., t - j] for j in range(4) if t >= j)

    by_hand = torch.stack([at(t) for t in range(11)], -1)
    assert torch.allclose(out, F.silu(by_hand + bias[:, None]), atol=1e-6)
    changed = u.clone()
    changed[..., 7] += 1  # a later position cannot move earlier outputs
    assert torch.equal(causal_conv_silu_ref(changed, weight, bias)[..., :7], out[..., :7])
    assert torch.equal(causal_conv_silu(u, weight, bias), out)  # on the CPU, the reference itself
