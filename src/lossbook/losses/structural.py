r"""Structural similarity: SSIM and multi-scale SSIM, as metrics and as losses.

SSIM (Wang, Bovik, Sheikh and Simoncelli 2004) compares two images window by window
through three local statistics: the means :math:`\mu_x, \mu_y`, the standard deviations
:math:`\sigma_x, \sigma_y` and the covariance :math:`\sigma_{xy}`, all weighted by a
normalised window :math:`w` (an 11x11 Gaussian with :math:`\sigma = 1.5` by default):

.. math::

    l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \qquad
    c = \frac{2\sigma_x\sigma_y + C_2}{\sigma_x^2 + \sigma_y^2 + C_2}, \qquad
    s = \frac{\sigma_{xy} + C_3}{\sigma_x\sigma_y + C_3},

with :math:`C_1 = (K_1 L)^2`, :math:`C_2 = (K_2 L)^2`, :math:`C_3 = C_2/2`, :math:`L` the
data range, :math:`K_1 = 0.01`, :math:`K_2 = 0.03`. With :math:`C_3 = C_2/2` the product
simplifies to

.. math::

    \mathrm{SSIM} = l\,c\,s = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                                   {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}.

The statistics are computed with convolutions (population, not sample, moments):
:math:`\mu_x = w * x`, :math:`\sigma_x^2 = w * x^2 - \mu_x^2`,
:math:`\sigma_{xy} = w * (xy) - \mu_x\mu_y`, "valid" filtering (no padding), so the SSIM
map is ``(H - win_size + 1) x (W - win_size + 1)``; the image's SSIM is the mean of the
map, averaged over channels. Variances computed this way can come out slightly negative
by rounding and are clamped at 0.

Implementation: the five maps :math:`x, y, x^2, y^2, xy` are stacked into one
``(N, 5C, H, W)`` tensor and blurred by a single separable convolution (a 1-D kernel along
H, then along W), instead of five separate blurs. The statistics are computed in float32
(or float64 when the inputs are float64), also under ``torch.autocast``. The window is
cached per size, sigma, device and dtype.

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE Trans. Image Process. 13(4), 600-612, 2004.
Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multiscale structural similarity for image
quality assessment", Proc. 37th Asilomar Conf. Signals, Systems and Computers, 2003.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_data_range, check_finite, check_pair, check_reduction

__all__ = [
    "MS_SSIM_WEIGHTS",
    "SSIMComponents",
    "gaussian_window",
    "ssim_components",
    "ssim",
    "ms_ssim",
    "SSIMLoss",
    "MSSSIMLoss",
]

#: The five scale weights of Wang, Simoncelli and Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

_WINDOWS = ("gaussian", "uniform")


class SSIMComponents(NamedTuple):
    """The maps of :func:`ssim_components`, each of shape ``(N, C, H - k + 1, W - k + 1)``."""

    luminance: torch.Tensor
    contrast: torch.Tensor
    structure: torch.Tensor
    ssim: torch.Tensor


# --------------------------------------------------------------------------- validation


def _check_window_args(win_size: object, sigma: object, window: object = "gaussian") -> int:
    if window not in _WINDOWS:
        raise ValueError(
            f"window must be 'gaussian' (Wang et al.'s 11x11, sigma 1.5) or 'uniform' (a box "
            f"of win_size x win_size); got {window!r}."
        )
    if isinstance(win_size, bool) or not isinstance(win_size, int) or win_size < 1:
        raise ValueError(f"win_size must be a positive odd integer (e.g. 11); got {win_size!r}.")
    if win_size % 2 == 0:
        raise ValueError(
            f"win_size must be odd so that the window has a centre pixel; got {win_size}. "
            f"Use {win_size - 1} or {win_size + 1}."
        )
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma must be a positive number (e.g. 1.5); got {sigma!r}.")
    return win_size


def _check_k(k1: object, k2: object) -> None:
    for name, k in (("k1", k1), ("k2", k2)):
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not k > 0:
            raise ValueError(
                f"{name} must be a positive number (Wang et al. use k1=0.01, k2=0.03); "
                f"got {k!r}."
            )


class _ImageTooSmallError(ValueError):
    """The images are smaller than the window (or the MS-SSIM pyramid) needs."""


def _check_inputs(x: torch.Tensor, y: torch.Tensor, min_side: int, what: str) -> None:
    check_pair(x, y)
    check_finite(x, "x")
    check_finite(y, "y")
    h, w = x.shape[-2:]
    if min(h, w) < min_side:
        raise _ImageTooSmallError(f"{what}; got images of {h}x{w}.")


# ------------------------------------------------------------------------------ windows


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""The normalised 1-D Gaussian window :math:`g_i \propto \exp(-i^2 / 2\sigma^2)`.

    The 2-D window of SSIM is the outer product :math:`g g^T` (separable).

    Parameters
    ----------
    size : int
        Number of taps, odd (default 11); the taps sit at :math:`i = -(size-1)/2, \ldots,
        (size-1)/2`.
    sigma : float
        Standard deviation in pixels (default 1.5).
    dtype, device
        Of the returned tensor (default float32 on the CPU).

    Returns
    -------
    torch.Tensor
        Shape ``(size,)``, positive, summing to 1.

    Notes
    -----
    Equals pytorch-msssim's ``_fspecial_gauss_1d(size, sigma)`` and the kernel of
    ``scipy.ndimage.gaussian_filter(..., sigma=1.5, truncate=3.5)`` (radius
    ``int(3.5 * 1.5 + 0.5) = 5``, so 11 taps), which scikit-image uses.

    Examples
    --------
    >>> g = gaussian_window(11, 1.5)
    >>> g.shape, round(float(g.sum()), 6)
    (torch.Size([11]), 1.0)
    """
    _check_window_args(size, sigma)
    i = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(i**2) / (2.0 * float(sigma) ** 2))
    return (g / g.sum()).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _window(
    kind: str, size: int, sigma: float, device: torch.device, dtype: torch.dtype
) -> torch.Tensor:
    """The 1-D window, cached per (kind, size, sigma, device, dtype); never modify it."""
    if kind == "uniform":
        return torch.full((size,), 1.0 / size, dtype=dtype, device=device)
    return gaussian_window(size, sigma, dtype=dtype, device=device)


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


