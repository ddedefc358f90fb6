"""M-Mamba: four scans over the image grid (rows, rows reversed, columns, columns reversed), each with the
condition tokens in front, merged by averaging (MUSE with its Transformer blocks swapped for Mamba)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layout import SeqLayout
from .ssm import MultiScan


class MMamba(nn.Module):
    """Four-direction Mamba mixer; every output position averages the four scans that passed it."""

    def __init__(self, width: int, inner: int, d_state: int = 16):
        super().__init__()
        self.in_proj = nn.Linear(width, 2 * inner, bias=False)
        self.scan = MultiScan(inner, 4, d_state, d_conv=4, causal=True)
        self.out_proj = nn.Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor, layout: SeqLayout) -> torch.Tensor:
        xs, z = self.in_proj(x).chunk(2, dim=-1)
        index = layout.scan_index  # (4, L): each direction's order of sequence positions, condition first
        b, length, e = xs.shape
        y = self.scan.scan(xs[:, index.T], reverse_odd=False).view(b, length, 4, e).transpose(1, 2)  # (B, 4, L, E)
        merged = torch.zeros_like(xs).index_add_(1, index.flatten(), y.flatten(1, 2)) / index.shape[0]
        return self.out_proj(merged * F.silu(z))
