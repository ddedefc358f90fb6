"""How many images a generator would have to see to reach a FID target, extrapolated from its measured FIDs.

python -m maskmamba.eval fid-trend --target 25 [--floor 17.6] [--rate IMAGES_PER_S] IMAGES:FID IMAGES:FID [...]

Each point is one full evaluation (same estimator, image count and judge) of the same model after IMAGES training
images seen in all. The fit is a power law in the gap to a floor, FID(I) = floor + k I^-c (least squares in log-log),
once with --floor (the tokenizer's own rFID: no generator of its tokens gets below it) and once without (floor 0),
which needs the fewest images. With --rate (training images per second on one GPU) the images become GPU hours.
Any error that falls as a power law of images seen fits the same way: the README reads prompt top-5 error (100
minus prompt top-5, in points) through it.
"""
from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass


@dataclass
class Extrapolation:
    floor: float
    exponent: float  # c of FID - floor = k I^-c
    images_needed: float  # inf when the fit does not fall or the target is at or under the floor
    times_seen: float  # images_needed over the last point's images
    gpu_hours: float | None


def parse_point(text: str) -> tuple[float, float]:
    """'IMAGES:FID' -> (images, fid), both positive."""
    try:
        images, fid = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a point is IMAGES:FID, got {text!r}") from None
    if images <= 0 or fid <= 0:
        raise argparse.ArgumentTypeError(f"images and FID must be positive, got {text!r}")
    return images, fid


def fit_power_law(points: list[tuple[float, float]], floor: float) -> tuple[float, float]:
    """(log k, c) of FID - floor = k I^-c, least squares over log I."""
    xs = [math.log(images) for images, _ in points]
    ys = [math.log(fid - floor) for _, fid in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - slope * mx, -slope


def extrapolate(points: list[tuple[float, float]], target: float, floor: float, rate: float | None) -> Extrapolation:
    """The images at which the fitted FID reaches target."""
    if len({images for images, _ in points}) < 2:
        raise ValueError("the fit needs points at two or more image counts")
    if any(fid <= floor for _, fid in points):
        raise ValueError(f"every FID must lie above the floor {floor}")
    log_k, c = fit_power_law(points, floor)
    needed = math.exp((log_k - math.log(target - floor)) / c) if c > 0 and target > floor else math.inf
    last = max(images for images, _ in points)
    hours = needed / rate / 3600 if rate else None
    return Extrapolation(floor, round(c, 4), needed, needed / last, hours)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m maskmamba.eval fid-trend", description=__doc__.split("\n\n")[0])
    parser.add_argument("points", nargs="+", type=parse_point, help="IMAGES:FID, images seen in all and its FID")
    parser.add_argument("--target", type=float, required=True, help="the FID to reach")
    parser.add_argument("--floor", type=float, default=0.0, help="the FID no generator gets below (tokenizer rFID)")
    parser.add_argument("--rate", type=float, help="training images per second, for GPU hours")
    args = parser.parse_args(argv)
    floors = sorted({0.0, args.floor})
    try:
        fits = [extrapolate(args.points, args.target, floor, args.rate) for floor in floors]
    except ValueError as error:
        parser.error(str(error))
    for fit in fits:
        hours = "" if fit.gpu_hours is None else f", {fit.gpu_hours:,.0f} GPU hours"
        print(f"floor {fit.floor:g}: FID - floor ~ I^-{fit.exponent}; FID {args.target:g} after "
              f"{fit.images_needed:.3g} images ({fit.times_seen:,.0f}x the last point's){hours}")
    print(json.dumps([asdict(fit) for fit in fits]))


if __name__ == "__main__":
    main()
