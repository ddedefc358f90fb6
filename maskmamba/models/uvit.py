"""aMUSEd-style U-ViT: ConvNeXt blocks at the token grid around a Transformer stack at half resolution, with
the condition entering through cross-attention instead of sitting in the sequence."""
from __future__ import annotations

import torch
from torch import nn

from maskmamba.modules import Block, CrossAttention, Mlp, SelfAttention, count_params, dropout_layer, fit_width

from .conditioning import Condition
from .generator import Generator, GeneratorConfig


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> MLP (-> dropout), residual; on (B, D, H, W) maps."""

    def __init__(self, width: int, dropout: float = 0.0):
        super().__init__()
        self.dwconv = nn.Conv2d(width, width, 7, padding=3, groups=width)
        self.norm = nn.LayerNorm(width)
        self.mlp = Mlp(width, 4 * width)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        return x + self.drop(self.mlp(self.norm(y))).permute(0, 3, 1, 2)


class CrossBlock(nn.Module):
    """Self-attention, cross-attention to the condition tokens, MLP; each pre-norm and residual (with dropout)."""

    def __init__(self, width: int, heads: int, mlp_hidden: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), SelfAttention(width, heads)
        self.norm2, self.xattn = nn.LayerNorm(width), CrossAttention(width, heads)
        self.norm3, self.mlp = nn.LayerNorm(width), Mlp(width, mlp_hidden)
        self.drop = dropout_layer(dropout)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        x = x + self.drop(self.xattn(self.norm2(x), context))
        return x + self.drop(self.mlp(self.norm3(x)))


class UViTGenerator(Generator):
    """Token grid -> ConvNeXt -> 2x down -> `depth // 2` cross-attention layers -> 2x up (+ skip) -> ConvNeXt -> logits.

    The stack's MLP width is fitted so the whole backbone has the parameters of `depth` Transformer layers.
    """

    backbone = "uvit"

    def build_backbone(self, config: GeneratorConfig) -> None:
        width, grid = config.width, config.grid
        drop = config.dropout
        self.stem = ConvNeXtBlock(width, drop)
        self.down = nn.Conv2d(width, width, 2, stride=2)
        self.inner_pos = nn.Parameter(torch.randn((grid // 2) ** 2, width) * 0.02)
        self.inner_pos._no_weight_decay = True  # a position table (see maskmamba.train.optim)
        hidden = _fit_stack_mlp(width, config.depth, config.heads, grid)
        self.stack = nn.ModuleList(CrossBlock(width, config.heads, hidden, drop) for _ in range(max(1, config.depth // 2)))
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.tail = ConvNeXtBlock(width, drop)

    def forward(self, tokens: torch.Tensor, cond: Condition) -> torch.Tensor:
        b, g = tokens.shape[0], self.grid
        x = self.embed(tokens).view(b, g, g, -1)
        skip = self.stem(x.permute(0, 3, 1, 2))
        h = self.down(skip).flatten(2).transpose(1, 2) + self.inner_pos
        context = self.cond(cond)
        for block in self.stack:
            h = block(h, context)
        h = self.up(h.transpose(1, 2).reshape(b, -1, g // 2, g // 2)) + skip
        return self.logits(self.tail(h).flatten(2).transpose(1, 2))


def _fit_stack_mlp(width: int, depth: int, heads: int, grid: int) -> int:
    """MLP width of the stack that gives the backbone the parameters of `depth` Transformer layers."""
    with torch.device("meta"):
        target = depth * count_params(Block(SelfAttention(width, heads), width, 4 * width))
        convs = 2 * count_params(ConvNeXtBlock(width)) + count_params(nn.Conv2d(width, width, 2))
        convs += count_params(nn.ConvTranspose2d(width, width, 2)) + (grid // 2) ** 2 * width
    layers = max(1, depth // 2)
    return fit_width(lambda h: nn.ModuleList(CrossBlock(width, heads, h) for _ in range(layers)), target - convs)
