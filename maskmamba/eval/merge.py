"""Merge generator evaluations made in separate runs (one per variant, same judge) into one results file.

python -m maskmamba.eval merge --out assets/results/generators.json [--plots assets/results] [--drop-shipped]
    PART.json ...

Variants, the `shipped` section and the curves of each part are merged in order (a later part wins a clash);
the parts must agree on the judge, so its accuracy on real images stays one figure at the top. --drop-shipped
leaves the `shipped` sections out, for a record of checkpoints that are no longer the files in assets/.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskmamba.eval.generator import load_results, write_plots, write_results

JUDGE_KEYS = ("classifier_real_acc", "classifier_real_top5", "classifier", "data", "tokenizer")
CURVES = ("fid_vs_steps", "fid_vs_position")


def merge(parts: list[dict], base: dict | None = None, shipped: bool = True) -> dict:
    """`base` (default empty) updated with every part's judge, variants, shipped entries (unless not `shipped`)
    and curves."""
    merged = base or {"variants": {}}
    for part in parts:
        judge = {k: part[k] for k in JUDGE_KEYS if k in part}
        known = {k: merged[k] for k in JUDGE_KEYS if k in merged}
        clash = [k for k in ("classifier_real_acc", "data", "tokenizer") if k in known and k in judge and known[k] != judge[k]]
        if clash:
            raise ValueError(f"the parts were scored by different judges or data: {', '.join(clash)} differ")
        merged |= judge
        merged["variants"] |= part.get("variants", {})
        if shipped and "shipped" in part:
            merged["shipped"] = merged.get("shipped", {}) | part["shipped"]
        merged |= {k: part[k] for k in CURVES if k in part}
    return merged


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval merge", description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="+", type=Path, help="results files of `python -m maskmamba.eval generator`")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--plots", default=None, type=Path, help="folder of the merged plots (default: none)")
    p.add_argument("--replace", action="store_true", help="start from nothing instead of the existing --out")
    p.add_argument("--drop-shipped", action="store_true", help="leave out the parts' shipped sections")
    args = p.parse_args(argv)
    base = {"variants": {}} if args.replace else load_results(args.out)
    results = merge([json.loads(path.read_text()) for path in args.parts], base, shipped=not args.drop_shipped)
    write_results(results, args.out)
    plots = write_plots(results, args.plots) if args.plots else []
    print(f"wrote {args.out} ({len(results['variants'])} variants){''.join(f', {p}' for p in plots)}")
    return results
