"""Generators (in-context and U-ViT) on one base and one config, their conditioning, and the constructors."""
from __future__ import annotations

import json
from pathlib import Path

from maskmamba.configs import check_variant

from .conditioning import Condition, ConditionEncoder
from .generator import Generator, GeneratorConfig, MaskedGenerator
from .quantize import INT8_FILE, load_int8, save_int8
from .uvit import UViTGenerator


def generator_class(variant: str) -> type[Generator]:
    return UViTGenerator if check_variant(variant).backbone == "uvit" else MaskedGenerator


def build_model(variant: str, size: str = "tiny", num_classes: int = 100, **overrides) -> Generator:
    """A freshly initialised generator of a registry variant at a named size (see maskmamba.configs.SIZES);
    `overrides` replace fields of its GeneratorConfig."""
    return generator_class(variant)(GeneratorConfig.named(variant, size, num_classes, **overrides))


def read_config(folder: str | Path) -> dict:
    """A checkpoint folder's config.json, as saved (the generator's fields plus extras such as `default_cfg`)."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no generator in {folder}: config.json is missing")
    return json.loads(config_file.read_text())


def load_generator(folder: str | Path) -> Generator:
    """Load a generator from a local folder: config.json + model.safetensors (save_pretrained) or int8 weights."""
    folder = Path(folder)
    config = GeneratorConfig.from_dict(read_config(folder))
    cls = generator_class(config.variant)
    return load_int8(cls(config), folder) if (folder / INT8_FILE).is_file() else cls.from_pretrained(folder)


__all__ = [
    "Condition", "ConditionEncoder", "Generator", "GeneratorConfig", "MaskedGenerator", "UViTGenerator",
    "build_model", "generator_class", "load_generator", "read_config", "save_int8",
]
