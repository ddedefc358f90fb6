"""CLI: python -m maskmamba.data build OUT [--sources noto,openmoji,...] [--limit N] [--no-captions] [--install]

and python -m maskmamba.data sheet OUT PNG [--split train] [--count 64] [--seed 0] [--style S] for a contact sheet,
and python -m maskmamba.data tokenize OUT --tokenizer assets/tokenizer [--augment K] for the token cache of generator
training (K shifted/scaled/mirrored copies of each train image, see maskmamba/data/augment.py),
and python -m maskmamba.data captions OUT to recompute the captions (and their cache) of a built data set,
and python -m maskmamba.data pack OUT BUNDLE [--captions-per-emoji 4] [--copies K] for the bundle that travels to a GPU machine,
and python -m maskmamba.data record OUT [--json assets/results/dataset.json] for the data set's counts and sources.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from PIL import Image

from maskmamba.data.build import MIN_CLASS_IMAGES, build, summary
from maskmamba.data.dataset import EmojiImages, contact_sheet, load_manifest
from maskmamba.data.sources import DEFAULT_STYLES, SOURCES, SourceMissing, default_npm_prefix

def _styles(text: str) -> list[str]:
    styles = [style.strip() for style in text.split(",") if style.strip()]
    unknown = [style for style in styles if style not in SOURCES]
    if unknown or not styles:
        raise argparse.ArgumentTypeError(f"unknown sources {unknown}; choose from {sorted(SOURCES)}")
    return list(dict.fromkeys(styles))


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    cli = argparse.ArgumentParser(prog="python -m maskmamba.data", description="Build the emoji data set.")
    commands = cli.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="render, split and shard the emoji images")
    make.add_argument("out", type=Path, help="output folder (keep it outside git)")
    make.add_argument(
        "--sources", type=_styles, default=list(DEFAULT_STYLES), help=f"comma-separated art styles of {list(SOURCES)}"
    )
    make.add_argument("--limit", type=int, default=None, help="use only the first N emoji of the catalogue")
    make.add_argument("--no-captions", action="store_true", help="skip the caption-state cache")
    make.add_argument("--install", action="store_true", help="install missing sources (apt-get, npm)")
    make.add_argument("--npm-prefix", type=Path, default=default_npm_prefix(), help="npm --prefix for the packages")
    make.add_argument("--min-class-images", type=int, default=MIN_CLASS_IMAGES, help="drop smaller subgroups")
    sheet = commands.add_parser("sheet", help="save a contact sheet of random images of a built data set")
    sheet.add_argument("root", type=Path, help="a built data set")
    sheet.add_argument("png", type=Path, help="where to save the sheet")
    sheet.add_argument("--split", default="train")
    sheet.add_argument("--count", type=int, default=64)
    sheet.add_argument("--seed", type=int, default=0)
    sheet.add_argument("--style", default=None, help="only this style (a name from the manifest's styles)")
    tokens = commands.add_parser("tokenize", help="encode every image once with the VQ tokenizer")
    tokens.add_argument("root", type=Path, help="a built data set")
    tokens.add_argument("--tokenizer", type=Path, default=Path("assets/tokenizer"))
    tokens.add_argument("--device", default="cpu")
    tokens.add_argument("--augment", type=int, default=0, help="augmented copies of each train image to tokenize too")
    tokens.add_argument("--seed", type=int, default=0, help="seed of the augmentations")
    recap = commands.add_parser("captions", help="recompute the captions and caption cache of a built data set")
    recap.add_argument("root", type=Path, help="a built data set")
    recap.add_argument("--npm-prefix", type=Path, default=default_npm_prefix(), help="where openmoji is installed")
    recap.add_argument("--device", default="cpu")
    bundle = commands.add_parser("pack", help="token cache + trimmed captions + classes, for GPU training")
    bundle.add_argument("root", type=Path, help="a built and tokenized data set")
    bundle.add_argument("out", type=Path, help="bundle folder")
    bundle.add_argument("--captions-per-emoji", type=int, default=4)
    bundle.add_argument("--copies", type=int, default=None, help="augmented token copies per image to keep (default all)")
    record = commands.add_parser("record", help="write the counts and sources of a built data set as JSON")
    record.add_argument("root", type=Path, help="a built data set")
    record.add_argument("--json", type=Path, default=Path("assets/results/dataset.json"))
    return cli


def save_sheet(args: argparse.Namespace) -> int:
    """The `sheet` command."""
    style = None
    if args.style is not None:
        styles = load_manifest(args.root)["styles"]
        if args.style not in styles:
            print(f"error: style {args.style!r} is not in this data set's {styles}", file=sys.stderr)
            return 1
        style = styles.index(args.style)
    grid = contact_sheet(EmojiImages(args.root, args.split), args.count, args.seed, style)
    Image.fromarray(grid).save(args.png)
    print(f"saved {args.png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    if args.command == "sheet":
        return save_sheet(args)
    if args.command == "tokenize":
        from maskmamba.data.tokens import build_token_cache

        print(f"wrote {build_token_cache(args.root, args.tokenizer, args.device, args.augment, args.seed)}")
        return 0
    if args.command == "captions":
        from maskmamba.data.captions import recaption
        from maskmamba.data.catalog import load_records
        from maskmamba.data.sources import openmoji_json

        print(f"{recaption(args.root, load_records(openmoji_json(args.npm_prefix)), args.device)} captions in {args.root}")
        return 0
    if args.command == "record":
        from maskmamba.data.record import write_dataset_record

        print(f"wrote {write_dataset_record(args.root, args.json)}")
        return 0
    if args.command == "pack":
        from maskmamba.data.pack import pack

        print(f"wrote {pack(args.root, args.out, args.captions_per_emoji, args.copies)}")
        return 0
    start = time.perf_counter()
    try:
        manifest = build(
            args.out,
            styles=args.sources,
            npm_prefix=args.npm_prefix,
            command=shlex.join(["python", "-m", "maskmamba.data", *argv]),
            limit=args.limit,
            with_captions=not args.no_captions,
            install=args.install,
            min_class_images=args.min_class_images,
        )
    except SourceMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(summary(manifest))
    print(f"built {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
