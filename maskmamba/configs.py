"""Named sizes and the variant registry: which mixer each layer of each variant uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

COND_POSITIONS = ("head", "middle", "tail")


@dataclass(frozen=True)
class Size:
    """Backbone shape shared by every variant at one size."""

    width: int
    depth: int
    heads: int
    d_state: int = 16


SIZES: dict[str, Size] = {
    "tiny": Size(width=64, depth=4, heads=2, d_state=8),  # CPU tests
    "small": Size(width=192, depth=8, heads=6),  # 4.1M parameters: what the demo shipped on data v1
    "mid": Size(width=256, depth=10, heads=4),  # 8.6M (9.4M with tokenizer-v2's vocabulary): the compare pair ships it
    "medium": Size(width=320, depth=10, heads=5),  # 13.2M (head width 64)
    "base": Size(width=512, depth=12, heads=8),  # 39M
    "xl": Size(width=1024, depth=24, heads=16),  # speed benchmarks
}


@dataclass(frozen=True)
class Variant:
    """A registry entry: a one-line description and, for in-context variants, the mixer kind of each of `depth`
    layers (U-ViT builds its own conv and cross-attention stack)."""

    description: str
    layers: Callable[[int], list[str]] | None = None
    backbone: str = "in-context"  # "in-context": condition tokens in the sequence; "uvit": cross-attention


def _serial_half(depth: int) -> list[str]:
    return ["bimamba_v2"] * (depth // 2) + ["attn"] * (depth - depth // 2)


def _interleave(depth: int) -> list[str]:
    return [("bimamba_v2", "attn")[i % 2] for i in range(depth)]


VARIANTS: dict[str, Variant] = {
    "maskmamba-serial-half": Variant("first half Bi-Mamba-v2, second half Transformer (the paper's choice)", _serial_half),
    "maskmamba-serial-interleave": Variant("Bi-Mamba-v2 and Transformer layers alternating", _interleave),
    "maskmamba-parallel-2": Variant("channels in 2 groups per layer: Bi-Mamba-v2 | attention", lambda d: ["parallel2"] * d),
    "maskmamba-parallel-4": Variant("channels in 4 groups per layer: Bi-Mamba-v2, attention, ...", lambda d: ["parallel4"] * d),
    "transformer": Variant("MaskGIT-style bidirectional Transformer", lambda d: ["attn"] * d),
    "bimamba-v2": Variant("every layer Bi-Mamba-v2 (non-causal convs, concatenation)", lambda d: ["bimamba_v2"] * d),
    "bimamba-vim": Variant("every layer Vision Mamba's Bi-Mamba (causal convs, SiLU gates)", lambda d: ["bimamba_vim"] * d),
    "mmamba": Variant("four-direction Mamba scans, text tokens in front of each (MUSE with Mamba)", lambda d: ["mmamba"] * d),
    "uvit": Variant("aMUSEd-style U-ViT: conv blocks around a Transformer with cross-attention", backbone="uvit"),
}


def check_variant(name: str) -> Variant:
    """Return the registry entry, or raise a ValueError that lists the valid names."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def check_size(name: str) -> Size:
    """Return the named size, or raise a ValueError that lists the valid names."""
    if name not in SIZES:
        raise ValueError(f"unknown size {name!r}; choose one of: {', '.join(SIZES)}")
    return SIZES[name]
