"""Multi-head attention kernel: flash-attn when it imports and fits, else PyTorch SDPA, through the backend that
`use_sdpa_backend` names (the benchmarks measure each at PROBE_TOKENS and name the fastest; or the
MASKMAMBA_SDPA_BACKEND environment variable), else through PyTorch's own choice."""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

try:
    from flash_attn import flash_attn_func as _flash_attn_func

    FLASH_ATTN_AVAILABLE = True
except Exception:  # ImportError, or a failing compiled extension
    _flash_attn_func = None
    FLASH_ATTN_AVAILABLE = False

_FLASH_DTYPES = (torch.float16, torch.bfloat16)
SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}
PROBE_TOKENS = (4096, 16384, 65536)  # sequence lengths at which the SDPA backends are compared
_sdpa_backend: str | None = None


def use_sdpa_backend(name: str | None) -> None:
    """Run SDPA through one backend from now on (a key of SDPA_BACKENDS), or None for PyTorch's own choice."""
    global _sdpa_backend
    if name is not None and name not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {name!r}; choose from {', '.join(SDPA_BACKENDS)}")
    _sdpa_backend = name


def fastest_sdpa(timings: dict[str, dict[int, float | None]]) -> str | None:
    """The backend with the least total time over every measured length ({backend: {tokens: ms, or None where
    it could not run}}); None when no backend ran them all."""
    complete = {name: sum(ms.values()) for name, ms in timings.items() if ms and None not in ms.values()}
    return min(complete, key=complete.get) if complete else None


use_sdpa_backend(os.environ.get("MASKMAMBA_SDPA_BACKEND") or None)


def _use_flash(q: Tensor, k: Tensor, v: Tensor) -> bool:
    return (
        FLASH_ATTN_AVAILABLE
        and q.is_cuda
        and q.dtype in _FLASH_DTYPES
        and k.dtype == q.dtype
        and v.dtype == q.dtype
    )


def attention_backend(device: torch.device | str) -> str:
    """Name of the kernel `attention` uses for half-precision tensors on `device`."""
    if FLASH_ATTN_AVAILABLE and torch.device(device).type == "cuda":
        return "flash-attn"
    return f"sdpa ({_sdpa_backend})" if _sdpa_backend else "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Non-causal, unmasked attention; q: (b, heads, lq, dh), k and v: (b, heads, lk, dh) -> (b, heads, lq, dh)."""
    if _use_flash(q, k, v):
        out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    if _sdpa_backend is None:
        return F.scaled_dot_product_attention(q, k, v)
    with sdpa_kernel(SDPA_BACKENDS[_sdpa_backend]):
        return F.scaled_dot_product_attention(q, k, v)


def attention_ref(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(dh)) v in float32 (float64 stays float64), returned in q's dtype."""
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    qf, kf, vf = q.to(dtype), k.to(dtype), v.to(dtype)
    scores = qf @ kf.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return (scores.softmax(dim=-1) @ vf).to(q.dtype)
