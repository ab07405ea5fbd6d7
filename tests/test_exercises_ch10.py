"""Chapter 10's exercise check: a right answer passes (the closed form, and an independent
numerical integration of the slowness along the ray), typical mistakes are rejected with
their hint, and constants or echoes of the input cannot pass."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lossbook.exercises import ch10


def _right(distance, offset, radius, c_in, c_out):
    chord = 2 * math.sqrt(max(radius**2 - offset**2, 0.0))
    return (distance - chord) / c_out + chord / c_in


def _integrated(distance, offset, radius, c_in, c_out, n=400_001):
    """Midpoint-rule integral of 1/c along the ray, the disc centred on the ray's middle."""
    s = (np.arange(n) + 0.5) / n * distance - distance / 2
    inside = s**2 + offset**2 <= radius**2
    return float(np.where(inside, 1 / c_in, 1 / c_out).sum() * distance / n)


def test_right_answers_pass():
    assert "passed" in ch10.check_disc_travel_time(_right, seed=0)
    assert "passed" in ch10.check_disc_travel_time(_right)  # fresh cases


def test_the_reference_agrees_with_numerical_integration():
    """The closed form the check uses is the integral of the slowness (to the integration
    error, about one step of D / 400000 at each of the two boundary crossings)."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        d, r = 0.05 + 0.05 * rng.random(), 0.003 + 0.012 * rng.random()
        b, ci, co = 1.3 * r * rng.random(), 1400 + 250 * rng.random(), 1400 + 250 * rng.random()
        step = d / 400_001
        assert abs(_right(d, b, r, ci, co) - _integrated(d, b, r, ci, co)) \
            <= 2 * step * abs(1 / ci - 1 / co) + 1e-15


@pytest.mark.parametrize(("wrong", "message"), [
    (lambda d, b, r, ci, co: (d - math.sqrt(max(r * r - b * b, 0))) / co
     + math.sqrt(max(r * r - b * b, 0)) / ci, "half as long"),
    (lambda d, b, r, ci, co: d / co + 2 * math.sqrt(max(r * r - b * b, 0)) / ci,
     "without removing"),
    (lambda d, b, r, ci, co: d / ((2 * math.sqrt(max(r * r - b * b, 0)) * ci
                                  + (d - 2 * math.sqrt(max(r * r - b * b, 0))) * co) / d),
     "SLOWNESS"),
    (lambda d, b, r, ci, co: (d - 2 * r) / co + 2 * r / ci, "diameter"),
    (lambda d, b, r, ci, co: _right(d, b, r, co, ci), "swapped"),
    (lambda d, b, r, ci, co: _right(d, b, r, ci, co) * 1e6, "microseconds"),
    (lambda d, b, r, ci, co: (d - 2 * math.sqrt(r * r - b * b)) / co
     + 2 * math.sqrt(r * r - b * b) / ci if b < r else float("nan"), "chord is 0"),
])
def test_typical_mistakes_get_their_hint(wrong, message):
    with pytest.raises(AssertionError, match=message):
        ch10.check_disc_travel_time(wrong, seed=1)


@pytest.mark.parametrize("wrong", [
    lambda *a: 6.5e-5,  # a plausible constant
    lambda d, b, r, ci, co: d,  # echo of an input
    lambda d, b, r, ci, co: co,
    lambda *a: "fast",
])
def test_constants_and_echoes_fail(wrong):
    with pytest.raises(AssertionError):
        ch10.check_disc_travel_time(wrong, seed=2)
