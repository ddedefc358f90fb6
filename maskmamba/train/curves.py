"""Training curves of a generator run, from its log.jsonl: curves.json and curves.png (for assets/results/)."""
from __future__ import annotations

import json
from pathlib import Path

from maskmamba.eval.plots import figure, save_plot


def read_curves(log: Path) -> dict:
    """Train loss and held-out loss against step and images seen (step x the global batch of the run)."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    batch = next((r["batch"] for r in reversed(records) if r.get("event") == "start" and "batch" in r), None)

    def point(record: dict, key: str, name: str) -> dict:
        seen = None if batch is None else record["step"] * batch
        return {"step": record["step"], "images_seen": seen, name: record[key]}

    train = [point(r, "loss", "loss") for r in records if r.get("event") == "train"]
    val = [point(r, "val_loss", "val_loss") for r in records if r.get("event") == "val"]
    return {"batch": batch, "train": train, "val": val, "best": min(val, key=lambda p: p["val_loss"]) if val else None}


def write_curves(log: Path, folder: Path, title: str) -> tuple[Path, Path]:
    """Write folder/curves.json and folder/curves.png (loss against step, the best held-out point marked)."""
    curves = read_curves(log)
    json_path = folder / "curves.json"
    json_path.write_text(json.dumps(curves | {"title": title}, indent=1) + "\n")
    fig, ax = figure(f"{title}: masked-token loss", "step", "cross-entropy")
    ax.plot([p["step"] for p in curves["train"]], [p["loss"] for p in curves["train"]], label="train (smoothed labels)", lw=1)
    if curves["val"]:
        ax.plot([p["step"] for p in curves["val"]], [p["val_loss"] for p in curves["val"]], "o-", ms=3, label="held-out (EMA)")
        best = curves["best"]
        ax.plot([best["step"]], [best["val_loss"]], "r*", ms=10, label=f"best {best['val_loss']:.3f} @ {best['step']}")
    ax.legend(fontsize=7)
    return json_path, save_plot(fig, folder / "curves.png")
