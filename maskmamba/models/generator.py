"""The generator's shape (`GeneratorConfig`), the base every generator shares, and the in-context generator.

tokens (B, N) with masked positions set to `mask_id`  ->  embeddings + 2-D positions
condition -> K condition tokens, placed at the head, middle or tail of the sequence
backbone of `depth` layers (mixer kinds from the variant registry)  ->  norm  ->  logits over the codebook.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from maskmamba.checksums import RecordsChecksums
from maskmamba.configs import COND_POSITIONS, check_size, check_variant
from maskmamba.modules import SeqLayout, dropout_layer, make_block
from maskmamba.text_encoder import PROMPT_TOKENS, TEXT_DIM

from .conditioning import Condition, ConditionEncoder


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything that fixes a generator's shape; saved as its config.json.

    `dropout` (residual branches and embeddings, training only) is a recipe knob stored with the shape so a
    resumed run keeps it; at 0 the model is exactly the one without it. `cond_position` and `d_state` belong to in-context variants only (U-ViT's condition enters by
    cross-attention and it has no SSM): left None they default to "middle" and 16 there, and must stay None
    for U-ViT.
    """

    variant: str
    width: int
    depth: int
    heads: int
    num_classes: int
    size: str = "custom"
    codebook_size: int = 1000  # image-token vocabulary; the mask token is one more id
    grid: int = 16  # tokens per image edge
    cond_slots: int = PROMPT_TOKENS
    text_dim: int = TEXT_DIM
    cond_position: str | None = None
    d_state: int | None = None
    dropout: float = 0.0
    prompt_pool: bool = False  # a prompt's first condition slot holds the mean of its states (ConditionEncoder)

    def __post_init__(self) -> None:
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if check_variant(self.variant).backbone == "uvit":
            if self.cond_position is not None or self.d_state is not None:
                raise ValueError("U-ViT takes no cond_position or d_state: its condition enters by cross-attention")
            return
        object.__setattr__(self, "cond_position", self.cond_position or "middle")
        object.__setattr__(self, "d_state", self.d_state or 16)
        if self.cond_position not in COND_POSITIONS:
            raise ValueError(f"cond_position must be one of {', '.join(COND_POSITIONS)}, got {self.cond_position!r}")

    @classmethod
    def named(cls, variant: str, size: str = "tiny", num_classes: int = 100, **overrides) -> GeneratorConfig:
        """A registry variant at a named size (maskmamba.configs.SIZES), with any field overridden."""
        s = check_size(size)
        shape = dict(width=s.width, depth=s.depth, heads=s.heads, size=size)
        if check_variant(variant).backbone == "in-context":
            shape["d_state"] = s.d_state
        return cls(variant=variant, num_classes=num_classes, **(shape | overrides))

    @classmethod
    def from_dict(cls, data: dict) -> GeneratorConfig:
        """From a config.json's contents; keys that are not fields (such as `default_cfg`) are left out."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def to_dict(self) -> dict:
        return asdict(self)


class Generator(nn.Module, RecordsChecksums, PyTorchModelHubMixin, library_name="maskmamba"):
    """What every generator shares: its config, the token embedding (plus the mask token), 2-D positions, the
    condition encoder, and the final norm and codebook head around a backbone that `build_backbone` adds.

    `forward(tokens (B, grid*grid) int64, cond) -> logits (B, grid*grid, codebook_size)`.
    """

    backbone: ClassVar[str]  # the registry's backbone kind this class builds

    def __init__(self, config: GeneratorConfig | dict):
        super().__init__()
        if isinstance(config, dict):  # a config.json's contents (what `from_pretrained` passes)
            config = GeneratorConfig.from_dict(config)
        if check_variant(config.variant).backbone != self.backbone:
            raise ValueError(f"{config.variant} is not a {self.backbone} variant")
        self.config = config
        self.variant, self.size, self.grid = config.variant, config.size, config.grid
        self.codebook_size = config.codebook_size
        self.mask_id = config.codebook_size
        width = config.width
        self.tok_emb = nn.Embedding(config.codebook_size + 1, width)
        self.row_pos = nn.Parameter(torch.randn(config.grid, 1, width) * 0.02)
        self.col_pos = nn.Parameter(torch.randn(1, config.grid, width) * 0.02)
        self.row_pos._no_weight_decay = self.col_pos._no_weight_decay = True  # tables, not matrices (see train.optim)
        self.emb_drop = dropout_layer(config.dropout)
        self.cond = ConditionEncoder(width, config.num_classes, config.cond_slots, config.text_dim, config.prompt_pool)
        self.build_backbone(config)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, config.codebook_size)
        self.apply(_init_linear)

    def build_backbone(self, config: GeneratorConfig) -> None:
        """Add the layers between the embeddings and the head."""
        raise NotImplementedError

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, grid*grid) ids -> (B, grid*grid, width) token embeddings plus 2-D positions."""
        return self.emb_drop(self.tok_emb(tokens) + (self.row_pos + self.col_pos).flatten(0, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, grid*grid, width) features -> (B, grid*grid, codebook_size) logits."""
        return self.head(self.norm(x))


class MaskedGenerator(Generator):
    """MaskGIT-style bidirectional generator with in-context class/prompt conditioning: every variant but U-ViT."""

    backbone = "in-context"

    def build_backbone(self, config: GeneratorConfig) -> None:
        self.layout = SeqLayout(config.grid, config.cond_slots, config.cond_position)
        kinds = check_variant(config.variant).layers(config.depth)
        self.blocks = nn.ModuleList(
            make_block(kind, config.width, config.heads, config.d_state, config.dropout) for kind in kinds
        )

    def forward(self, tokens: torch.Tensor, cond: Condition) -> torch.Tensor:
        x = self.layout.assemble(self.embed(tokens), self.cond(cond))
        for block in self.blocks:
            x = block(x, self.layout)
        return self.logits(self.layout.image_part(x))


def _init_linear(module: nn.Module) -> None:
    """Truncated-normal weights and zero biases for linear and embedding layers (ViT/MaskGIT practice)."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
