"""The FID extrapolation: an exact power law is recovered, the floor slows it, bad points are refused."""
from __future__ import annotations

import math

import pytest

from maskmamba.eval.fid_trend import extrapolate, main


def law(images: float, floor: float, k: float = 900.0, c: float = 0.25) -> float:
    return floor + k * images ** -c


@pytest.mark.parametrize("floor", [0.0, 17.6])
def test_an_exact_power_law_is_recovered(floor):
    points = [(i, law(i, floor)) for i in (1e6, 3e6, 9e6)]
    fit = extrapolate(points, target=floor + 5.0, floor=floor, rate=1000.0)
    assert fit.exponent == pytest.approx(0.25, abs=1e-4)
    expected = (900.0 / 5.0) ** 4  # k I^-c = 5
    assert fit.images_needed == pytest.approx(expected, rel=1e-6)
    assert fit.times_seen == pytest.approx(expected / 9e6, rel=1e-6)
    assert fit.gpu_hours == pytest.approx(expected / 1000.0 / 3600, rel=1e-6)


def test_a_floor_needs_more_images_than_none():
    points = [(2.688e6, 53.844), (5.8368e6, 48.638)]
    none, floored = (extrapolate(points, 25.0, floor, None) for floor in (0.0, 17.648))
    assert floored.images_needed > none.images_needed > 5.8368e6
    assert none.gpu_hours is None


def test_a_flat_fit_or_a_target_under_the_floor_never_arrives():
    assert math.isinf(extrapolate([(1e6, 50.0), (2e6, 50.0)], 25.0, 0.0, None).images_needed)
    assert math.isinf(extrapolate([(1e6, 50.0), (2e6, 40.0)], 15.0, 17.6, None).images_needed)


@pytest.mark.parametrize("argv", [["--target", "25", "1e6:50"], ["--target", "25", "1e6:50", "2e6"],
                                  ["--target", "25", "--floor", "45", "1e6:50", "2e6:40"]])
def test_bad_points_get_a_clear_error(argv, capsys):
    with pytest.raises(SystemExit):
        main(argv)
    assert "error:" in capsys.readouterr().err
