"""The FID's spread with the sample alone: bootstrap FIDs shrink with the sample size, a class subset lands further
away, and the feature cache."""
from __future__ import annotations

import numpy as np
import pytest

import maskmamba.eval.fid_spread as spread


def gaussian(n: int, dim: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_bootstrap_fids_shrink_with_the_sample_and_are_seeded():
    features = gaussian(4000, 8)
    small, large = spread.spread_by_size(features, [100, 4000], repeats=12, seed=3)
    assert (small["n"], small["repeats"], large["n"]) == (100, 12, 4000)
    # a sample of the set itself still scores above 0 (the estimator's bias), less so the larger it is
    assert 0 < large["fid_mean"] < small["fid_mean"] and 0 < large["fid_std"] < small["fid_std"]
    assert small["fid_min"] <= small["fid_mean"] <= small["fid_max"]
    assert spread.spread_by_size(features, [100], 12, seed=3)[0] == small  # same seed, same samples


def test_a_sample_of_some_classes_lands_further_away_and_spreads_more():
    rng = np.random.default_rng(1)
    class_ids = np.repeat(np.arange(10), 300)
    features = (rng.normal(size=(10, 8))[class_ids] + rng.normal(size=(3000, 8))).astype(np.float32)
    pool, kept = spread.class_share_pool(class_ids, 0.5, seed=0)
    assert kept == 5 and len(pool) == 1500 and len(np.unique(class_ids[pool])) == 5
    (same,) = spread.spread_by_size(features, [300], repeats=12, seed=0)
    (far,) = spread.spread_by_size(features, [300], repeats=12, seed=0, pool=pool)
    assert far["fid_mean"] > 3 * same["fid_mean"] and far["fid_std"] > same["fid_std"]
    assert spread.class_share_pool(class_ids, 0.01, seed=0)[1] == 1  # never an empty pool


class CountingInception:
    """Stands in for Inception: each image's mean colour, counting the images it saw."""

    def __init__(self):
        self.images = 0

    def features(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        self.images += len(images)
        return images.reshape(len(images), -1, 3).mean(1)


def test_train_features_are_cached_per_key(tmp_path, monkeypatch):
    images = np.random.default_rng(0).integers(0, 256, size=(700, 4, 4, 3), dtype=np.uint8)
    monkeypatch.setattr(spread, "load_split", lambda data, split: images)
    cache, inception = tmp_path / "f.npz", CountingInception()
    first = spread.train_features("DATA", inception, cache, key="a")
    assert first.shape == (700, 3) and first.dtype == np.float32 and inception.images == 700  # two chunks
    np.testing.assert_array_equal(spread.train_features("DATA", inception, cache, key="a"), first)
    assert inception.images == 700  # read back, not recomputed
    spread.train_features("DATA", inception, cache, key="b")
    assert inception.images == 1400  # another data set or Inception file: recomputed


def test_bad_arguments_are_clear_errors():
    with pytest.raises(SystemExit, match="at least 2"):
        spread.main(["--data", "nowhere", "--repeats", "1"])
    with pytest.raises(SystemExit, match="class-share"):
        spread.main(["--data", "nowhere", "--class-share", "1"])
