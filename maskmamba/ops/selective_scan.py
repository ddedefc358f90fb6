"""Mamba-1 selective scan (S6): a sequential reference, a vectorised PyTorch scan and a dispatcher.

All three functions share mamba-ssm's argument conventions, so its CUDA kernel is a drop-in:

    u, delta, z: (b, d, l); A: (d, n), real and negative; B, C: (b, n, l) or (b, g, n, l);
    D, delta_bias: (d,).  With g groups, channel block i*(d//g):(i+1)*(d//g) reads B[:, i], C[:, i].

    delta' = softplus(delta + delta_bias)  (softplus only if delta_softplus)
    h_t = exp(delta'_t A) h_{t-1} + delta'_t B_t u_t
    y_t = C_t . h_t + D u_t;  y = y * silu(z) if z is given.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _mamba_selective_scan_fn

    MAMBA_SSM_AVAILABLE = True
except Exception:  # ImportError, or an OSError/RuntimeError when the compiled extension is missing
    _mamba_selective_scan_fn = None
    MAMBA_SSM_AVAILABLE = False

from .triton_scan import TRITON_AVAILABLE


_CUDA_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# The CPU scan without autograd runs in blocks of _CPU_BLOCK positions once its (b, l, d, n) tensors would pass
# _CPU_WHOLE_BYTES, so that they stay in cache. One guided forward of the shipped models on 2 threads, whole against
# blocked (`python -m bench.cpu_scan_blocks`, medians of 6 rounds): mmamba (d 736, 25 MB) 387 against 202 ms;
# serial-half (d 384, 13 MB) 129 against 130, level; parallel-2 (d 128) 78 against 86 and parallel-4 (d 48) 84
# against 108, whose whole tensors already fit in cache. Blocks of 16 positions were slower than 32 for the first two.
_CPU_BLOCK = 32
_CPU_WHOLE_BYTES = 16 << 20


def _compute_dtype(u: Tensor) -> torch.dtype:
    """float64 stays float64 (for tests); everything else is computed in float32."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _prepare_delta(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool) -> Tensor:
    if delta_bias is not None:
        delta = delta + delta_bias[:, None]
    return F.softplus(delta) if delta_softplus else delta


