"""Generators (in-context and U-ViT), their conditioning, and the registry-driven constructors."""
from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from maskmamba.configs import check_size, check_variant

from .conditioning import Condition, ConditionEncoder
from .generator import MaskedGenerator
from .quantize import INT8_FILE, load_int8, save_int8
from .uvit import UViTGenerator

Generator = MaskedGenerator | UViTGenerator


def generator_class(variant: str) -> type[MaskedGenerator] | type[UViTGenerator]:
    return UViTGenerator if check_variant(variant).backbone == "uvit" else MaskedGenerator


def build_model(variant: str, size: str = "tiny", num_classes: int = 100, **overrides) -> nn.Module:
    """A freshly initialised generator of a registry variant at a named size (see maskmamba.configs.SIZES)."""
    s = check_size(size)
    config = dict(width=s.width, depth=s.depth, heads=s.heads, d_state=s.d_state, size=size) | overrides
    return generator_class(variant)(variant=variant, num_classes=num_classes, **config)


def load_generator(folder: str | Path) -> nn.Module:
    """Load a generator from a local folder: config.json + model.safetensors (save_pretrained) or int8 weights."""
    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no generator in {folder}: config.json is missing")
    cls = generator_class(json.loads(config_file.read_text())["variant"])
    return load_int8(cls, folder) if (folder / INT8_FILE).is_file() else cls.from_pretrained(folder)


__all__ = [
    "Condition", "ConditionEncoder", "Generator", "MaskedGenerator", "UViTGenerator", "build_model",
    "generator_class", "load_generator", "save_int8",
]
