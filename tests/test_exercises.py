"""The exercise checkers accept right answers and reject wrong ones with useful feedback."""

from __future__ import annotations

import math

import pytest
import torch

from lossbook import exercises


def good_psnr(x, y, data_range):
    mse = float(((x - y) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(data_range**2 / mse)


def test_check_psnr_accepts_a_correct_answer():
    assert "passed" in exercises.check_psnr(good_psnr)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (lambda x, y, L: good_psnr(x, y, 1.0), "48.13 dB"),
        (lambda x, y, L: good_psnr(x, y, L) / 2, "factor 2"),
        (lambda x, y, L: 30.0, "expected"),
        (lambda x, y, L: 99.0 if torch.equal(x, y) else good_psnr(x, y, L), "identical"),
    ],
)
def test_check_psnr_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_psnr(wrong)


def test_check_best_constant():
    assert "passed" in exercises.check_best_constant(lambda s: s.mean(), "mse")
    assert "passed" in exercises.check_best_constant(lambda s: s.median(), "mae")
    with pytest.raises(AssertionError, match="median, not the mean"):
        exercises.check_best_constant(lambda s: s.mean(), "mae")
    with pytest.raises(AssertionError, match="is the mean"):
        exercises.check_best_constant(lambda s: s.median(), "mse")
    with pytest.raises(ValueError, match="'mse' or 'mae'"):
        exercises.check_best_constant(lambda s: s.mean(), "huber")


def test_checks_use_fresh_cases():
    """A hard-coded answer that fits one seed fails on another."""
    seen = []
    exercises.check_psnr(lambda x, y, L: seen.append(float(x.sum())) or good_psnr(x, y, L),
                         seed=1)
    first = list(seen)
    seen.clear()
    exercises.check_psnr(lambda x, y, L: seen.append(float(x.sum())) or good_psnr(x, y, L),
                         seed=2)
    assert first != seen
