"""Chapter 11's exercise checks accept right answers and reject wrong ones helpfully."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lossbook import exercises, stats


def pooled(x, y, data_range):
    return 10 * math.log10(data_range**2 / float(((x - y) ** 2).mean()))


def mean_of_psnr(x, y, data_range):
    mse = ((x - y) ** 2).flatten(1).mean(dim=1)
    return float((10 * torch.log10(data_range**2 / mse)).mean())


def test_check_pooled_psnr_accepts_the_right_answer():
    assert "passed" in exercises.check_pooled_psnr(pooled)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (mean_of_psnr, "mean of the per-image PSNRs"),
        (lambda x, y, L: pooled(x, y, 1.0), "48.13 dB"),
        (lambda x, y, L: pooled(x, y, L) / 2, "factor 2"),
        (lambda x, y, L: 30.0, "expected"),  # a constant
        (lambda x, y, L: float(x.mean()), "expected"),  # an echo of the input
    ],
)
def test_check_pooled_psnr_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_pooled_psnr(wrong)


def paired(a, b, seed):
    r = stats.paired_bootstrap(a, b, seed=seed)
    return r["low"], r["high"]


def t_interval(a, b, seed):
    r = stats.mean_ci(a - b)
    return r["low"], r["high"]


def unpaired(a, b, seed):
    rng = np.random.default_rng(seed)
    ia = rng.integers(0, a.size, size=(5000, a.size))
    ib = rng.integers(0, b.size, size=(5000, b.size))
    boot = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    return tuple(np.quantile(boot, [0.025, 0.975]))


def spread(a, b, seed):
    d = a - b
    return d.mean() - 1.96 * d.std(ddof=1), d.mean() + 1.96 * d.std(ddof=1)


def test_check_bootstrap_interval_accepts_sound_intervals():
    assert "passed" in exercises.check_bootstrap_interval(paired)
    assert "passed" in exercises.check_bootstrap_interval(t_interval)


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (unpaired, "resample a and b"),
        (spread, "sd / sqrt"),
        (lambda a, b, s: paired(b, a, s), "mean\\(b - a\\)"),
        (lambda a, b, s: (0.0, 1.0), "expected about"),  # a constant
        (lambda a, b, s: (a.min(), a.max()), "expected about"),  # an echo of the input
        (lambda a, b, s: 0.5, "two numbers"),
    ],
)
def test_check_bootstrap_interval_rejects_wrong_answers(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_bootstrap_interval(wrong)
