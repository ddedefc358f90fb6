"""Bring generator checkpoint folders to the current GeneratorConfig: config.json rewritten, weights checked.

    python scripts/convert_checkpoints.py assets/*/          # folders without a generator config are skipped

U-ViT configs lose `cond_position` and `d_state`, which U-ViT never used; keys that are not config fields (such
as `default_cfg`) are kept. State-dict keys did not change, so the weights are only loaded strictly to check.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskmamba.configs import VARIANTS
from maskmamba.models import GeneratorConfig, load_generator, read_config

UVIT_UNUSED = ("cond_position", "d_state")


def convert(folder: Path) -> bool:
    """Rewrite folder/config.json in the current form; False when the folder holds no generator."""
    if not (folder / "config.json").is_file():
        return False
    old = read_config(folder)
    if old.get("variant") not in VARIANTS:
        return False
    if VARIANTS[old["variant"]].backbone == "uvit":
        old = {k: v for k, v in old.items() if k not in UVIT_UNUSED}
    config = GeneratorConfig.from_dict(old)
    extras = {k: v for k, v in old.items() if k not in config.to_dict()}
    (folder / "config.json").write_text(json.dumps(config.to_dict() | extras, indent=2, sort_keys=True))
    load_generator(folder)  # strict load: the weights still fit the config
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path)
    for folder in parser.parse_args().folders:
        print(f"{folder}: {'converted' if convert(folder) else 'skipped (no generator config)'}")


if __name__ == "__main__":
    main()
