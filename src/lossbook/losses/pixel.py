r"""Pixel-wise losses: MSE, MAE, Huber and Charbonnier.

Every loss compares a prediction ``x`` with a target ``y``, both of shape
``(N, C, H, W)``, pixel by pixel through the difference :math:`d = x - y`, and
averages a penalty :math:`\rho(d)` over channels and pixels:

.. math:: \mathcal{L}(x, y) = \frac{1}{CHW} \sum_{c,h,w} \rho(x_{chw} - y_{chw}).

``reduction="mean"`` (default) averages over the batch too and returns a scalar;
``reduction="none"`` returns one value per image, shape ``(N,)``.

Precision: float16 and bfloat16 inputs are computed (and returned) in float32, also under
``torch.autocast``, so a difference of 300 does not overflow float16's 65504 when
squared; float64 stays float64. Empty batches, NaN/Inf inputs and parameters that make
no sense (``eps=inf``, ``delta=nan``) raise ``ValueError``; a result that overflows
even float32 raises instead of returning ``inf``.

The penalties and their derivatives (what the gradient "sees"):

- MSE (L2): :math:`\rho(d) = d^2`, :math:`\rho'(d) = 2d`.
- MAE (L1): :math:`\rho(d) = |d|`, :math:`\rho'(d) = \operatorname{sign}(d)`.
- Huber (delta): :math:`\rho(d) = d^2/2` if :math:`|d| < \delta`, else
  :math:`\delta(|d| - \delta/2)`; :math:`\rho'(d) = \operatorname{clip}(d, -\delta, \delta)`.
- Charbonnier (eps): :math:`\rho(d) = \sqrt{d^2 + \varepsilon^2}`,
  :math:`\rho'(d) = d/\sqrt{d^2 + \varepsilon^2}`.

References
----------
P. J. Huber, "Robust estimation of a location parameter", Ann. Math. Statist. 35(1), 1964.
P. Charbonnier et al., "Two deterministic half-quadratic regularization algorithms for
computed imaging", ICIP 1994.
W.-S. Lai et al., "Deep Laplacian pyramid networks for fast and accurate super-resolution"
(LapSRN), CVPR 2017 -- uses Charbonnier with eps = 1e-3.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validate import (
    check_finite,
    check_finite_result,
    check_number,
    check_pair,
    check_reduction,
)

__all__ = ["mse", "mae", "huber", "smooth_l1", "charbonnier", "MSELoss", "L1Loss", "HuberLoss",
           "CharbonnierLoss"]


def _prepare(x: torch.Tensor, y: torch.Tensor, reduction: str) -> torch.Tensor:
    check_pair(x, y)
    check_reduction(reduction)
    check_finite(x, "x")
    check_finite(y, "y")
    if x.dtype in (torch.float16, torch.bfloat16):  # squares overflow float16 at 256
        x, y = x.float(), y.float()
    return x - y


def _reduce(per_pixel: torch.Tensor, reduction: str, name: str = "the loss") -> torch.Tensor:
    per_image = per_pixel.flatten(1).mean(dim=1)
    out = per_image.mean() if reduction == "mean" else per_image
    return check_finite_result(out, name)


def _check_positive(value: float, name: str, meaning: str) -> float:
    return check_number(value, name, positive=True, meaning=meaning)


def mse(x: torch.Tensor, y: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Mean squared error, :math:`\frac{1}{CHW}\sum (x - y)^2`.

    Parameters
    ----------
    x, y : torch.Tensor
        Prediction and target, floating point, shape ``(N, C, H, W)``.
    reduction : {"mean", "none"}
        ``"mean"``: a scalar averaged over the batch; ``"none"``: shape ``(N,)``.

    Returns
    -------
    torch.Tensor
        The loss. Equals ``torch.nn.functional.mse_loss(x, y)`` for ``"mean"``.

    Examples
    --------
    >>> x = torch.zeros(1, 1, 2, 2); y = torch.ones(1, 1, 2, 2)
    >>> float(mse(x, y))
    1.0
    """
    d = _prepare(x, y, reduction)
    return _reduce(d * d, reduction)


