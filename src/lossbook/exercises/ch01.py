"""Checks for Chapter 1 (pixel losses): PSNR, and the best constant under MSE/MAE."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import metrics
from ._common import fresh_generator as _fresh_generator

__all__ = ["check_psnr", "check_best_constant"]


def check_psnr(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    """Check a student's ``fn(x, y, data_range) -> float`` PSNR in dB (Chapter 1).

    ``x`` and ``y`` are float64 tensors of shape ``(1, C, H, W)``. Cases cover images in
    [0, 1] and in [0, 255], and identical images (which must give ``inf``).
    """
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        data_range = 1.0 if case % 2 == 0 else 255.0
        shape = (1, int(torch.randint(1, 4, (1,), generator=gen)), 16, 20)
        y = torch.rand(shape, generator=gen, dtype=torch.float64) * data_range
        noise = float(torch.empty(1).uniform_(0.01, 0.2, generator=gen)) * data_range
        x = y + noise * torch.randn(shape, generator=gen, dtype=torch.float64)
        want = float(metrics.psnr(x, y, data_range=data_range))
        got = float(fn(x, y, data_range))
        if not math.isclose(got, want, rel_tol=0, abs_tol=1e-6):
            hint = ""
            if math.isclose(got - want, 20 * math.log10(255), abs_tol=1e-3) or math.isclose(
                want - got, 20 * math.log10(255), abs_tol=1e-3
            ):
                hint = " You are off by 20 log10(255) = 48.13 dB: check how you use data_range."
            elif math.isclose(got, want / 2, rel_tol=1e-6) or math.isclose(got, 2 * want,
                                                                            rel_tol=1e-6):
                hint = " You are off by a factor 2: 10 log10(R^2/MSE) = 20 log10(R/RMSE)."
            raise AssertionError(
                f"case {case}: data_range={data_range}, images of shape {shape}: expected "
                f"{want:.6f} dB, got {got:.6f} dB.{hint}"
            )
    same = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    got = float(fn(same, same, 1.0))
    if got != math.inf:
        raise AssertionError(f"identical images must give inf dB (MSE = 0); got {got}.")
    return f"All {n_cases + 1} PSNR checks passed."


def check_best_constant(fn: Callable, loss: str, *, seed: int | None = None) -> str:
    """Check ``fn(samples) -> c``, the constant minimising a loss over 1-D samples (Chapter 1).

    ``loss`` is ``"mse"`` (the answer is the mean) or ``"mae"`` (the median; for an even
    number of samples any value between the two middle ones is optimal).
    """
    if loss not in ("mse", "mae"):
        raise ValueError(f"loss must be 'mse' or 'mae'; got {loss!r}.")
    gen = _fresh_generator(seed)
    for case in range(5):
        n = 2 * int(torch.randint(5, 50, (1,), generator=gen)) + 1  # odd: unique median
        samples = torch.empty(n, dtype=torch.float64).exponential_(1.0, generator=gen)
        c = float(fn(samples.clone()))
        cost = {"mse": lambda v, s=samples: float(((s - v) ** 2).mean()),
                "mae": lambda v, s=samples: float((s - v).abs().mean())}[loss]
        best = float(samples.mean()) if loss == "mse" else float(samples.median())
        if cost(c) > cost(best) * (1 + 1e-4):  # allows a fine grid search (20001 points)
            raise AssertionError(
                f"case {case}: {n} skewed (exponential) samples; your constant {c:.4f} has "
                f"{loss.upper()} {cost(c):.6f}, but {best:.4f} achieves {cost(best):.6f}. "
                + ("The MSE-optimal constant is the mean." if loss == "mse"
                   else "The MAE-optimal constant is the median, not the mean.")
            )
    return f"All 5 {loss.upper()} checks passed."
