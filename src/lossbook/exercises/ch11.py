"""Checks for Chapter 11 (evaluating quality): pooled PSNR and a paired bootstrap interval."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from .. import metrics, stats
from ._common import fresh_generator as _fresh_generator

__all__ = ["check_pooled_psnr", "check_bootstrap_interval"]


def _pooled_psnr(x: torch.Tensor, y: torch.Tensor, data_range: float) -> float:
    return metrics.psnr_from_mse(float(metrics.mse(x.double(), y.double())),
                                 data_range=data_range)


def check_pooled_psnr(fn: Callable, *, n_cases: int = 5, seed: int | None = None) -> str:
    """Check ``fn(x, y, data_range) -> float``: the PSNR of the MSE pooled over a batch.

    ``x`` and ``y`` are float64 tensors ``(N, 1, H, W)`` whose images have very
    different errors (so that the pooled PSNR and the mean of per-image PSNRs differ by
    a few dB). The answer must be :math:`10\\log_{10}(R^2 / \\overline{\\mathrm{MSE}})`
    with the MSE averaged over all pixels of all images.
    """
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        data_range = 1.0 if case % 2 == 0 else 255.0
        n = int(torch.randint(3, 7, (1,), generator=gen))
        y = torch.rand(n, 1, 16, 16, generator=gen, dtype=torch.float64) * data_range
        sigmas = torch.logspace(-2.5, -0.7, n, dtype=torch.float64)[torch.randperm(n,
                                                                                    generator=gen)]
        x = y + sigmas.view(n, 1, 1, 1) * data_range * torch.randn(y.shape, generator=gen,
                                                                    dtype=torch.float64)
        want = _pooled_psnr(x, y, data_range)
        got = float(fn(x.clone(), y.clone(), data_range))
        if math.isclose(got, want, rel_tol=0, abs_tol=1e-6):
            continue
        mean_of_psnr = float(metrics.psnr(x, y, data_range=data_range))
        hint = ""
        if math.isclose(got, mean_of_psnr, abs_tol=1e-4):
            hint = (" That is the mean of the per-image PSNRs; pool first: average the "
                    "squared errors over all images, then take 10 log10(R^2 / MSE). By "
                    "Jensen's inequality the pooled value is never larger.")
        elif math.isclose(abs(got - want), 20 * math.log10(255), abs_tol=1e-3):
            hint = " You are off by 20 log10(255) = 48.13 dB: check how you use data_range."
        elif math.isclose(got, want / 2, rel_tol=1e-6) or math.isclose(got, 2 * want,
                                                                        rel_tol=1e-6):
            hint = " You are off by a factor 2: 10 log10(R^2/MSE) = 20 log10(R/RMSE)."
        raise AssertionError(
            f"case {case}: {n} images of shape (1, 16, 16), data_range={data_range}: "
            f"expected {want:.6f} dB, got {got:.6f} dB.{hint}")
    return f"All {n_cases} pooled-PSNR checks passed."


def check_bootstrap_interval(fn: Callable, *, n_cases: int = 4,
                             seed: int | None = None) -> str:
    """Check ``fn(a, b, seed) -> (low, high)``: a 95 % interval for ``mean(a - b)``.

    ``a`` and ``b`` are NumPy arrays of per-image scores of two methods on the same
    images. Any sound 95 % interval for the mean paired difference passes (a paired
    percentile bootstrap, or Student's *t* on the differences): each end must lie
    within half a standard error of :func:`lossbook.stats.paired_bootstrap`'s.
    """
    gen = _fresh_generator(seed)
    rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
    for case in range(n_cases):
        n = int(rng.integers(20, 41))
        base = rng.normal(28.0, 3.0, size=n)  # image difficulty, shared by both methods
        # a true difference of 0.4-0.8 dB either way: never near zero, so an interval
        # centred on mean(b - a) is told apart from one centred on mean(a - b)
        shift = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.8)
        a = base + rng.normal(0.0, 0.3, size=n) + shift
        b = base + rng.normal(0.0, 0.3, size=n)
        ref = stats.paired_bootstrap(a, b, seed=0, n_resamples=20_000)
        try:
            low, high = (float(v) for v in fn(a.copy(), b.copy(), 0))
        except (TypeError, ValueError) as err:
            raise AssertionError(
                f"case {case}: fn must return two numbers (low, high); calling it raised or "
                f"returned something else ({err}).") from None
        se = ref["std"]
        if abs(low - ref["low"]) <= 0.5 * se and abs(high - ref["high"]) <= 0.5 * se:
            continue
        d = a - b
        hint = ""
        if low > high:
            hint = " Your low end is above your high end."
        elif (abs((low + high) / 2 + ref["mean"]) < 0.5 * se
              and abs((low + high) / 2 - ref["mean"]) > 2 * se):
            hint = " Your interval is centred on mean(b - a): the difference is a - b."
        elif (high - low) > 3 * (ref["high"] - ref["low"]):
            # which mistake does the width match better: the spread of the differences,
            # or the standard error of two independently resampled means?
            half = (high - low) / 2
            w_spread = 1.96 * d.std(ddof=1)
            w_unpaired = 1.96 * math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / n)
            if abs(math.log(half / w_spread)) < abs(math.log(half / w_unpaired)):
                hint = (" Your interval has the width of the differences' spread (±1.96 sd); "
                        "an interval for the MEAN uses its standard error, sd / sqrt(n).")
            else:
                hint = (" Your interval is far too wide: did you resample a and b "
                        "independently? Resample the images (the same indices for a and b), "
                        "so that each image's difficulty cancels in a - b.")
        elif (high - low) < 0.5 * (ref["high"] - ref["low"]):
            hint = " Your interval is far too narrow for a 95 % interval of the mean difference."
        raise AssertionError(
            f"case {case}: {n} paired scores, mean difference {ref['mean']:+.3f}: expected "
            f"about [{ref['low']:+.3f}, {ref['high']:+.3f}] (paired bootstrap), got "
            f"[{low:+.3f}, {high:+.3f}].{hint}")
    return f"All {n_cases} interval checks passed."