def _finish(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """Add the skip term D u and apply the SiLU(z) gate; y, u, z: (b, d, l)."""
    if D is not None:
        y = y + D[:, None] * u
    if z is not None:
        y = y * F.silu(z)
    return y


def selective_scan_ref(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Plain sequential loop over positions: the reference the fast paths are tested against."""
    out_dtype = u.dtype
    dtype = _compute_dtype(u)
    u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
    D = None if D is None else D.to(dtype)
    z = None if z is None else z.to(dtype)
    delta_bias = None if delta_bias is None else delta_bias.to(dtype)
    delta = _prepare_delta(delta, delta_bias, delta_softplus)
    b, d, l = u.shape
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    g = B.shape[1]
    B = B.repeat_interleave(d // g, dim=1)  # (b, d, n, l)
    C = C.repeat_interleave(d // g, dim=1)
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for t in range(l):
        dt = delta[:, :, t, None]
        h = torch.exp(dt * A) * h + dt * B[..., t] * u[:, :, t, None]
        ys.append((h * C[..., t]).sum(-1))
    return _finish(torch.stack(ys, dim=-1), u, D, z).to(out_dtype)


def _scan_(a: Tensor, x: Tensor) -> None:
    """In place along dim 1: x_t <- h_t, where h_t = a_t h_{t-1} + x_t and h_{-1} = 0; clobbers a.

    Work-efficient (Blelloch-style) recursion on strided views, allocating nothing: fold each pair
    (2i, 2i+1) into its odd slot, scan the half-length sequence of odd slots (which then hold h at
    odd positions), then fill in the even positions from their odd left neighbours. Each level touches
    half the data of the one before, so the scan costs a few passes over (a, x) in about 3*log2(l)
    tensor ops. Only products of decays in [0, 1] are formed, so nothing can overflow.
    """
    length = a.shape[1]
    if length == 1:
        return
    m = length // 2
    a_even, a_odd = a[:, 0 : 2 * m : 2], a[:, 1 : 2 * m : 2]
    x_even, x_odd = x[:, 0 : 2 * m : 2], x[:, 1 : 2 * m : 2]
    x_odd.addcmul_(a_odd, x_even)
    a_odd.mul_(a_even)
    _scan_(a_odd, x_odd)
    x_even[:, 1:].addcmul_(a_even[:, 1:], x_odd[:, :-1])
    if length % 2:
        x[:, -1].addcmul_(a[:, -1], x[:, -2])


class _LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + x_t along dim 1, with the backward pass as a scan run backwards in time."""

    @staticmethod
    def forward(ctx, a: Tensor, x: Tensor) -> Tensor:
        h = x.clone()
        _scan_(a.clone(), h)
        ctx.save_for_backward(a, h)
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor) -> tuple[Tensor, Tensor]:
        a, h = ctx.saved_tensors
        # dL/dx_t = g_t = grad_h_t + a_{t+1} g_{t+1}, with g_{l-1} = grad_h_{l-1}.
        a_next = torch.zeros_like(a)
        a_next[:, :-1] = a[:, 1:]
        a_next = a_next.flip(1)
        grad_x = grad_h.flip(1)
        _scan_(a_next, grad_x)
        grad_x = grad_x.flip(1)
        grad_a = torch.zeros_like(a)
        torch.mul(grad_x[:, 1:], h[:, :-1], out=grad_a[:, 1:])
        return grad_a, grad_x


def _linear_scan(a: Tensor, x: Tensor) -> Tensor:
    """h_t = a_t h_{t-1} + x_t along dim 1; in place on a and x (which must be temporaries) without autograd."""
    if torch.is_grad_enabled() and (a.requires_grad or x.requires_grad):
        return _LinearScan.apply(a, x)
    _scan_(a, x)
    return x


def selective_scan_torch(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Vectorised selective scan in PyTorch (CPU or GPU), differentiable, same maths as the reference.

    Works in a (b, l, d, n) layout so every position is one contiguous (d, n) block, scans with
    `_linear_scan`, and contracts with C by a batched matmul. On the CPU without autograd, for tensors larger
    than _CPU_WHOLE_BYTES, it does so a block of _CPU_BLOCK positions at a time, the state carried from block to
    block, so that the (b, block, d, n) tensors stay in cache. Computes in float32 (float64 stays float64) with
    autocast off, and returns u's dtype.
    """
    out_dtype = u.dtype
    dtype = _compute_dtype(u)
    with torch.autocast(device_type=u.device.type, enabled=False):
        u, delta, A, B, C = (t.to(dtype) for t in (u, delta, A, B, C))
        delta = _prepare_delta(delta, None if delta_bias is None else delta_bias.to(dtype), delta_softplus)
        b, d, l = u.shape
        n = A.shape[1]
        if B.dim() == 3:
            B, C = B[:, None], C[:, None]
        g = B.shape[1]
        # Contiguous (b, l, d, 1) operands, so that the (b, l, d, n) results are laid out in that order.
        delta_t = delta.transpose(1, 2).contiguous().unsqueeze(-1)
        du = (delta_t * u.transpose(1, 2).contiguous().unsqueeze(-1)).view(b, l, g, d // g, 1)
        B_t, C_t = B.permute(0, 3, 1, 2).unsqueeze(3), C.permute(0, 3, 1, 2).unsqueeze(-1)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in (u, delta, A, B, C))
        blocked = u.device.type == "cpu" and not grad and b * l * d * n * u.element_size() > _CPU_WHOLE_BYTES
        step = _CPU_BLOCK if blocked else max(l, 1)
        ys, h_in = [], None
        for start in range(0, l, step):
            part = slice(start, start + step)
            decay = torch.mul(delta_t[:, part], A).exp_()  # in (0, 1]
            x = (du[:, part] * B_t[:, part]).view(b, -1, d, n)  # delta B u
            if h_in is not None:
                x[:, 0].addcmul_(decay[:, 0], h_in)
            h = _linear_scan(decay, x)
            h_in = h[:, -1]
            ys.append(torch.matmul(h.view(b, -1, g, d // g, n), C_t[:, part]))  # (b, block, g, d//g, 1)
        y = (ys[0] if len(ys) == 1 else torch.cat(ys, dim=1)).view(b, l, d).transpose(1, 2)  # one block: no copy
        y = _finish(y, u, None if D is None else D.to(dtype), None if z is None else z.to(dtype))
    return y.to(out_dtype)


def _selective_scan_cuda(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None,
    z: Tensor | None,
    delta_bias: Tensor | None,
    delta_softplus: bool,
) -> Tensor:
    """mamba-ssm's fused kernel: u/delta/B/C/z share u's dtype; A, D, delta_bias stay float32."""
    dtype = u.dtype
    return _mamba_selective_scan_fn(
        u.contiguous(),
        delta.to(dtype).contiguous(),
        A.float().contiguous(),
        B.to(dtype).contiguous(),
        C.to(dtype).contiguous(),
        None if D is None else D.float().contiguous(),
        None if z is None else z.to(dtype).contiguous(),
        None if delta_bias is None else delta_bias.float().contiguous(),
        delta_softplus,
    )


SCAN_BACKENDS = ("triton", "mamba-ssm", "torch")  # fastest first
_forced_backend: str | None = os.environ.get("MASKMAMBA_SCAN_BACKEND") or None


def available_scan_backends(device: torch.device | str) -> tuple[str, ...]:
    """The scan backends that can run on `device`, fastest first.

    "triton" (the project's fused kernel, `maskmamba.ops.triton_scan`) and "mamba-ssm" need CUDA; "triton"
    also runs on the CPU through Triton's interpreter when TRITON_INTERPRET=1, but only when forced.
    """
    cuda = torch.device(device).type == "cuda"
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    names = [
        name
        for name, ok in (("triton", TRITON_AVAILABLE and (cuda or interpreted)), ("mamba-ssm", MAMBA_SSM_AVAILABLE and cuda))
        if ok
    ]
    return (*names, "torch")


def scan_backend(device: torch.device | str) -> str:
    """The scan backend that the Mamba mixers use on `device`: the forced one (`use_scan_backend`, or the
    MASKMAMBA_SCAN_BACKEND environment variable), else the fastest available, the CPU interpreter aside."""
    available = available_scan_backends(device)
    if _forced_backend is not None:
        if _forced_backend not in available:
            raise RuntimeError(f"scan backend {_forced_backend!r} is forced but not available on {device}: {available}")
        return _forced_backend
    return next(b for b in available if b != "triton" or torch.device(device).type == "cuda")


@contextmanager
def use_scan_backend(name: str | None) -> Iterator[None]:
    """Force a scan backend (one of SCAN_BACKENDS; None: automatic) inside the block, e.g. for benchmarks."""
    global _forced_backend
    if name is not None and name not in SCAN_BACKENDS:
        raise ValueError(f"unknown scan backend {name!r}; choose from {SCAN_BACKENDS}")
    previous, _forced_backend = _forced_backend, name
    try:
        yield
    finally:
        _forced_backend = previous


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
) -> Tensor:
    """Selective scan on mamba-ssm's kernel when it is available on u's device and not overridden by a forced
    "torch" backend (the project's fused kernel has its own interface); else `selective_scan_torch`.

    The mamba-ssm kernel takes float32/float16/bfloat16 u; float64 (tests) goes to the torch path.
    """
    if "mamba-ssm" in available_scan_backends(u.device) and scan_backend(u.device) != "torch" and u.dtype in _CUDA_KERNEL_DTYPES:
        return _selective_scan_cuda(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    return selective_scan_torch(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
