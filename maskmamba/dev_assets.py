"""Untrained stand-in checkpoints laid out like assets/, for developing and testing the demo.

    python -m maskmamba.dev_assets OUT [--size tiny]

Writes OUT/<variant>/ (config.json + model.safetensors) for three variants, OUT/tokenizer/, OUT/classes.json
and OUT/examples/*.png. The weights are random: images are noise, but every code path runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from maskmamba import build_model
from maskmamba.models.tokenizer import VQTokenizer

DEV_VARIANTS = ("maskmamba-serial-half", "maskmamba-parallel-2", "uvit")
DEV_CLASSES = ("animal-mammal", "food-fruit", "face-smiling", "plant-flower", "travel-and-places", "heart", "sky-weather")


def example_images(size: int = 128) -> dict[str, Image.Image]:
    """Two simple drawings to inpaint: a sun and a house."""
    sun = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(sun)
    draw.ellipse((32, 32, 96, 96), fill=(250, 200, 40), outline=(200, 120, 0), width=4)
    house = Image.new("RGB", (size, size), (200, 230, 255))
    draw = ImageDraw.Draw(house)
    draw.rectangle((30, 60, 98, 118), fill=(190, 70, 60))
    draw.polygon([(22, 62), (64, 20), (106, 62)], fill=(90, 60, 40))
    draw.rectangle((56, 86, 72, 118), fill=(60, 40, 30))
    return {"sun": sun, "house": house}


def make_dev_assets(
    out: str | Path, size: str = "tiny", seed: int = 0, variants: tuple[str, ...] | list[str] = DEV_VARIANTS
) -> Path:
    """Write the stand-in assets folder (random weights of the shipped shapes) and return its path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for variant in variants:
        build_model(variant, size, num_classes=len(DEV_CLASSES)).save_pretrained(out / variant)
    VQTokenizer().save_pretrained(out / "tokenizer")
    (out / "classes.json").write_text(json.dumps(list(DEV_CLASSES), indent=1))
    (out / "examples").mkdir(exist_ok=True)
    for name, image in example_images().items():
        image.save(out / "examples" / f"{name}.png")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="folder to write (e.g. runs/dev-assets)")
    parser.add_argument("--size", default="tiny", help="model size from maskmamba.configs.SIZES (tiny or small)")
    args = parser.parse_args()
    print(f"dev assets (untrained) written to {make_dev_assets(args.out, args.size)}")


if __name__ == "__main__":
    main()
