"""Checks for Chapter 7 (denoising losses): two ways to average PSNR, a sign test."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from scipy import stats as _scipy_stats

from .. import metrics
from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_psnr_averages", "check_sign_test"]


def check_psnr_averages(fn: Callable, *, n_cases: int = 5, seed: int | None = None) -> str:
    r"""Check ``fn(outputs, targets, data_range) -> (mean_of_psnr, pooled_psnr)``:

    .. math:: \frac1N\sum_i 10\log_{10}\frac{R^2}{\mathrm{MSE}_i} \quad\text{and}\quad
              10\log_{10}\frac{R^2}{\frac1N\sum_i \mathrm{MSE}_i}

    for ``N`` images ``(N, C, H, W)`` whose errors differ a lot (so the two differ).
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        n = int(torch.randint(3, 7, (1,), generator=gen))
        data_range = (1.0, 255.0)[case % 2]
        targets = torch.rand(n, 1, 16, 16, generator=gen, dtype=torch.float64) * data_range
        sigmas = 10 ** torch.empty(n, 1, 1, 1, dtype=torch.float64).uniform_(-3, -0.5,
                                                                             generator=gen)
        outputs = targets + sigmas * data_range * torch.randn(targets.shape, generator=gen,
                                                              dtype=torch.float64)
        per = metrics.psnr(outputs, targets, data_range=data_range, reduction="none")
        want_mean = float(per.mean())
        want_pooled = 10 * math.log10(data_range**2 / float(metrics.mse(outputs, targets)))
        out = fn(outputs.clone(), targets.clone(), data_range)
        try:
            got_mean, got_pooled = (as_float(v, "each value") for v in out)
        except (TypeError, ValueError):
            raise AssertionError(
                f"return two numbers (mean_of_psnr, pooled_psnr); got {out!r}.") from None
        if not (close(got_mean, want_mean, rel=1e-7) and close(got_pooled, want_pooled,
                                                                rel=1e-7)):
            hint = ""
            if close(got_mean, want_pooled, rel=1e-7) and close(got_pooled, want_mean,
                                                                rel=1e-7):
                hint = " The two are swapped."
            elif close(got_mean, got_pooled, rel=1e-9):
                hint = (" Your two values are equal: one averages the per-image PSNRs, the "
                        "other converts the average MSE to dB.")
            else:
                hint = diagnose(got_pooled, want_pooled, {
                    "PSNR = 10 log10(R^2 / MSE): the data range is squared.":
                        10 * float(torch.log10(torch.tensor(data_range
                                                            / float(metrics.mse(outputs,
                                                                                targets))))),
                })
            raise AssertionError(
                f"case {case}: {n} images, data_range={data_range}: expected mean of PSNR "
                f"{want_mean:.5f} dB and pooled {want_pooled:.5f} dB, got {got_mean:.5f} and "
                f"{got_pooled:.5f}.{hint}"
            )
    return f"All {n_cases} PSNR-averaging checks passed (the pooled one is never larger)."


def check_sign_test(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    r"""Check ``fn(differences) -> p``: the two-sided sign-test p-value of paired
    differences (e.g. L1-minus-L2 PSNR per test image), zeros dropped:

    .. math:: p = \min\Big(1,\ 2\sum_{k \le \min(n_+, n_-)} \binom{n}{k} 2^{-n}\Big),
              \quad n = n_+ + n_-.

    The reference is ``scipy.stats.binomtest(n_plus, n, 0.5).pvalue``.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        n = int(torch.randint(4, 25, (1,), generator=gen))
        shift = float(torch.empty(1).uniform_(-1, 1, generator=gen))
        diffs = (torch.randn(n, generator=gen, dtype=torch.float64) + shift).round(decimals=1)
        diffs[0] = 0.0  # a tie, to be dropped
        plus, minus = int((diffs > 0).sum()), int((diffs < 0).sum())
        want = float(_scipy_stats.binomtest(plus, plus + minus, 0.5).pvalue)
        got = as_float(fn(diffs.clone().numpy()), "the p-value")
        if not close(got, want, rel=1e-6, abs_=1e-12):
            one_sided = float(_scipy_stats.binomtest(plus, plus + minus, 0.5,
                                                     alternative="greater").pvalue)
            other_side = float(_scipy_stats.binomtest(plus, plus + minus, 0.5,
                                                      alternative="less").pvalue)
            with_ties = float(_scipy_stats.binomtest(plus, n, 0.5).pvalue)
            hint = diagnose(got, want, {
                "That is a one-sided p-value; the question is two-sided (either loss could "
                "be better).": one_sided,
                "That is a one-sided p-value (the other side); the test is two-sided.":
                    other_side,
                "Drop the zero differences (ties) before counting.": with_ties,
            })
            raise AssertionError(
                f"case {case}: {plus} positive, {minus} negative, {n - plus - minus} zero "
                f"differences: expected p = {want:.6g}, got {got:.6g}.{hint}"
            )
    return f"All {n_cases} sign-test checks passed."
