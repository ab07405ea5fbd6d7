"""Checks for Chapter 4 (optimising images): the one-step learning rate, the luminance term."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..losses import ssim_components
from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_one_step_lr", "check_luminance"]


def check_one_step_lr(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    r"""Check ``fn(n_pixels) -> lr``: the learning rate at which ONE step of plain gradient
    descent on :math:`\mathrm{MSE}(x, y) = \frac1n\sum_i (x_i - y_i)^2` lands on ``y``:

    .. math:: x - \eta\,\tfrac{2}{n}(x - y) = y \;\Rightarrow\; \eta = n/2.

    The answer is also verified by taking the step on random images of ``n_pixels``.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        side = int(torch.randint(4, 40, (1,), generator=gen))
        n = side * side
        got = as_float(fn(n), "the learning rate")
        want = n / 2
        x = torch.rand(1, 1, side, side, generator=gen, dtype=torch.float64)
        y = torch.rand(1, 1, side, side, generator=gen, dtype=torch.float64)
        step = x - got * 2 * (x - y) / n
        if not close(got, want, rel=1e-9) or float((step - y).abs().max()) > 1e-9:
            hint = diagnose(got, want, {
                "The gradient of the MEAN squared error carries a factor 2/n: the step is "
                "lr * 2 (x - y) / n, so lr = n / 2 (you have lr = n).": float(n),
                "The MSE is a mean over n pixels, so its gradient is 2 (x - y) / n: lr "
                "must grow with the number of pixels (you have lr = 1/2).": 0.5,
                "lr * 2/n must be 1, not 2/n itself.": 2 / n,
            })
            raise AssertionError(
                f"case {case}: n = {n} pixels: expected lr = {want:g}, got {got:g}; one step "
                f"with it leaves a largest error of {float((step - y).abs().max()):.3g}.{hint}"
            )
    return f"All {n_cases} one-step checks passed."


def check_luminance(fn: Callable, *, n_cases: int = 8, seed: int | None = None) -> str:
    r"""Check ``fn(mu_x, mu_y, data_range) -> l``: SSIM's luminance term

    .. math:: l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \qquad C_1 = (0.01 L)^2,

    on means that include small ones (where :math:`C_1` matters). The reference is the
    package's ``ssim_components`` on flat images of those means.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        data_range = (1.0, 255.0)[case % 2]
        scale = 0.02 if case % 4 < 2 else 1.0  # small means: C1 is not negligible
        # the smaller mean is 20-80 % of the larger (in random order): nearly equal means
        # give l ~ 1 for any formula, a case that could neither test an answer nor name
        # its mistake
        u = torch.rand(3, generator=gen, dtype=torch.float64).tolist()
        mx = (0.2 + 0.8 * u[0]) * scale * data_range
        my = mx * (0.2 + 0.6 * u[1])
        if u[2] < 0.5:
            mx, my = my, mx
        flat = torch.ones(1, 1, 11, 11, dtype=torch.float64)
        want = float(ssim_components(mx * flat, my * flat, data_range=data_range).luminance
                     .mean())
        got = as_float(fn(mx, my, data_range), "the luminance term")
        if not close(got, want, rel=1e-6, abs_=1e-9):
            c1 = (0.01 * data_range) ** 2
            hint = diagnose(got, want, {
                "C1 = (K1 L)^2 is squared.": (2 * mx * my + 0.01 * data_range)
                / (mx**2 + my**2 + 0.01 * data_range),
                "C1 = (0.01 L)^2 scales with the data range.": (2 * mx * my + 1e-4)
                / (mx**2 + my**2 + 1e-4),
                "Keep C1: without it the term is unstable for dark images.":
                    2 * mx * my / (mx**2 + my**2),
                "The numerator has 2 mu_x mu_y.": (mx * my + c1) / (mx**2 + my**2 + c1),
            })
            raise AssertionError(
                f"case {case}: mu_x={mx:.5g}, mu_y={my:.5g}, data_range={data_range}: "
                f"expected {want:.8f}, got {got:.8f}.{hint}"
            )
    return f"All {n_cases} luminance checks passed."
