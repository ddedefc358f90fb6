"""The data set's record for `assets/results/dataset.json`: images per style, split and class, and the sources."""
from __future__ import annotations

import json
from pathlib import Path

from maskmamba.data.shards import load_manifest


def dataset_record(manifest: dict) -> dict:
    """Counts and provenance of a built data set, from its manifest."""
    counts = manifest["counts"]
    styles = manifest["styles"]
    splits = {split: per_style["total"] for split, per_style in counts.items()}
    return {
        "n_images": sum(splits.values()),
        "styles": {style: sum(counts[split][style] for split in counts) for style in styles},
        "splits": splits,
        "images_per_split_and_style": counts,
        "n_emoji": len(manifest["emoji"]),
        "emoji_per_split": {split: sum(e["split"] == split for e in manifest["emoji"]) for split in counts},
        "n_classes": len(manifest["classes"]),
        "images_per_class": dict(zip(manifest["classes"], manifest["images_per_class"])),
        "captions": manifest["captions"],
        "sources": [
            {key: source[key] for key in ("style", "package", "version", "licence", "credit")}
            for source in manifest["sources"]
        ],
        "catalogue": {key: manifest["catalogue"][key] for key in ("package", "version", "licence", "credit")},
        "bytes": manifest["bytes"],
        "build_command": manifest["build_command"],
    }


def write_dataset_record(root: str | Path, out: str | Path) -> Path:
    """Write the record of the data set built in `root` to `out` (JSON)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = dataset_record(load_manifest(root))
    out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return out
