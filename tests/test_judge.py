"""The judge kept in git (judge/classifier) loads, knows every class, and is the one that scored every shipped figure
(assets/results/generators.json)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from maskmamba.eval.classifier import load_classifier

REPO = Path(__file__).resolve().parents[1]


def test_the_kept_judge_loads_and_scored_its_results():
    model, meta = load_classifier(REPO / "judge" / "classifier")
    classes = json.loads((REPO / "assets/results/dataset.json").read_text())["images_per_class"]
    assert meta["num_classes"] == len(classes) == 96
    logits = model(torch.full((2, 128, 128, 3), 255, dtype=torch.uint8))
    assert logits.shape == (2, 96) and torch.isfinite(logits).all()
    scored = json.loads((REPO / "assets/results/generators.json").read_text())
    assert scored["classifier_real_acc"] == round(meta["val_acc"], 4)
    assert scored["classifier"]["val_top5"] == meta["val_top5"] and scored["classifier"]["epochs"] == meta["epochs"]
    assert set(scored["shipped"]) == {p.parent.name for p in (REPO / "assets").glob("*/training.json")}
