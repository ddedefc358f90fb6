"""Render the Inpaint tab's example images into assets/examples/ from the emoji sources (credited there).

    python scripts/make_examples.py [--out assets/examples] [--npm-prefix DIR]

Needs Debian fonts-noto-color-emoji and npm openmoji@17.0.0 (see maskmamba.data.sources).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from maskmamba.data.catalog import load_records
from maskmamba.data.sources import NOTO, OPENMOJI, default_npm_prefix, openmoji_json, renderer, require

# file name -> (style, CLDR annotation): shapes the shipped models know well, each with a part worth repainting
EXAMPLES = {
    "grinning-face": ("noto", "grinning face"),
    "red-apple": ("noto", "red apple"),
    "sunflower": ("openmoji", "sunflower"),
    "red-heart": ("openmoji", "red heart"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "assets" / "examples")
    parser.add_argument("--npm-prefix", type=Path, default=default_npm_prefix())
    args = parser.parse_args(argv)
    require(OPENMOJI, args.npm_prefix)
    records = {r.annotation: r for r in load_records(openmoji_json(args.npm_prefix))}
    renderers = {s.style: renderer(s, args.npm_prefix) for s in (NOTO, OPENMOJI)}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (style, annotation) in EXAMPLES.items():
        image = renderers[style](records[annotation])
        if image is None:
            raise ValueError(f"{style} has no single-glyph image for {annotation!r}")
        path = args.out / f"{name}.png"
        image.quantize(64).save(path, optimize=True)  # emoji art has few colours: 64 keep it exact to the eye
        print(f"{path}: {style} {records[annotation].hexcode} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
