"""Multi-head attention kernel: flash-attn when it imports and fits, else PyTorch SDPA."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

try:
    from flash_attn import flash_attn_func as _flash_attn_func

    FLASH_ATTN_AVAILABLE = True
except Exception:  # ImportError, or a failing compiled extension
    _flash_attn_func = None
    FLASH_ATTN_AVAILABLE = False

_FLASH_DTYPES = (torch.float16, torch.bfloat16)


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
    return "flash-attn" if FLASH_ATTN_AVAILABLE and torch.device(device).type == "cuda" else "sdpa"


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Non-causal, unmasked attention; q: (b, heads, lq, dh), k and v: (b, heads, lk, dh) -> (b, heads, lq, dh)."""
    if _use_flash(q, k, v):
        out = _flash_attn_func(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return out.transpose(1, 2)
    return F.scaled_dot_product_attention(q, k, v)


def attention_ref(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """softmax(q k^T / sqrt(dh)) v in float32 (float64 stays float64), returned in q's dtype."""
    dtype = torch.float64 if q.dtype == torch.float64 else torch.float32
    qf, kf, vf = q.to(dtype), k.to(dtype), v.to(dtype)
    scores = qf @ kf.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return (scores.softmax(dim=-1) @ vf).to(q.dtype)
