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


class BiMambaV2(nn.Module):
    """The paper's Bi-Mamba-v2. `inner` is the scan width E (see maskmamba.modules.block for how it is chosen)."""

    def __init__(self, width: int, inner: int, d_state: int = 16):
        super().__init__()
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)  # scan input x and gate branch z
        self.scan = MultiScan(inner, 2, d_state, d_conv=3, causal=False)  # (1) standard convolutions
        self.out_proj = nn.Linear(3 * inner, width, bias=False)  # (2) concat [forward, backward, gate]

    def forward(self, x: torch.Tensor, layout: SeqLayout | None = None) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        # [forward, backward, silu(z)] in one buffer; the backward scan reads xs from the end, in place
        return self.out_proj(self.scan.scan(xs, reverse_odd=True, gate=z))  # (2) no multiplicative gate


class BiMambaVim(nn.Module):
    """Vision Mamba's Bi-Mamba: causal convs, each direction gated by SiLU(z), averaged, projected."""

    def __init__(self, width: int, inner: int, d_state: int = 16):
        super().__init__()
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)
        self.scan = MultiScan(inner, 2, d_state, d_conv=4, causal=True)
        self.out_proj = nn.Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor, layout: SeqLayout | None = None) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        forward, backward = self.scan.scan(xs, reverse_odd=True).view(*xs.shape[:2], 2, -1).unbind(2)
        gate = F.silu(z)
        return self.out_proj((forward * gate + backward * gate) / 2)
