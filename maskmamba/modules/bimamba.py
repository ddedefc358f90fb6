"""Bidirectional Mamba mixers: the paper's Bi-Mamba-v2 and Vision Mamba's Bi-Mamba, side by side.

The paper changes Vision Mamba's block in two places, marked (1) and (2) below:
  (1) the depthwise convolutions are standard (centred, non-causal) instead of causal;
  (2) the forward scan, the backward scan and the gate branch are CONCATENATED and projected, instead of each
      scan output being multiplied by SiLU(z) and the products summed.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import SeqLayout
from .ssm import MultiScan


def _both_ways(scan: MultiScan, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scan x forward and reversed in one grouped call; return both outputs in forward order."""
    y = scan(torch.stack([x, x.flip(1)], dim=1))
    return y[:, 0], y[:, 1].flip(1)


class BiMambaV2(nn.Module):
    """The paper's Bi-Mamba-v2. `inner` is the scan width E (see maskmamba.modules.block for how it is chosen)."""

    def __init__(self, width: int, inner: int, d_state: int = 16):
        super().__init__()
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)  # scan input x and gate branch z
        self.scan = MultiScan(inner, 2, d_state, d_conv=3, causal=False)  # (1) standard convolutions
        self.out_proj = nn.Linear(3 * inner, width, bias=False)  # (2) concat [forward, backward, gate]

    def forward(self, x: torch.Tensor, layout: SeqLayout | None = None) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        forward, backward = _both_ways(self.scan, xs)
        return self.out_proj(torch.cat([forward, backward, F.silu(z)], dim=-1))  # (2) no multiplicative gate


class BiMambaVim(nn.Module):
    """Vision Mamba's Bi-Mamba: causal convs, each direction gated by SiLU(z), averaged, projected."""

    def __init__(self, width: int, inner: int, d_state: int = 16):
        super().__init__()
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)
        self.scan = MultiScan(inner, 2, d_state, d_conv=4, causal=True)
        self.out_proj = nn.Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor, layout: SeqLayout | None = None) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        forward, backward = _both_ways(self.scan, xs)
        gate = F.silu(z)
        return self.out_proj((forward * gate + backward * gate) / 2)
