"""Held-out masked-token cross-entropy of a checkpoint in int8 and in int4 candidates, with each file's size.

    python -m bench.storage_loss /work/lease/maskmamba-parallel-4 ... [--data DIR] [--images 946] [--json OUT]

Every int4 candidate is made from the folder's most exact weights file (int8 for the retrained checkpoints), so
the int8 row is the reference and 'd_loss' is each candidate's change against it; the old layout (g64, absmax,
every matrix int4) is the yardstick whose FID change is known. 'int8-dither' adds to the reference noise like one
more int8 rounding (uniform within half a step of each row's scale): what int8 itself costs, without the fp32
weights. Fixed masks and class conditions (as the training's validation), on the CPU; --mask-seeds also scores
the reference on other masks, the spread that one set of masks leaves in every figure.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from safetensors.torch import save

from maskmamba import load_generator
from maskmamba.models.quantize import (
    CLIPS, INT8_SCALE, Int4, dequantize_state, metadata, quantize_state, read_state, weights_files,
)
from maskmamba.train.generator import VAL_MASK_SEED, Data, validation_loss

DITHER = "int8-dither"
CANDIDATES = {  # name -> how int4 is written; "int8" is the stored reference
    "int4-g64 (old)": Int4(64, (1.0,), ()),
    "int4-g32": Int4(32, (1.0,), ()),
    "int4-g32-clip": Int4(32, CLIPS, ()),
    "int4-g64-clip-keep": Int4(64, CLIPS, ("tok_emb", "head")),
    "int4-g32-clip-keep": Int4(32, CLIPS, ("tok_emb", "head")),
    "int4-g32-keep-attn": Int4(32, (1.0,), ("tok_emb", "head", "qkv", "proj")),
    "int4-g32-clip-keep-attn": Int4(32, CLIPS, ("tok_emb", "head", "qkv", "proj")),
}


def int8_dither(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """`state` plus noise like one more int8 rounding of each matrix that int8 quantizes: uniform within half a
    step of its row's scale."""
    generator, out = torch.Generator().manual_seed(seed), dict(state)
    for name, scale in quantize_state(state, "int8").items():
        if name.endswith(INT8_SCALE):
            weight = state[name[: -len(INT8_SCALE)]]
            rows = weight.reshape(weight.shape[0], -1)
            noise = (torch.rand(rows.shape, generator=generator) - 0.5) * scale.float()[:, None]
            out[name[: -len(INT8_SCALE)]] = (rows + noise).reshape(weight.shape)
    return out


def subset(data: Data, images: int) -> SimpleNamespace:
    """`images` val images spread evenly over the split (all of them when images >= its size)."""
    rows = torch.linspace(0, len(data.ids) - 1, min(images, len(data.ids))).round().long()
    return SimpleNamespace(ids=data.ids[rows], classes=data.classes[rows])


def measure(folder: Path, data, names: list[str], mask_seeds: list[int]) -> list[dict]:
    """One row per format: bytes of its file and its val loss; then the reference on each of `mask_seeds`."""
    model = load_generator(folder).eval()
    reference_files = weights_files(folder, None)
    reference = read_state(reference_files)
    rows = []
    for name in ["int8", *names]:
        if name == "int8":
            size, state = sum(p.stat().st_size for p in reference_files), reference
        elif name == DITHER:
            size, state = sum(p.stat().st_size for p in reference_files), int8_dither(reference)
        else:
            plan = CANDIDATES[name]
            tensors = quantize_state(reference, "int4", plan)
            size, state = len(save(tensors, metadata("int4", plan))), dequantize_state(tensors, plan.group)
        rows.append(_row(model, state, data, {"model": folder.name, "format": name, "bytes": size}, rows))
    for seed in mask_seeds:
        rows.append(_row(model, reference, data, {**rows[0], "format": f"int8, masks {seed}"}, rows, seed))
    return rows


def _row(model, state: dict, data, label: dict, rows: list[dict], seed: int = VAL_MASK_SEED) -> dict:
    """`label` with the val loss of `model` holding `state` on the masks of `seed`, its change against the first
    of `rows` (none yet: itself) and the seconds it took; printed as it comes."""
    model.load_state_dict(state)
    start = time.time()
    with torch.no_grad():
        loss = validation_loss(model, data, model.mask_id, torch.device("cpu"), seed=seed)
    row = label | {"val_loss": loss, "seconds": time.time() - start}
    row["d_loss"] = loss - (rows[0]["val_loss"] if rows else loss)
    print(f"{row['model']:30s} {row['format']:20s} {row['bytes'] / 1e6:7.3f} MB  loss {loss:.4f}  "
          f"d_loss {row['d_loss']:+.4f}", flush=True)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--data", type=Path, default=Path("/work/data/emoji-v2"))
    p.add_argument("--images", type=int, default=946, help="val images, spread evenly (default: all 946)")
    p.add_argument("--formats", default=",".join(CANDIDATES),
                   help=f"int4 candidates and {DITHER}, comma-separated")
    p.add_argument("--mask-seeds", default="", help="other mask seeds to score the reference on, comma-separated")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    names = [n for n in args.formats.split(",") if n]
    unknown = [n for n in names if n not in CANDIDATES and n != DITHER]
    if unknown:
        p.error(f"unknown candidates {unknown}; choose from: {', '.join(CANDIDATES)}, {DITHER}")
    torch.set_num_threads(args.threads)
    data = subset(Data.load(args.data, "val", torch.device("cpu")), args.images)
    seeds = [int(s) for s in args.mask_seeds.split(",") if s]
    rows = [row for folder in args.folders for row in measure(folder, data, names, seeds)]
    yardstick = {r["model"]: r["d_loss"] for r in rows if r["format"] == "int4-g64 (old)"}
    print(f"\n{'model':30s} {'format':20s} {'MB':>7s} {'val loss':>9s} {'d_loss':>8s} {'/ old':>6s}")
    for r in rows:
        ratio = r["d_loss"] / yardstick[r["model"]] if yardstick.get(r["model"]) else float("nan")
        print(f"{r['model']:30s} {r['format']:20s} {r['bytes'] / 1e6:7.3f} {r['val_loss']:9.4f} {r['d_loss']:+8.4f} {ratio:6.2f}")
    if args.json:
        args.json.write_text(json.dumps({"images": len(data.ids), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