# ------------------------------------------------------------------------------- core


def _blur(stacked: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of every channel of ``stacked`` (N, K, H, W) by ``win``.

    One depthwise (grouped) convolution along H, then one along W, over all ``K`` channels
    at once.
    """
    k, t = stacked.shape[1], win.numel()
    out = F.conv2d(stacked, win.view(1, 1, t, 1).expand(k, 1, t, 1), groups=k)
    return F.conv2d(out, win.view(1, 1, 1, t).expand(k, 1, 1, t), groups=k)


def _blur_adjoint(g: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_blur`: 'full' filtering from (N, K, H', W') back to (N, K, H, W).

    A zero-padded convolution with the flipped window (faster on the CPU than
    ``conv_transpose2d``), computed channels-last like the forward blur.
    """
    k, t = g.shape[1], win.numel()
    w = win.flip(0)
    g = g.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(g, w.view(1, 1, 1, t).expand(k, 1, 1, t), groups=k, padding=(0, t - 1))
    out = F.conv2d(out, w.view(1, 1, t, 1).expand(k, 1, t, 1), groups=k, padding=(t - 1, 0))
    return out.contiguous()


def _raw_moments(
    x: torch.Tensor, y: torch.Tensor, win: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local means, variances (not yet clamped) and covariance, each (N, C, H', W').

    The five maps are stacked channels-last, as ``(N, H, W, 5C)`` memory viewed as an
    ``(N, 5C, H, W)`` tensor: PyTorch's CPU depthwise convolution is about twice as fast
    in that layout.
    """
    c = x.shape[1]
    xl, yl = x.permute(0, 2, 3, 1), y.permute(0, 2, 3, 1)
    stacked = torch.cat([xl, yl, xl * xl, yl * yl, xl * yl], dim=3).permute(0, 3, 1, 2)
    stats = _blur(stacked, win).contiguous()  # back to (N, 5C, H', W') for fast maths
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    return mu_x, mu_y, e_xx - mu_x * mu_x, e_yy - mu_y * mu_y, e_xy - mu_x * mu_y


def _moments(
    x: torch.Tensor, y: torch.Tensor, win: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local means, variances (clamped at 0) and covariance, each (N, C, H', W')."""
    mu_x, mu_y, var_x, var_y, cov = _raw_moments(x, y, win)
    return mu_x, mu_y, var_x.clamp_min(0), var_y.clamp_min(0), cov


class _SSIMMeans(torch.autograd.Function):
    r"""Per-channel means of the SSIM map and of the cs map, with a hand-written backward.

    Forward: the statistics from one blur of the five stacked maps. Backward: with
    :math:`s = A_1 A_2 / (B_1 B_2)`, :math:`A_1 = 2\mu_x\mu_y + C_1`,
    :math:`B_1 = \mu_x^2 + \mu_y^2 + C_1`, :math:`A_2 = 2\sigma_{xy} + C_2`,
    :math:`B_2 = \sigma_x^2 + \sigma_y^2 + C_2`, the derivatives with respect to the
    blurred maps :math:`\mu_x, E[x^2], E[xy]` are formed pointwise and sent back through
    the adjoint blur once (3 maps per channel, 5 when ``y`` needs a gradient too):
    :math:`\partial/\partial x = w \star g_{\mu_x} + 2x\,(w \star g_{xx})
    + y\,(w \star g_{xy})`. This needs far fewer temporaries than autograd through every
    elementwise step; the tests check it with ``torch.autograd.gradcheck``.
    """

    @staticmethod
    def forward(ctx, x, y, win, c1, c2):  # noqa: D102
        mu_x, mu_y, rvar_x, rvar_y, cov = _raw_moments(x, y, win)
        a1 = 2 * mu_x * mu_y + c1
        b1 = mu_x * mu_x + mu_y * mu_y + c1
        a2 = 2 * cov + c2
        b2 = rvar_x.clamp_min(0) + rvar_y.clamp_min(0) + c2
        cs = a2 / b2
        ssim_map = (a1 / b1) * cs
        ctx.save_for_backward(x, y, win, mu_x, mu_y, a1, b1, b2, cs, ssim_map,
                              rvar_x >= 0, rvar_y >= 0)
        return ssim_map.flatten(2).mean(dim=2), cs.flatten(2).mean(dim=2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_ssim, g_cs):  # noqa: D102
        x, y, win, mu_x, mu_y, a1, b1, b2, cs, ssim_map, keep_x, keep_y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        if not (need_x or need_y):
            return None, None, None, None, None
        m = mu_x.shape[-1] * mu_x.shape[-2]
        gs = (g_ssim / m)[..., None, None]
        gc = (g_cs / m)[..., None, None]
        # d/dA1, d/dB1, d/dA2, d/dB2 of  gs * A1 A2 / (B1 B2) + gc * A2 / B2
        d_a1 = gs * cs / b1
        d_b1 = -gs * ssim_map / b1
        d_a2 = (gs * a1 / b1 + gc) / b2
        d_b2 = -(gs * ssim_map + gc * cs) / b2
        # back to the blurred maps mu, E[x^2] (through the clamped variance), E[xy]
        d_cov = 2 * d_a2
        d_exx = d_b2 * keep_x
        d_eyy = d_b2 * keep_y
        d_mux = 2 * mu_y * (d_a1 - d_a2) + 2 * mu_x * (d_b1 - d_exx)
        d_muy = 2 * mu_x * (d_a1 - d_a2) + 2 * mu_y * (d_b1 - d_eyy)
        if need_y:
            maps = [d_mux, d_muy, d_exx, d_eyy, d_cov]
        else:
            maps = [d_mux, d_exx, d_cov]
        c = x.shape[1]
        back = _blur_adjoint(torch.cat(maps, dim=1), win).split(c, dim=1)
        if need_y:
            b_mux, b_muy, b_exx, b_eyy, b_cov = back
            gx = b_mux + 2 * x * b_exx + y * b_cov if need_x else None
            gy = b_muy + 2 * y * b_eyy + x * b_cov
        else:
            b_mux, b_exx, b_cov = back
            gx = b_mux + 2 * x * b_exx + y * b_cov
            gy = None
        return gx, gy, None, None, None


def _ssim_cs_means(
    x: torch.Tensor, y: torch.Tensor, win: torch.Tensor, c1: float, c2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel means (N, C) of the SSIM map and of the contrast-structure map."""
    return _SSIMMeans.apply(x, y, win, c1, c2)


class _Prepared(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    win: torch.Tensor
    c1: float
    c2: float


def _prepare(x, y, data_range, win_size, sigma, k1, k2, window) -> _Prepared:
    L = check_data_range(data_range)
    _check_window_args(win_size, sigma, window)
    _check_k(k1, k2)
    dtype = _compute_dtype(x)
    win = _window(window, win_size, float(sigma), x.device, dtype)
    return _Prepared(x.to(dtype), y.to(dtype), win, (k1 * L) ** 2, (k2 * L) ** 2)


def _too_small(win_size: int) -> str:
    return (
        f"the images must be at least win_size x win_size = {win_size}x{win_size} pixels "
        "(SSIM uses 'valid' filtering, without padding); use a smaller win_size (odd) or "
        "larger images"
    )


# ------------------------------------------------------------------------- functional


def ssim_components(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    window: str = "gaussian",
) -> SSIMComponents:
    r"""The luminance, contrast and structure maps of SSIM, and their product.

    .. math::

        l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \quad
        c = \frac{2\sigma_x\sigma_y + C_2}{\sigma_x^2 + \sigma_y^2 + C_2}, \quad
        s = \frac{\sigma_{xy} + C_3}{\sigma_x\sigma_y + C_3}, \quad
        \mathrm{SSIM} = l\,c\,s

    with :math:`C_3 = C_2 / 2` (so :math:`l c s` equals the simplified formula in the module
    docstring, up to rounding).

    Parameters
    ----------
    x, y : torch.Tensor
        Images of shape ``(N, C, H, W)``, floating point, values in ``[0, data_range]``,
        ``H, W >= win_size``.
    data_range : float
        :math:`L`, the width of the value range: 1.0 for [0, 1] images, 255 for 8-bit.
    win_size : int
        Side of the (square) window, odd. Default 11.
    sigma : float
        Standard deviation of the Gaussian window. Default 1.5.
    k1, k2 : float
        :math:`C_1 = (k_1 L)^2`, :math:`C_2 = (k_2 L)^2`. Defaults 0.01 and 0.03.
    window : {"gaussian", "uniform"}
        Gaussian (Wang et al.) or a box of ``win_size x win_size`` with equal weights.

    Returns
    -------
    SSIMComponents
        Named tuple ``(luminance, contrast, structure, ssim)``, each of shape
        ``(N, C, H - win_size + 1, W - win_size + 1)`` (the valid region), in float32
        (float64 for float64 inputs).

    Notes
    -----
    Meant for looking at the three terms. The contrast and structure maps use
    :math:`\sigma_x = \sqrt{\sigma_x^2}`, whose gradient is infinite where a window is flat;
    train with :func:`ssim`, which uses the simplified formula and has finite gradients.
    """
    check_pair(x, y)
    p = _prepare(x, y, data_range, win_size, sigma, k1, k2, window)
    _check_inputs(x, y, win_size, _too_small(win_size))
    with torch.autocast(device_type=x.device.type, enabled=False):
        mu_x, mu_y, var_x, var_y, cov = _moments(p.x, p.y, p.win)
        c1, c2 = p.c1, p.c2
        c3 = c2 / 2
        sd_x, sd_y = var_x.sqrt(), var_y.sqrt()
        lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
        con = (2 * sd_x * sd_y + c2) / (var_x + var_y + c2)
        struc = (cov + c3) / (sd_x * sd_y + c3)
        return SSIMComponents(lum, con, struc, lum * con * struc)


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    window: str = "gaussian",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Structural similarity (Wang et al. 2004), differentiable.

    .. math::

        \mathrm{SSIM}(x, y) = \frac{1}{C\,|\Omega|} \sum_{c} \sum_{p \in \Omega}
        \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
             {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}(p)

    over the valid window positions :math:`\Omega` (no padding) of each channel.

    Parameters
    ----------
    x, y : torch.Tensor
        Images of shape ``(N, C, H, W)``, floating point, ``H, W >= win_size``. SSIM is
        symmetric in ``x`` and ``y``.
    data_range : float
        :math:`L` in :math:`C_i = (K_i L)^2`: 1.0 for [0, 1] images (default), 255 for 8-bit.
        A wrong range changes the value: pytorch-msssim's default is 255.
    win_size, sigma, k1, k2, window
        As in :func:`ssim_components` (defaults 11, 1.5, 0.01, 0.03, "gaussian").
    reduction : {"mean", "none"}
        ``"none"``: one value per image, shape ``(N,)``; ``"mean"``: their mean.

    Returns
    -------
    torch.Tensor
        SSIM in :math:`[-1, 1]`, 1 if and only if ``x == y``; float32 (float64 for float64
        inputs), also under autocast.

    Notes
    -----
    Equals ``pytorch_msssim.ssim(x, y, data_range=L)`` and
    ``skimage.metrics.structural_similarity(x, y, data_range=L, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False)`` (per channel, averaged) to float rounding.

    The gradient is written by hand (one adjoint blur instead of autograd through every
    step; checked by ``gradcheck``); it is not itself differentiable, so second derivatives
    (e.g. a gradient penalty through SSIM) raise an error.

    Examples
    --------
    >>> x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> float(ssim(x, x))
    1.0
    """
    check_reduction(reduction)
    check_pair(x, y)
    p = _prepare(x, y, data_range, win_size, sigma, k1, k2, window)
    _check_inputs(x, y, win_size, _too_small(win_size))
    with torch.autocast(device_type=x.device.type, enabled=False):
        per_channel, _ = _ssim_cs_means(p.x, p.y, p.win, p.c1, p.c2)
        per_image = per_channel.mean(dim=1)
    return per_image.mean() if reduction == "mean" else per_image


def _safe_pow(v: torch.Tensor, w: float) -> torch.Tensor:
    """``relu(v) ** w`` with a zero (not NaN) gradient where ``v <= 0``."""
    positive = v > 0
    tiny = torch.finfo(v.dtype).tiny
    return torch.where(positive, v.clamp_min(tiny).pow(w), torch.zeros_like(v))


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    win_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Multi-scale SSIM (Wang, Simoncelli and Bovik 2003), differentiable.

    .. math::

        \mathrm{MS\text{-}SSIM}(x, y) = [l_M]^{\beta_M}\,[cs_M]^{\beta_M}
            \prod_{j=1}^{M-1} [cs_j]^{\beta_j}

    where :math:`cs_j` is the mean over the valid window positions of the contrast-structure
    map :math:`(2\sigma_{xy} + C_2)/(\sigma_x^2 + \sigma_y^2 + C_2)` at scale :math:`j`, and
    the coarsest scale :math:`M` uses the mean of the full SSIM map (luminance only there).
    Between scales both images are averaged over 2x2 blocks and decimated by 2. The value
    is computed per channel, then averaged over channels.

    Parameters
    ----------
    x, y : torch.Tensor
        Images of shape ``(N, C, H, W)``; both sides must exceed
        ``(win_size - 1) * 2 ** (len(weights) - 1)`` (160 for the defaults) so that the
        coarsest scale is still at least ``win_size`` pixels.
    data_range, win_size, sigma, k1, k2
        As in :func:`ssim`.
    weights : sequence of float
        The exponents :math:`\beta_j`, finest scale first; their number is the number of
        scales. Default :data:`MS_SSIM_WEIGHTS` = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333).
    reduction : {"mean", "none"}
        ``"none"``: shape ``(N,)``; ``"mean"``: their mean.

    Returns
    -------
    torch.Tensor
        MS-SSIM in :math:`[0, 1]`; float32 (float64 for float64 inputs).

    Notes
    -----
    **Negative cs.** A per-channel :math:`cs_j` (or the coarsest SSIM) can be negative for
    anti-correlated images, and a negative number to a fractional power is NaN. Each such
    factor is clamped at 0 before the power (as pytorch-msssim does with ``relu``), so the
    whole product is 0. Unlike a bare ``relu(v) ** w``, whose gradient at 0 is
    ``0 * inf = NaN``, the clamp is written as ``where(v > 0, v ** w, 0)`` so the gradient
    there is 0, never NaN.

    **Odd sides.** The 2x2 average uses ``ceil_mode``: an odd last row or column is
    averaged on its own. pytorch-msssim instead zero-pads odd sides on both ends; the two
    agree exactly when the sides are divisible by ``2 ** (len(weights) - 1)``.

    Equals ``pytorch_msssim.ms_ssim(x, y, data_range=L)`` for such sides.
    """
    check_reduction(reduction)
    check_pair(x, y)
    p = _prepare(x, y, data_range, win_size, sigma, k1, k2, "gaussian")
    if (
        isinstance(weights, (str, bytes))
        or not isinstance(weights, Sequence | torch.Tensor)
        or len(weights) < 1
    ):
        raise ValueError(
            "weights must be a non-empty sequence of scale exponents, finest first (default "
            f"{MS_SSIM_WEIGHTS}); got {weights!r}."
        )
    betas = [float(b) for b in weights]
    if not all(b >= 0 and math.isfinite(b) for b in betas):
        raise ValueError(f"weights must be non-negative and finite; got {weights!r}.")
    scales = len(betas)
    limit = (win_size - 1) * 2 ** (scales - 1)
    _check_inputs(
        x,
        y,
        limit + 1,
        f"MS-SSIM with {scales} scales and win_size={win_size} needs both image sides larger "
        f"than (win_size - 1) * 2**(scales - 1) = {limit}, i.e. at least {limit + 1} pixels, so "
        f"that the coarsest scale is still {win_size} pixels wide. Use a smaller win_size, "
        "fewer scales (a shorter weights sequence, e.g. weights=MS_SSIM_WEIGHTS[:3]), or "
        "larger images",
    )
    with torch.autocast(device_type=x.device.type, enabled=False):
        a, b = p.x, p.y
        value = None
        for j, beta in enumerate(betas):
            ssim_mean, cs_mean = _ssim_cs_means(a, b, p.win, p.c1, p.c2)
            if j < scales - 1:
                term = cs_mean
                a = F.avg_pool2d(a, 2, ceil_mode=True)
                b = F.avg_pool2d(b, 2, ceil_mode=True)
            else:
                term = ssim_mean
            factor = _safe_pow(term, beta)  # (N, C)
            value = factor if value is None else value * factor
        per_image = value.mean(dim=1)
    return per_image.mean() if reduction == "mean" else per_image


# ---------------------------------------------------------------------------- modules


class SSIMLoss(nn.Module):
    r"""``1 - ssim(x, y, **kwargs)``: 0 for identical images, up to 2.

    Parameters
    ----------
    **kwargs
        Any keyword of :func:`ssim` (``data_range``, ``win_size``, ``sigma``, ``k1``, ``k2``,
        ``window``, ``reduction``). Checked once here, so a typo fails at construction.

    Examples
    --------
    >>> loss = SSIMLoss(data_range=1.0)
    >>> x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> float(loss(x, x))
    0.0
    """

    fn = staticmethod(ssim)

    def __init__(self, **kwargs: object) -> None:
        super().__init__()
        probe = torch.zeros(1, 1, 1, 1)
        try:
            type(self).fn(probe, probe, **kwargs)
        except TypeError as err:
            raise TypeError(f"{type(self).__name__}: {err}") from None
        except _ImageTooSmallError:  # the probe is too small on purpose; other errors are real
            pass
        self.kwargs = kwargs

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return 1.0 - type(self).fn(x, y, **self.kwargs)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())


class MSSSIMLoss(SSIMLoss):
    r"""``1 - ms_ssim(x, y, **kwargs)``: 0 for identical images, at most 1.

    Takes any keyword of :func:`ms_ssim` (``data_range``, ``win_size``, ``sigma``, ``k1``,
    ``k2``, ``weights``, ``reduction``).
    """

    fn = staticmethod(ms_ssim)
