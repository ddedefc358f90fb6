"""Generators (in-context and U-ViT) on one base and one config, their conditioning, and the constructors."""
from __future__ import annotations

import json
from pathlib import Path

from maskmamba.configs import check_variant

from .conditioning import Condition, ConditionEncoder
from .generator import Generator, GeneratorConfig, MaskedGenerator
from .quantize import FILES, load_weights, save_weights, stored_formats
from .uvit import UViTGenerator


def generator_class(variant: str) -> type[Generator]:
    return UViTGenerator if check_variant(variant).backbone == "uvit" else MaskedGenerator


def build_model(variant: str, size: str = "tiny", num_classes: int = 100, **overrides) -> Generator:
    """A freshly initialised generator of a registry variant at a named size (see maskmamba.configs.SIZES);
    `overrides` replace fields of its GeneratorConfig."""
    return generator_class(variant)(GeneratorConfig.named(variant, size, num_classes, **overrides))


def check_tokenizer(generator: Generator | GeneratorConfig, tokenizer) -> None:
    """Refuse a generator (or its config) whose image-token vocabulary is not the codebook of `tokenizer` (a
    VQTokenizer or its FSQ): its images would be noise."""
    if generator.codebook_size != tokenizer.codebook_size:
        raise ValueError(f"the {generator.variant} generator predicts {generator.codebook_size} token ids but the "
                         f"tokenizer has {tokenizer.codebook_size} codes: they were not trained together")


def read_config(folder: str | Path) -> dict:
    """A checkpoint folder's config.json, as saved (the generator's fields plus extras such as `default_cfg`)."""
    config_file = Path(folder) / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no generator in {folder}: config.json is missing")
    return json.loads(config_file.read_text())


def load_generator(folder: str | Path, storage: str | None = None) -> Generator:
    """Load a generator from a local folder: config.json beside weights in a storage format (fp32, fp16, int8,
    int4: see maskmamba.models.quantize); `storage` picks one where a folder holds several (default: the most
    exact present)."""
    config = GeneratorConfig.from_dict(read_config(folder))
    return load_weights(generator_class(config.variant)(config), folder, storage)


__all__ = [
    "Condition", "ConditionEncoder", "Generator", "GeneratorConfig", "MaskedGenerator", "UViTGenerator",
    "FILES", "build_model", "check_tokenizer", "generator_class", "load_generator", "load_weights", "read_config", "save_weights",
    "stored_formats",
]
