"""aMUSEd-style U-ViT: ConvNeXt blocks at the token grid around a Transformer stack at half resolution, with
the condition entering through cross-attention instead of sitting in the sequence."""
from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from maskmamba.configs import check_variant
from maskmamba.modules import Block, CrossAttention, Mlp, SelfAttention, count_params, fit_width
from maskmamba.text_encoder import PROMPT_TOKENS, TEXT_DIM

from .conditioning import Condition, ConditionEncoder
from .generator import _init_linear


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv -> LayerNorm -> MLP, residual; on (B, D, H, W) maps."""

    def __init__(self, width: int):
        super().__init__()
        self.dwconv = nn.Conv2d(width, width, 7, padding=3, groups=width)
        self.norm = nn.LayerNorm(width)
        self.mlp = Mlp(width, 4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        return x + self.mlp(self.norm(y)).permute(0, 3, 1, 2)


class CrossBlock(nn.Module):
    """Self-attention, cross-attention to the condition tokens, MLP; each pre-norm and residual."""

    def __init__(self, width: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(width), SelfAttention(width, heads)
        self.norm2, self.xattn = nn.LayerNorm(width), CrossAttention(width, heads)
        self.norm3, self.mlp = nn.LayerNorm(width), Mlp(width, mlp_hidden)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        x = x + self.xattn(self.norm2(x), context)
        return x + self.mlp(self.norm3(x))


class UViTGenerator(nn.Module, PyTorchModelHubMixin, library_name="maskmamba"):
    """Token grid -> ConvNeXt -> 2x down -> `depth // 2` cross-attention layers -> 2x up (+ skip) -> ConvNeXt -> logits.

    The stack's MLP width is fitted so the whole backbone has the parameters of `depth` Transformer layers.
    """

    def __init__(
        self,
        variant: str,
        width: int,
        depth: int,
        heads: int,
        num_classes: int,
        d_state: int = 16,
        codebook_size: int = 1000,
        grid: int = 16,
        cond_slots: int = PROMPT_TOKENS,
        text_dim: int = TEXT_DIM,
        cond_position: str = "middle",
        size: str = "custom",
    ):
        super().__init__()
        if check_variant(variant).backbone != "uvit":
            raise ValueError(f"{variant} is not a U-ViT variant")
        self.variant, self.size, self.codebook_size, self.grid = variant, size, codebook_size, grid
        self.mask_id = codebook_size
        self.tok_emb = nn.Embedding(codebook_size + 1, width)
        self.row_pos = nn.Parameter(torch.randn(grid, 1, width) * 0.02)
        self.col_pos = nn.Parameter(torch.randn(1, grid, width) * 0.02)
        self.cond = ConditionEncoder(width, num_classes, cond_slots, text_dim)
        self.stem = ConvNeXtBlock(width)
        self.down = nn.Conv2d(width, width, 2, stride=2)
        self.inner_pos = nn.Parameter(torch.randn((grid // 2) ** 2, width) * 0.02)
        hidden = _fit_stack_mlp(width, depth, heads, grid)
        self.stack = nn.ModuleList(CrossBlock(width, heads, hidden) for _ in range(max(1, depth // 2)))
        self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
        self.tail = ConvNeXtBlock(width)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)
        self.apply(_init_linear)

    def forward(self, tokens: torch.Tensor, cond: Condition) -> torch.Tensor:
        """tokens (B, grid*grid) int64 -> logits (B, grid*grid, codebook_size)."""
        b, g = tokens.shape[0], self.grid
        x = self.tok_emb(tokens).view(b, g, g, -1) + self.row_pos + self.col_pos
        skip = self.stem(x.permute(0, 3, 1, 2))
        h = self.down(skip).flatten(2).transpose(1, 2) + self.inner_pos
        context = self.cond(cond)
        for block in self.stack:
            h = block(h, context)
        h = self.up(h.transpose(1, 2).reshape(b, -1, g // 2, g // 2)) + skip
        return self.head(self.norm(self.tail(h).flatten(2).transpose(1, 2)))


def _fit_stack_mlp(width: int, depth: int, heads: int, grid: int) -> int:
    """MLP width of the stack that gives the backbone the parameters of `depth` Transformer layers."""
    with torch.device("meta"):
        target = depth * count_params(Block(SelfAttention(width, heads), width, 4 * width))
        convs = 2 * count_params(ConvNeXtBlock(width)) + count_params(nn.Conv2d(width, width, 2))
        convs += count_params(nn.ConvTranspose2d(width, width, 2)) + (grid // 2) ** 2 * width
    layers = max(1, depth // 2)
    return fit_width(lambda h: nn.ModuleList(CrossBlock(width, heads, h) for _ in range(layers)), target - convs)
