"""One backbone layer (pre-norm mixer + pre-norm MLP) and the width choices that match parameter counts.

Every variant's layer is held to the parameter count of a Transformer layer of the same width:
  - a Mamba mixer's scan width E is the one that gives it the parameters of self-attention of that width
    (for Bi-Mamba-v2 at width 192 that is E = 136: its out-projection reads 3E channels, see bimamba.py);
  - the MLP's hidden width then takes up whatever the mixer leaves of the Transformer layer's count (4 x width
    for attention and the Mamba mixers; wider for the grouped-parallel mixers, whose branches are narrow).
Parameter counts are linear in these widths, so `fit_width` solves for them from two meta-device builds.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .attention import SelfAttention
from .bimamba import BiMambaV2, BiMambaVim
from .layout import SeqLayout
from .mlp import Mlp
from .mmamba import MMamba
from .parallel import ParallelMixer


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def fit_width(make: Callable[[int], nn.Module], target: int, multiple: int = 8) -> int:
    """The width w (a multiple of `multiple`, at least that) whose module `make(w)` has about `target` params."""
    with torch.device("meta"):
        p1, p2 = count_params(make(multiple)), count_params(make(2 * multiple))
    per_width = (p2 - p1) / multiple
    width = (target - (p1 - per_width * multiple)) / per_width
    return max(multiple, int(round(width / multiple)) * multiple)


_MAMBA = {"bimamba_v2": BiMambaV2, "bimamba_vim": BiMambaVim, "mmamba": MMamba}


def _mamba(kind: str, width: int, heads: int, d_state: int) -> nn.Module:
    cls = _MAMBA[kind]
    with torch.device("meta"):
        target = count_params(SelfAttention(width, heads))
    return cls(width, fit_width(lambda e: cls(width, e, d_state), target), d_state)


def _parallel(groups: int, width: int, heads: int, d_state: int) -> ParallelMixer:
    part, part_heads = width // groups, max(1, heads // groups)
    branches = [
        _mamba("bimamba_v2", part, part_heads, d_state) if i % 2 == 0 else SelfAttention(part, part_heads)
        for i in range(groups)
    ]
    return ParallelMixer(width, branches)


def make_mixer(kind: str, width: int, heads: int, d_state: int) -> nn.Module:
    """Build the token mixer named `kind` (a layer name from maskmamba.configs.VARIANTS)."""
    if kind == "attn":
        return SelfAttention(width, heads)
    if kind in _MAMBA:
        return _mamba(kind, width, heads, d_state)
    if kind in ("parallel2", "parallel4"):
        return _parallel(int(kind[-1]), width, heads, d_state)
    raise ValueError(f"unknown mixer kind {kind!r}")


def dropout_layer(p: float) -> nn.Module:
    """Dropout with probability p, or the identity at p = 0 (no kernel launched; no parameters either way)."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return nn.Dropout(p) if p > 0 else nn.Identity()


class Block(nn.Module):
    """x + drop(mixer(norm(x))), then x + drop(mlp(norm(x))): residual dropout on each branch (GPT-2's)."""

    def __init__(self, mixer: nn.Module, width: int, mlp_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.mixer = nn.LayerNorm(width), mixer
        self.norm2, self.mlp = nn.LayerNorm(width), Mlp(width, mlp_hidden)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor, layout: SeqLayout) -> torch.Tensor:
        x = x + self.drop(self.mixer(self.norm1(x), layout))
        return x + self.drop(self.mlp(self.norm2(x)))


def make_block(kind: str, width: int, heads: int, d_state: int, dropout: float = 0.0) -> Block:
    """A layer whose parameter count matches a Transformer layer of the same width (see the module docstring)."""
    with torch.device("meta"):
        target = count_params(Block(SelfAttention(width, heads), width, 4 * width))
        mixer_params = count_params(make_mixer(kind, width, heads, d_state))
    mlp_hidden = fit_width(lambda h: Mlp(width, h), target - mixer_params - 4 * width)
    return Block(make_mixer(kind, width, heads, d_state), width, mlp_hidden, dropout)
