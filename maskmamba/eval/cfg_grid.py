"""Merge single-scale generator evaluations into a CFG grid beside the shipped figures: `cfg_fine_sweep` in a
results file.

    python -m maskmamba.eval cfg-grid --out assets/results/generators.json [--assets assets] PART.json ...

Each PART is one `python -m maskmamba.eval generator ... --n 10000 --sweep S --sweep-n 100` run (its best scale is
S). A part adds one row per variant at S, replacing a row at the same scale. Rows belong to one weights file: the
grid records each variant's `weights_sha256` (from the parts), and a part of another file starts that variant's rows
afresh. Where the file is the one in ASSETS/VARIANT (its SHA256SUMS), the shipped figures join the grid as the row at
their scale. The grid's own notes (`what` and the like) are left as they are.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskmamba.checksums import read_sums
from maskmamba.eval.generator import load_results, write_results

SECTION = "cfg_fine_sweep"
ROW_KEYS = ("fid", "fid_std", "class_acc", "prompt_top5", "paraphrase_top5", "paraphrase_top5_matched")


def grid_row(entry: dict) -> dict:
    """An evaluation's (or a shipped entry's) figures at its best scale, the scale first."""
    return {"cfg": entry["best_cfg"], **{k: entry[k] for k in ROW_KEYS if k in entry}}


def _put(rows: list[dict], row: dict) -> list[dict]:
    return sorted([r for r in rows if r["cfg"] != row["cfg"]] + [row], key=lambda r: r["cfg"])


def add_parts(results: dict, parts: list[dict], assets: Path) -> dict:
    """`results` with every part's rows in its grid, then the shipped row of each variant whose scored file is
    the one in `assets`."""
    grid = results.setdefault(SECTION, {})
    rows, files = grid.setdefault("variants", {}), grid.setdefault("files", {})
    for part in parts:
        for variant, entry in part["variants"].items():
            if "weights_sha256" not in entry:
                raise ValueError(f"{variant}: the part does not name its weights file (weights_sha256); score it again")
            if grid.setdefault("n_images", entry["n_images"]) != entry["n_images"]:
                raise ValueError(f"{variant}: {entry['n_images']} images, the grid's rows have {grid['n_images']}")
            if files.get(variant) != entry["weights_sha256"]:
                rows[variant], files[variant] = [], entry["weights_sha256"]
            rows[variant] = _put(rows[variant], grid_row(entry))
    for variant, sums in files.items():
        shipped = results.get("shipped", {}).get(variant)
        if shipped and read_sums(assets / variant) == sums:
            rows[variant] = _put(rows[variant], grid_row(shipped))
    return results


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval cfg-grid", description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="+", type=Path, help="results files of single-scale generator evaluations")
    p.add_argument("--out", required=True, type=Path, help="the results file whose grid grows")
    p.add_argument("--assets", default=Path("assets"), type=Path, help="the shipped generators' folders")
    args = p.parse_args(argv)
    results = add_parts(load_results(args.out), [json.loads(path.read_text()) for path in args.parts], args.assets)
    write_results(results, args.out)
    scales = {v: ", ".join(f"{row['cfg']:g}" for row in rows) for v, rows in results[SECTION]["variants"].items()}
    print(f"wrote {args.out}: " + "; ".join(f"{v} at {s}" for v, s in scales.items()))
    return results
