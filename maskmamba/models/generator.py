"""The in-context masked-token generator: every variant but U-ViT.

tokens (B, N) with masked positions set to `mask_id`  ->  embeddings + 2-D positions
condition -> K condition tokens, placed at the head, middle or tail of the sequence
backbone of `depth` layers (mixer kinds from the variant registry)  ->  norm  ->  logits over the codebook.
"""
from __future__ import annotations

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from maskmamba.configs import check_variant
from maskmamba.modules import SeqLayout, make_block
from maskmamba.text_encoder import PROMPT_TOKENS, TEXT_DIM

from .conditioning import Condition, ConditionEncoder


class MaskedGenerator(nn.Module, PyTorchModelHubMixin, library_name="maskmamba"):
    """MaskGIT-style bidirectional generator with in-context class/prompt conditioning."""

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
        spec = check_variant(variant)
        if spec.backbone != "in-context":
            raise ValueError(f"{variant} is not an in-context variant")
        self.variant, self.size, self.codebook_size, self.grid = variant, size, codebook_size, grid
        self.mask_id = codebook_size
        self.tok_emb = nn.Embedding(codebook_size + 1, width)
        self.row_pos = nn.Parameter(torch.randn(grid, 1, width) * 0.02)
        self.col_pos = nn.Parameter(torch.randn(1, grid, width) * 0.02)
        self.cond = ConditionEncoder(width, num_classes, cond_slots, text_dim)
        self.layout = SeqLayout(grid, cond_slots, cond_position)
        self.blocks = nn.ModuleList(make_block(kind, width, heads, d_state) for kind in spec.layers(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, codebook_size)
        self.apply(_init_linear)

    def forward(self, tokens: torch.Tensor, cond: Condition) -> torch.Tensor:
        """tokens (B, grid*grid) int64 -> logits (B, grid*grid, codebook_size)."""
        pos = (self.row_pos + self.col_pos).flatten(0, 1)
        x = self.layout.assemble(self.tok_emb(tokens) + pos, self.cond(cond))
        for block in self.blocks:
            x = block(x, self.layout)
        return self.head(self.norm(self.layout.image_part(x)))


def _init_linear(module: nn.Module) -> None:
    """Truncated-normal weights and zero biases for linear and embedding layers (ViT/MaskGIT practice)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
