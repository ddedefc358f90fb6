"""Collect the scaling study (scripts/gpu_generators.sh) into one JSON and two plots for assets/results/.

python -m maskmamba.eval scaling --runs runs/scaling [--out assets/results/scaling.json] [--plots assets/results]

RUNS holds one folder per run, named VARIANT@SIZE, with the trainer's log.jsonl, and RUNS/eval/VARIANT@SIZE/STEP.json
for each evaluated snapshot (`python -m maskmamba.eval generator` output). Per run: parameters, batch and, per
evaluated step, images seen, FID, class accuracy, prompt and paraphrase top-5, best CFG, and the held-out loss
logged at that step. Plots: FID against images seen (a line per run) and FID at the last point against parameters
(a line per variant).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from maskmamba.eval.plots import figure, save_plot

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


def write_plots(study: dict, folder: Path) -> list[Path]:
    runs = study["runs"]
    fig, ax = figure("FID against images seen", "images seen (millions)")
    for name, run in runs.items():
        ax.plot([p["images_seen"] / 1e6 for p in run["points"]], [p["fid"] for p in run["points"]], "o-", ms=3, label=name)
    ax.legend(fontsize=6)
    paths = [save_plot(fig, folder / "scaling_fid_vs_images.png")]
    fig, ax = figure("FID at the end of training against size", "parameters (millions)")
    for variant in sorted({run["variant"] for run in runs.values()}):
        mine = sorted((run for run in runs.values() if run["variant"] == variant), key=lambda r: r["params"])
        ax.plot([r["params"] / 1e6 for r in mine], [r["points"][-1]["fid"] for r in mine], "o-", label=variant)
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    paths.append(save_plot(fig, folder / "scaling_fid_vs_params.png"))
    return paths


def main(argv: list[str]) -> dict:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval scaling", description=__doc__.splitlines()[0])
    p.add_argument("--runs", required=True, type=Path)
    p.add_argument("--out", default="assets/results/scaling.json", type=Path)
    p.add_argument("--plots", default="assets/results", type=Path)
    args = p.parse_args(argv)
    study = collect(args.runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(study, indent=1) + "\n")
    plots = write_plots(study, args.plots)
    print(f"wrote {args.out}, {', '.join(map(str, plots))}")
    return study
