"""Checks for Chapter 6 (SAR speckle): log-speckle moments in dB, the ENL of a region."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import sar
from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_log_speckle_db", "check_enl"]


def check_log_speckle_db(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    r"""Check ``fn(looks) -> (mean_db, std_db)``: mean and standard deviation of
    :math:`10\log_{10} s` for :math:`L`-look intensity speckle :math:`s \sim
    \Gamma(L, 1/L)`:

    .. math:: \mathbb E[10\log_{10}s] = \tfrac{10}{\ln 10}\,(\psi(L) - \ln L), \qquad
              \mathrm{sd}[10\log_{10}s] = \tfrac{10}{\ln 10}\sqrt{\psi'(L)}

    (Xie, Pierce & Ulaby 2002). The reference is ``sar.log_speckle_mean/var(db=True)``.
    """
    gen = fresh_generator(seed)
    k = 10 / math.log(10)
    for case in range(n_cases):
        looks = float(torch.randint(1, 17, (1,), generator=gen))
        if case % 2:
            looks += float(torch.rand(1, generator=gen))  # non-integer looks (multilooked)
        mean = sar.log_speckle_mean(looks, db=True)
        sd = math.sqrt(sar.log_speckle_var(looks, db=True))
        out = fn(looks)
        try:
            got_mean, got_sd = (as_float(v, "each value") for v in out)
        except (TypeError, ValueError):
            raise AssertionError(f"return two numbers (mean_db, std_db); got {out!r}.") from None
        if not (close(got_mean, mean, rel=1e-6, abs_=1e-9) and close(got_sd, sd, rel=1e-6)):
            hint = diagnose(got_mean, mean, {
                "That is in nepers (natural log); multiply by 10 / ln 10 for dB.": mean / k,
                "Intensity speckle: 10 log10, not 20 log10 (that is for amplitudes).":
                    2 * mean,
                "The mean of log s is psi(L) - ln L, not -ln L... check the digamma term.":
                    -k * math.log(looks),
            })
            hint += diagnose(got_sd, sd, {
                "The second value is the standard deviation: the square root of "
                "(10/ln 10)^2 psi'(L).": sd**2,
                "Convert the standard deviation to dB too (times 10 / ln 10).": sd / k,
                "Intensity speckle: 10 log10, not 20 log10.": 2 * sd,
            })
            raise AssertionError(
                f"case {case}: L = {looks:g}: expected mean {mean:.6f} dB and std {sd:.6f} dB, "
                f"got {got_mean:.6f} and {got_sd:.6f}.{hint}"
            )
    return f"All {n_cases} log-speckle checks passed."


def check_enl(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    r"""Check ``fn(values) -> enl``: the equivalent number of looks of a homogeneous region,

    .. math:: \mathrm{ENL} = \frac{\mu^2}{\sigma^2}

    with the unbiased sample variance (divide by :math:`n - 1`), as the package's
    ``sar.enl`` estimates it from a region. ``values`` is a 1-D float64 tensor of
    intensities of a SMALL region (tens of pixels), so the choice of variance shows.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        n = int(torch.randint(12, 40, (1,), generator=gen))
        looks = float(torch.randint(1, 9, (1,), generator=gen))
        level = float(torch.empty(1).uniform_(0.1, 10, generator=gen))
        values = level * sar.gamma_speckle((n,), looks, gen, dtype=torch.float64)
        want = float(sar.enl(values.reshape(1, 1, 1, n)))
        got = as_float(fn(values.clone()), "the ENL")
        if not close(got, want, rel=1e-6):
            mu = float(values.mean())
            hint = diagnose(got, want, {
                "Estimate the variance of the region with the unbiased sample variance "
                "(divide by n - 1), as sar.enl does.": mu**2 / float(values.var(unbiased=False)),
                "ENL divides by the VARIANCE, not the standard deviation.":
                    mu**2 / float(values.std()),
                "ENL is mean^2 / variance: the mean is squared.": mu / float(values.var()),
                "ENL is mean^2 / variance, not its inverse (the squared coefficient of "
                "variation).": float(values.var()) / mu**2,
            })
            raise AssertionError(
                f"case {case}: {n} intensities of {looks:g}-look speckle: expected ENL "
                f"{want:.6f}, got {got:.6f}.{hint}"
            )
    return f"All {n_cases} ENL checks passed."