def mae(x: torch.Tensor, y: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    r"""Mean absolute error (L1), :math:`\frac{1}{CHW}\sum |x - y|`.

    Its gradient has the same size (1/number of pixels) for every wrong pixel, however small
    the error; at ``d = 0`` PyTorch uses the subgradient 0.

    Parameters and return value as :func:`mse`. Equals ``torch.nn.functional.l1_loss``.
    """
    d = _prepare(x, y, reduction)
    return _reduce(d.abs(), reduction)


def smooth_l1(
    x: torch.Tensor, y: torch.Tensor, *, beta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""PyTorch's SmoothL1: :math:`d^2/(2\beta)` if :math:`|d| < \beta`, else :math:`|d| - \beta/2`.

    Equals ``torch.nn.functional.smooth_l1_loss(x, y, beta=beta)``; ``huber(delta)`` is
    ``delta * smooth_l1(beta=delta)``.
    """
    beta = _check_positive(beta, "beta", "the width of the quadratic zone")
    d = _prepare(x, y, reduction)
    a = d.abs()
    per_pixel = torch.where(a < beta, 0.5 * d * d / beta, a - 0.5 * beta)
    return _reduce(per_pixel, reduction)


def huber(
    x: torch.Tensor, y: torch.Tensor, *, delta: float = 1.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""Huber loss: quadratic for small errors, linear for large ones.

    .. math::
        \rho_\delta(d) = \begin{cases} \tfrac12 d^2 & |d| < \delta \\
        \delta\,(|d| - \tfrac12\delta) & \text{otherwise} \end{cases}

    Parameters
    ----------
    x, y : torch.Tensor
        Prediction and target, shape ``(N, C, H, W)``.
    delta : float
        Where the penalty turns from quadratic to linear, in the images' units
        (for images in [0, 1], ``delta=0.1`` means 10 % of the range). Default 1.0, as in
        ``torch.nn.HuberLoss``, which for [0, 1] images is pure MSE/2.
    reduction : {"mean", "none"}

    Notes
    -----
    Equals ``torch.nn.functional.huber_loss(x, y, delta=delta)`` and
    ``delta * smooth_l1(x, y, beta=delta)``. The gradient is ``clip(d, -delta, delta)``.
    """
    delta = _check_positive(delta, "delta", "the error size where the penalty turns linear")
    d = _prepare(x, y, reduction)
    a = d.abs()
    per_pixel = torch.where(a < delta, 0.5 * d * d, delta * (a - 0.5 * delta))
    return _reduce(per_pixel, reduction)


def charbonnier(
    x: torch.Tensor, y: torch.Tensor, *, eps: float = 1e-3, reduction: str = "mean"
) -> torch.Tensor:
    r"""Charbonnier loss, a differentiable L1: :math:`\sqrt{d^2 + \varepsilon^2}`.

    Parameters
    ----------
    x, y : torch.Tensor
        Prediction and target, shape ``(N, C, H, W)``.
    eps : float
        Smoothing scale (default ``1e-3`` as in LapSRN). Errors much larger than ``eps`` are
        penalised like L1, much smaller ones like :math:`d^2/(2\varepsilon)`.
    reduction : {"mean", "none"}

    Notes
    -----
    Convention: ``eps`` is squared under the root, so the loss of a perfect prediction is
    exactly ``eps``. Many codes write ``sqrt(d**2 + eps)`` instead; their ``eps`` is our
    ``eps**2`` (e.g. their 1e-6 is our 1e-3).
    """
    eps = _check_positive(eps, "eps", "the smoothing scale; 1e-3 is the usual choice")
    d = _prepare(x, y, reduction)
    return _reduce(torch.sqrt(d * d + eps * eps), reduction)


class _PixelLoss(nn.Module):
    """Thin ``nn.Module`` wrapper: stores keyword arguments, calls the function."""

    fn = staticmethod(mse)

    def __init__(self, reduction: str = "mean", **kwargs: float) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return type(self).fn(x, y, reduction=self.reduction, **self.kwargs)

    def extra_repr(self) -> str:
        args = [f"{k}={v}" for k, v in self.kwargs.items()] + [f"reduction={self.reduction!r}"]
        return ", ".join(args)


class MSELoss(_PixelLoss):
    """Module form of :func:`mse`."""

    fn = staticmethod(mse)


class L1Loss(_PixelLoss):
    """Module form of :func:`mae`."""

    fn = staticmethod(mae)


class HuberLoss(_PixelLoss):
    """Module form of :func:`huber`; ``HuberLoss(delta=0.1)``."""

    fn = staticmethod(huber)

    def __init__(self, delta: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction, delta=delta)


class CharbonnierLoss(_PixelLoss):
    """Module form of :func:`charbonnier`; ``CharbonnierLoss(eps=1e-3)``."""

    fn = staticmethod(charbonnier)

    def __init__(self, eps: float = 1e-3, reduction: str = "mean") -> None:
        super().__init__(reduction, eps=eps)
