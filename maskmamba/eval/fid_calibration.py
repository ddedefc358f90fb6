"""What an FID means on this data: PSNR and FID of simple degradations of the held-out images.

    python -m maskmamba.eval.fid_calibration --data DIR [--split val] [--device cpu]

Sets the tokenizer's rFID beside familiar losses (JPEG, blur, 2x resampling) measured the same way.
"""
from __future__ import annotations

import argparse
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter

from maskmamba.data.dataset import EmojiImages
from maskmamba.eval.fid import InceptionFeatures, feature_stats, frechet_distance, jpeg_round_trip
from maskmamba.eval.tokenizer import psnr_db


def _resample(image: Image.Image, factor: int) -> Image.Image:
    small = image.resize((image.width // factor, image.height // factor), Image.BILINEAR)
    return small.resize(image.size, Image.BILINEAR)


DEGRADATIONS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "jpeg q90": lambda im: jpeg_round_trip(im, 90)[0],
    "gaussian blur r=0.7": lambda im: im.filter(ImageFilter.GaussianBlur(0.7)),
    "2x down-up, bilinear": lambda im: _resample(im, 2),
}


def calibrate(images: np.ndarray, inception: InceptionFeatures) -> dict[str, tuple[float, float]]:
    """Degradation name -> (PSNR dB, FID against the originals)."""
    reference = feature_stats(inception.features(images, 64))
    results = {}
    for name, degrade in DEGRADATIONS.items():
        degraded = np.stack([np.asarray(degrade(Image.fromarray(x))) for x in images])
        fid = frechet_distance(*reference, *feature_stats(inception.features(degraded, 64)))
        results[name] = (psnr_db(images, degraded), fid)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--inception", default=None)
    args = parser.parse_args()
    images = EmojiImages(args.data, args.split).load_all_uint8()
    results = calibrate(images, InceptionFeatures(args.device, args.inception))
    print(f"{len(images)} {args.split} images")
    for name, (psnr, fid) in results.items():
        print(f"{name:24s} PSNR {psnr:6.2f} dB   FID {fid:6.1f}")


if __name__ == "__main__":
    main()
