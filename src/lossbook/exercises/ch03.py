"""Checks for Chapter 3 (MS-SSIM and mixed losses): gradient balance, Kendall's minimiser."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..losses import mse, ssim
from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_balance_weight", "check_uncertainty_minimiser"]


def _gradient_norms(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float, float,
                                                                        float]:
    p = pred.clone().requires_grad_(True)
    l_mse = mse(p, target)
    (g_mse,) = torch.autograd.grad(l_mse, p)
    p = pred.clone().requires_grad_(True)
    l_ssim = 1 - ssim(p, target)
    (g_ssim,) = torch.autograd.grad(l_ssim, p)
    return (float(g_mse.norm()), float(g_ssim.norm()), float(l_mse.detach()),
            float(l_ssim.detach()))


def check_balance_weight(fn: Callable, *, n_cases: int = 4, seed: int | None = None) -> str:
    r"""Check ``fn(pred, target) -> alpha``: the weight in
    :math:`(1-\alpha)\,\mathrm{MSE} + \alpha\,(1-\mathrm{SSIM})` at which both terms push
    the prediction with gradients of equal norm,

    .. math:: (1-\alpha)\,\lVert\nabla_x \mathrm{MSE}\rVert =
              \alpha\,\lVert\nabla_x (1-\mathrm{SSIM})\rVert
              \;\Rightarrow\; \alpha = \frac{\lVert g_\mathrm{MSE}\rVert}
              {\lVert g_\mathrm{MSE}\rVert + \lVert g_\mathrm{SSIM}\rVert}.

    ``pred`` and ``target`` are float64 ``(1, 1, 32, 32)`` images in [0, 1] (SSIM with the
    package's defaults: 11x11 Gaussian window, ``data_range=1``).
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        target = torch.rand(1, 1, 32, 32, generator=gen, dtype=torch.float64)
        sigma = float(torch.empty(1, dtype=torch.float64).uniform_(0.02, 0.2, generator=gen))
        pred = (target + sigma * torch.randn(target.shape, generator=gen,
                                             dtype=torch.float64)).clamp(0, 1)
        gm, gs, lm, ls = _gradient_norms(pred, target)
        want = gm / (gm + gs)
        got = as_float(fn(pred.clone(), target.clone()), "alpha")
        if not close(got, want, rel=1e-4):
            hint = diagnose(got, want, {
                "You balanced the loss VALUES; Chapter 3 balances the GRADIENTS, which is "
                "what the optimiser sees.": lm / (lm + ls),
                "You found the weight of the MSE term; alpha weights (1 - SSIM).":
                    gs / (gm + gs),
                "alpha is a share: ||g_MSE|| / (||g_MSE|| + ||g_SSIM||), not a ratio of the "
                "two norms.": gm / gs,
            }, rel=1e-3)
            raise AssertionError(
                f"case {case}: noise sigma {sigma:.3f}: expected alpha {want:.6f}, got "
                f"{got:.6f}.{hint}"
            )
    return f"All {n_cases} gradient-balance checks passed."


def check_uncertainty_minimiser(fn: Callable, *, n_cases: int = 6,
                                seed: int | None = None) -> str:
    r"""Check ``fn(loss_value) -> s_star``: the minimiser of Kendall et al.'s weighting of
    one regression term with :math:`s = \log\sigma^2`,

    .. math:: \min_s\ \tfrac12 e^{-s} L + \tfrac12 s
              \;\Rightarrow\; s^* = \ln L

    (the common form :math:`e^{-s}L + s` is twice it and has the same minimiser).
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        loss_value = float(10 ** torch.empty(1).uniform_(-4, 1, generator=gen))
        want = math.log(loss_value)
        got = as_float(fn(loss_value), "s*")
        if not close(got, want, rel=1e-6, abs_=1e-6):
            hint = diagnose(got, want, {
                "s is a LOG-variance: at the optimum exp(s) = L, so s* = ln L.": loss_value,
                "s = log sigma^2, so s* = ln L; ln(L)/2 is log sigma.": 0.5 * want,
                "Check the sign: the term 0.5 exp(-s) L falls as s grows, the term 0.5 s "
                "rises; they balance at exp(-s) L = 1.": -want,
                "exp(-s*) = 1/L is the WEIGHT at the optimum; the question asks for s*.":
                    1 / loss_value,
            }, rel=1e-4)
            raise AssertionError(
                f"case {case}: L = {loss_value:.5g}: expected s* = {want:.6f}, got "
                f"{got:.6f}.{hint}"
            )
    return f"All {n_cases} uncertainty-weighting checks passed."
