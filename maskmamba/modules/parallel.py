"""Grouped-parallel hybrid mixer: channels split into groups that go to Bi-Mamba-v2 or attention, then merged."""
from __future__ import annotations

import torch
from torch import nn

from .layout import SeqLayout


class ParallelMixer(nn.Module):
    """Splits (B, L, D) into len(branches) channel groups, runs branch i on group i, concatenates, projects."""

    def __init__(self, width: int, branches: list[nn.Module]):
        super().__init__()
        if width % len(branches):
            raise ValueError(f"width {width} does not split into {len(branches)} groups")
        self.branches = nn.ModuleList(branches)
        self.merge = nn.Linear(width, width)  # mixes the groups' outputs

    def forward(self, x: torch.Tensor, layout: SeqLayout | None = None) -> torch.Tensor:
        groups = x.chunk(len(self.branches), dim=-1)
        return self.merge(torch.cat([branch(g, layout) for branch, g in zip(self.branches, groups)], dim=-1))
