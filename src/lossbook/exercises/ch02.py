"""Checks for Chapter 2 (SSIM from scratch): global SSIM by hand, and its gradient."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..losses import ssim
from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_global_ssim", "check_ssim_gradient"]


def _pair(gen: torch.Generator, side: int, data_range: float) -> tuple[torch.Tensor, ...]:
    y = torch.rand(1, 1, side, side, generator=gen, dtype=torch.float64) * data_range
    noise = float(torch.empty(1, dtype=torch.float64).uniform_(0.05, 0.3, generator=gen))
    x = (y + noise * data_range * torch.randn(y.shape, generator=gen, dtype=torch.float64))
    return x.clamp(0, data_range), y


def _global_ssim(x, y, data_range, *, ddof=0, c3_equal_c2=False, squared=True):
    """Global SSIM (one window covering the image) from the moments, float64."""
    n = x.numel()
    mx, my = x.mean(), y.mean()
    vx = ((x - mx) ** 2).sum() / (n - ddof)
    vy = ((y - my) ** 2).sum() / (n - ddof)
    cxy = ((x - mx) * (y - my)).sum() / (n - ddof)
    c1 = (0.01 * data_range) ** 2 if squared else 0.01 * data_range
    c2 = (0.03 * data_range) ** 2 if squared else 0.03 * data_range
    lum = (2 * mx * my + c1) / (mx**2 + my**2 + c1)
    if c3_equal_c2:  # three-term form with C3 = C2 instead of C2 / 2
        sx, sy = vx.sqrt(), vy.sqrt()
        return lum * (2 * sx * sy + c2) / (vx + vy + c2) * (cxy + c2) / (sx * sy + c2)
    return lum * (2 * cxy + c2) / (vx + vy + c2)


def check_global_ssim(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    r"""Check ``fn(x, y, data_range) -> float``: the SSIM of one window covering the image.

    With population moments over all pixels and :math:`C_3 = C_2/2`,

    .. math:: \mathrm{SSIM}(x, y) = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
              {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)},\quad
              C_1 = (0.01 L)^2,\ C_2 = (0.03 L)^2.

    ``x`` and ``y`` are float64 tensors ``(1, 1, n, n)`` with ``n`` odd and small (so that
    sample and population variances differ visibly); the reference is the package's
    ``ssim(..., window="uniform", win_size=n)``.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        side = 2 * int(torch.randint(2, 6, (1,), generator=gen)) + 1  # 5 .. 11, odd
        data_range = (1.0, 255.0)[case % 2]
        x, y = _pair(gen, side, data_range)
        want = float(ssim(x, y, data_range=data_range, window="uniform", win_size=side))
        got = as_float(fn(x.clone(), y.clone(), data_range), "the SSIM")
        if not close(got, want, rel=1e-6, abs_=1e-9):
            hint = diagnose(got, want, {
                "Use population moments (divide by n, unbiased=False), as Wang et al. do.":
                    float(_global_ssim(x, y, data_range, ddof=1)),
                "C3 = C2 / 2 merges contrast and structure into (2 s_xy + C2) / (s_x^2 + "
                "s_y^2 + C2); with C3 = C2 the three-term product is different.":
                    float(_global_ssim(x, y, data_range, c3_equal_c2=True)),
                "The constants are squared: C1 = (K1 L)^2 and C2 = (K2 L)^2.":
                    float(_global_ssim(x, y, data_range, squared=False)),
                "The constants scale with the data range: C1 = (0.01 L)^2, not 0.01^2.":
                    float(_global_ssim(x, y, 1.0)) if data_range != 1.0 else float("nan"),
            }, rel=1e-8)
            raise AssertionError(
                f"case {case}: {side}x{side} images, data_range={data_range}: expected "
                f"SSIM {want:.8f}, got {got:.8f}.{hint}"
            )
    return f"All {n_cases} global-SSIM checks passed."


def check_ssim_gradient(fn: Callable, *, n_cases: int = 4, seed: int | None = None) -> str:
    r"""Check ``fn(x, y, data_range) -> tensor``: :math:`\partial\,\mathrm{SSIM}/\partial x` of
    the global SSIM (as in :func:`check_global_ssim`), same shape as ``x``.

    With :math:`A_1 = 2\mu_x\mu_y + C_1`, :math:`A_2 = 2\sigma_{xy} + C_2`,
    :math:`B_1 = \mu_x^2 + \mu_y^2 + C_1`, :math:`B_2 = \sigma_x^2 + \sigma_y^2 + C_2` and
    :math:`n` pixels,

    .. math:: \frac{\partial\,\mathrm{SSIM}}{\partial x_i} = \frac{2}{n B_1 B_2}\Big[
              \mu_y A_2 + A_1 (y_i - \mu_y)
              - \mathrm{SSIM}\,\big(\mu_x B_2 + B_1 (x_i - \mu_x)\big)\Big]

    (the quotient rule with :math:`\partial\mu_x/\partial x_i = 1/n` and
    :math:`\partial\sigma_{xy}/\partial x_i = (y_i - \mu_y)/n`). The reference is autograd
    on the package's SSIM.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        side = 2 * int(torch.randint(2, 5, (1,), generator=gen)) + 1
        data_range = (1.0, 255.0)[case % 2]
        x, y = _pair(gen, side, data_range)
        xr = x.clone().requires_grad_(True)
        (want,) = torch.autograd.grad(
            ssim(xr, y, data_range=data_range, window="uniform", win_size=side), xr)
        got = fn(x.clone(), y.clone(), data_range)
        if not isinstance(got, torch.Tensor) or got.shape != x.shape:
            raise AssertionError(
                f"case {case}: return a tensor of the same shape as x, {tuple(x.shape)}; got "
                + (f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor)
                   else type(got).__name__) + "."
            )
        got = got.to(torch.float64)
        scale = float(want.abs().max())
        if not torch.allclose(got, want, rtol=1e-5, atol=1e-8 * max(scale, 1e-30)):
            hint = ""
            if torch.allclose(got, -want, rtol=1e-5, atol=1e-12):
                hint = " Your sign is flipped: that is the gradient of the loss 1 - SSIM."
            else:
                ratio = float((got * want).sum() / (want * want).sum())
                if abs(ratio - 1) > 1e-3 and torch.allclose(got, ratio * want, rtol=1e-4):
                    hint = (f" Your gradient is {ratio:.4g} times the right one: check the "
                            "1/n of the means and moments (d mu_x / d x_i = 1/n).")
            raise AssertionError(
                f"case {case}: {side}x{side} images, data_range={data_range}: your gradient "
                f"differs from autograd's by up to {float((got - want).abs().max()):.3e} (the "
                f"gradient's largest entry is {scale:.3e}).{hint}"
            )
    return f"All {n_cases} SSIM-gradient checks passed."
