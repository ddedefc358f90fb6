"""Self- and cross-attention mixers over (B, L, D) sequences; the kernel choice lives in maskmamba.ops."""
from __future__ import annotations

import torch
from torch import nn

from maskmamba.ops import attention

from .layout import SeqLayout


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, l, d = x.shape
    return x.view(b, l, n, d // n).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, l, dh = x.shape
    return x.transpose(1, 2).reshape(b, l, h * dh)


class SelfAttention(nn.Module):
    """Bidirectional multi-head self-attention (no mask: masked image tokens see every token)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, layout: SeqLayout | None = None) -> torch.Tensor:
        q, k, v = (_heads(t, self.heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.proj(_merge(attention(q, k, v)))


class CrossAttention(nn.Module):
    """Queries from the image tokens, keys and values from the condition tokens (U-ViT)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(width, 2 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = (_heads(t, self.heads) for t in self.kv(context).chunk(2, dim=-1))
        return self.proj(_merge(attention(_heads(self.q(x), self.heads), k, v)))
