"""Collect the scaling study (scripts/gpu_generators.sh) into one JSON and two plots for assets/results/.

python -m maskmamba.eval scaling --runs runs/scaling [--out assets/results/scaling.json] [--plots assets/results] [--replace]

RUNS holds one folder per run, named VARIANT@SIZE, with the trainer's log.jsonl, and RUNS/eval/VARIANT@SIZE/STEP.json
for each evaluated snapshot (`python -m maskmamba.eval generator` output). Per run: parameters, batch and, per
evaluated step, images seen, FID, class accuracy, prompt and paraphrase top-5, best CFG, and the held-out loss
logged at that step. The runs are added to those already in --out (a later run of the same name wins), so studies of
several leases add up; --replace starts from nothing. Plots: FID against images seen (a line per run) and FID at the
last point against parameters (a line per variant and training length: only runs of equal length compare by size).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskmamba.eval.plots import figure, save_plot

SIZE_LINES = {"tiny": (0, (1, 3)), "small": ":", "mid": "--", "medium": "-", "base": "-."}
METRICS = ("fid", "class_acc", "prompt_top5", "paraphrase_top5", "best_cfg", "n_images")


def collect_run(folder: Path, evals: Path) -> dict:
    """One run's description and its evaluated points, in step order."""
    records = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
    start = next(r for r in reversed(records) if r.get("event") == "start")
    val = {r["step"]: r["val_loss"] for r in records if r.get("event") == "val"}
    variant = start["variant"]
    points = []
    for path in sorted(evals.glob("*.json")):
        step = int(path.stem)
        entry = json.loads(path.read_text())["variants"][variant]
        points.append({"step": step, "images_seen": step * start["batch"], "val_loss": val.get(step),
                       **{k: entry[k] for k in METRICS if k in entry}})
    return {"variant": variant, "size": folder.name.partition("@")[2], "params": start["params"], "batch": start["batch"],
            "points": points}


def collect(runs: Path) -> dict:
    """Every run folder of the study that has evaluated points."""
    out = {}
    for folder in sorted(p for p in runs.iterdir() if p.is_dir() and "@" in p.name and (p / "log.jsonl").is_file()):
        run = collect_run(folder, runs / "eval" / folder.name)
        if run["points"]:
            out[folder.name] = run
    if not out:
        raise SystemExit(f"no evaluated runs under {runs}: expected VARIANT@SIZE/log.jsonl and eval/VARIANT@SIZE/STEP.json")
    return {"runs": out}


def final_images(run: dict) -> int:
    """Images seen at a run's last evaluated point: its training length."""
    return run["points"][-1]["images_seen"]


def write_plots(study: dict, folder: Path) -> list[Path]:
    runs = study["runs"]
    fig, ax = figure("FID against images seen", "images seen (millions)")
    variants = sorted({run["variant"] for run in runs.values()})
    for name, run in sorted(runs.items()):  # colour: variant; line: size
        ax.plot([p["images_seen"] / 1e6 for p in run["points"]], [p["fid"] for p in run["points"]], marker="o", ms=3,
                ls=SIZE_LINES.get(run["size"], "-"), color=f"C{variants.index(run['variant'])}", label=name)
    ax.legend(fontsize=6)
    paths = [save_plot(fig, folder / "scaling_fid_vs_images.png")]
    fig, ax = figure("FID at the end of training against size", "parameters (millions)")
    for variant, seen in sorted({(run["variant"], final_images(run)) for run in runs.values()}):
        mine = sorted((r for r in runs.values() if (r["variant"], final_images(r)) == (variant, seen)), key=lambda r: r["params"])
        ax.plot([r["params"] / 1e6 for r in mine], [r["points"][-1]["fid"] for r in mine], "o-",
                label=f"{variant}, {seen / 1e6:.2f}M images")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    paths.append(save_plot(fig, folder / "scaling_fid_vs_params.png"))
    return paths


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval scaling", description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--out", default="assets/results/scaling.json", type=Path)
    p.add_argument("--plots", default="assets/results", type=Path)
    p.add_argument("--replace", action="store_true", help="drop the runs already in --out")
    args = p.parse_args(argv)
    known = {} if args.replace or not args.out.is_file() else json.loads(args.out.read_text())["runs"]
    study = {"runs": known | collect(args.runs)["runs"]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(study, indent=1) + "\n")
    plots = write_plots(study, args.plots)
    print(f"wrote {args.out}, {', '.join(map(str, plots))}")
    return study
