"""rFID against sample size: the estimator's small-N inflation, the subset curve and the feature cache."""
from __future__ import annotations

import numpy as np
import torch

import maskmamba.eval.fid_sample_size as fss
from maskmamba.models.tokenizer import VQTokenizer


def paired(n: int, dim: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    originals = rng.normal(size=(n, dim))
    return originals, originals + noise * rng.normal(size=(n, dim))


def test_fid_of_a_paired_copy_is_inflated_below_the_feature_dimension():
    originals, copies = paired(2048, 64, 0.3)
    small, large = fss.fid_by_size(originals, copies, [32, 2048], repeats=4, seed=0)
    assert small["n"] == 32 and small["subsets"] == 4 and large["n"] == 2048 and large["subsets"] == 1
    assert small["fid_mean"] > 3 * large["fid_mean"], (small, large)
    # below the dimension, the FID approaches a fixed fraction of the per-image squared distance
    assert 0.3 < small["fid_mean"] / fss.mean_sq_distance(originals, copies) < 1.0


def test_identical_copies_score_zero():
    originals, _ = paired(200, 16, 0.0)
    (point,) = fss.fid_by_size(originals, originals.copy(), [100], repeats=2, seed=1)
    assert abs(point["fid_mean"]) < 1e-6 and fss.mean_sq_distance(originals, originals) == 0


class MeanColour:
    """Stands in for Inception: the per-channel means and standard deviations of each image."""

    calls = 0

    def features(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        MeanColour.calls += 1
        x = images.reshape(len(images), -1, 3).astype(np.float64)
        return np.concatenate([x.mean(1), x.std(1)], axis=1)


def test_features_are_cached_per_weights_and_analysed(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = {"val": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
              "train": rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)}
    monkeypatch.setattr(fss, "load_split", lambda root, split: images[split])
    torch.manual_seed(0)
    model = VQTokenizer(image_size=32, enc_channels=(8, 8, 16, 16), dec_channels=(8, 8, 16, 16)).eval()
    cache = tmp_path / "features.npz"
    first, _ = fss.split_features("unused", "weights-a", model, MeanColour(), cache)
    assert sorted(first) == sorted(f"{s}_{c}" for s in fss.SPLITS for c in ("orig", "recon", "jpeg"))
    assert first["val_orig"].shape == (6, 6) and first["train_jpeg"].shape == (10, 6)
    calls = MeanColour.calls
    again, _ = fss.split_features("unused", "weights-a", model, MeanColour(), cache)
    assert MeanColour.calls == calls and all(np.array_equal(first[k], again[k]) for k in first)
    fss.split_features("unused", "weights-b", model, MeanColour(), cache)
    assert MeanColour.calls > calls  # other weights: recomputed

    results = fss.analyse(first, sizes=[8, 16], repeats=2, seed=0)
    assert set(results) == {"tokenizer", "jpeg q90"}
    assert results["tokenizer"]["val"]["n"] == 6 and [p["n"] for p in results["jpeg q90"]["by_size"]] == [8, 16]
    assert fss.plot(results, tmp_path / "plot.png").stat().st_size > 1000


def test_bits_and_psnr_per_split():
    rng = np.random.default_rng(1)
    images = {s: rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8) for s in fss.SPLITS}
    model = VQTokenizer(image_size=32, enc_channels=(8, 8, 16, 16), dec_channels=(8, 8, 16, 16)).eval()
    stats = {f"{s}_{k}": v for s in fss.SPLITS for k, v in fss.paired_copies(images[s], model)[1].items()}
    out = fss.bits_and_psnr(stats, model)
    assert out["token_bits_per_image"] == round(16 * np.log2(1000), 1)  # a 4x4 grid of 1000 codes
    assert all(0 < out[f"psnr_db_{s}"] < 40 and out[f"jpeg_q90_bits_per_image_{s}"] > 8 * 300 for s in fss.SPLITS)
