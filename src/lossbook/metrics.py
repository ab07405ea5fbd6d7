r"""Image-quality metrics for evaluation (no gradients).

The functions here are the *measuring* side of the book: they never build an
autograd graph and always return plain values per image or per batch. The
differentiable versions, for training, live in :mod:`lossbook.losses`.
"""

from __future__ import annotations

import math

import torch

from ._validate import (
    check_data_range,
    check_finite,
    check_number,
    check_pair,
    check_reduction,
)
from .losses import pixel as _pixel
from .losses import structural as _structural
from .sar import enl

__all__ = ["psnr", "psnr_from_mse", "mse", "mae", "edge_rise_distance"]


@torch.no_grad()
def psnr(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    data_range: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Peak signal-to-noise ratio in decibels.

    .. math:: \mathrm{PSNR}(x, y) = 10 \log_{10} \frac{R^2}{\mathrm{MSE}(x, y)}

    where :math:`R` is ``data_range``, the width of the images' value range (1.0 for
    images in [0, 1], 255 for 8-bit images). PSNR depends on :math:`R`: the same pair
    scored with ``data_range=255`` instead of 1.0 gains :math:`20\log_{10}255 \approx
    48.1` dB, so always pass the range your images are actually in.

    Parameters
    ----------
    x, y : torch.Tensor
        Images of shape ``(N, C, H, W)``.
    data_range : float
        :math:`R` above. Default 1.0.
    reduction : {"mean", "none"}
        ``"none"``: the PSNR of each image, shape ``(N,)``. ``"mean"``: the mean of the
        per-image PSNRs (not the PSNR of the pooled MSE, which is lower when the errors
        differ between images; say which one a table reports).

    Returns
    -------
    torch.Tensor
        PSNR in dB; ``inf`` for identical images.

    Notes
    -----
    Equals ``skimage.metrics.peak_signal_noise_ratio(y, x, data_range=data_range)`` per image.
    """
    check_pair(x, y)
    check_reduction(reduction)
    L = check_data_range(data_range)
    check_finite(x, "x")
    check_finite(y, "y")
    err = (x.double() - y.double()).pow(2).flatten(1).mean(dim=1)
    # 20 log10 L - 10 log10 MSE: L**2 would underflow (or overflow) for extreme ranges
    value = 20.0 * math.log10(L) - 10.0 * torch.log10(err)
    value = value.to(x.dtype)
    return value.mean() if reduction == "mean" else value


@torch.no_grad()
def mse(x: torch.Tensor, y: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error as a metric (see :func:`lossbook.losses.mse`)."""
    return _pixel.mse(x, y, reduction=reduction)


@torch.no_grad()
def mae(x: torch.Tensor, y: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error as a metric (see :func:`lossbook.losses.mae`)."""
    return _pixel.mae(x, y, reduction=reduction)


def psnr_from_mse(mse_value: float, data_range: float = 1.0) -> float:
    """PSNR in dB of a given mean squared error: ``10 log10(R^2 / mse)``."""
    L = check_data_range(data_range)
    mse_value = check_number(mse_value, "mse_value", nonnegative=True,
                             meaning="a mean squared error")
    return math.inf if mse_value == 0 else 10.0 * math.log10(L**2 / mse_value)


def edge_rise_distance(profile: torch.Tensor, low: float = 0.1, high: float = 0.9) -> float:
    r"""Width of a rising edge: the distance between its ``low`` and ``high`` crossings.

    The profile is rescaled so that its first value maps to 0 and its last to 1; the
    positions where it first reaches ``low`` and ``high`` are found by linear
    interpolation between pixel centres, and their distance is returned in pixels. The
    default is the classical 10-90 % rise distance: a perfectly sharp edge gives at most
    one pixel, a linear ramp over :math:`w` pixels gives :math:`0.8\,w`.

    Parameters
    ----------
    profile : torch.Tensor
        1-D intensity profile across the edge, shape ``(W,)``, rising from left to right.
    low, high : float
        Fractions of the step height, ``0 <= low < high <= 1``.

    Returns
    -------
    float
        The rise distance in pixels.
    """
    if not isinstance(profile, torch.Tensor) or profile.ndim != 1 or profile.numel() < 2:
        raise ValueError(
            "profile must be a 1-D tensor with at least 2 values (one row across the edge); got "
            + (f"shape {tuple(profile.shape)}" if isinstance(profile, torch.Tensor)
               else type(profile).__name__) + "."
        )
    if not 0 <= low < high <= 1:
        raise ValueError(f"need 0 <= low < high <= 1; got low={low}, high={high}.")
    check_finite(profile, "profile")
    p = profile.detach().double().cpu()
    lo, hi = p[0], p[-1]
    if not hi > lo:
        raise ValueError(
            f"the profile must rise from left to right (first value {float(lo):.4g}, last "
            f"{float(hi):.4g}); flip it with profile.flip(0) for a falling edge."
        )
    u = (p - lo) / (hi - lo)

    def crossing(level: float) -> float:
        i = int(torch.nonzero(u >= level)[0])
        if i == 0:
            return 0.0
        return (i - 1) + float((level - u[i - 1]) / (u[i] - u[i - 1]))

    return crossing(high) - crossing(low)


__all__ += ["ssim", "ms_ssim"]


@torch.no_grad()
def ssim(x: torch.Tensor, y: torch.Tensor, **kwargs: object) -> torch.Tensor:
    r"""SSIM as a metric, without gradients (see :func:`lossbook.losses.ssim`).

    Takes the same keywords (``data_range=1.0``, ``win_size=11``, ``sigma=1.5``,
    ``k1=0.01``, ``k2=0.03``, ``window="gaussian"``, ``reduction="mean"``); Wang et al.'s
    11x11 Gaussian window, sigma 1.5, population statistics, valid region. Pass the
    ``data_range`` your images are in (pytorch-msssim's default is 255).
    """
    return _structural.ssim(x, y, **kwargs)


@torch.no_grad()
def ms_ssim(x: torch.Tensor, y: torch.Tensor, **kwargs: object) -> torch.Tensor:
    r"""MS-SSIM as a metric, without gradients (see :func:`lossbook.losses.ms_ssim`).

    Same keywords (``data_range=1.0``, ``weights`` with five scales by default, ...); with
    the defaults both image sides must exceed 160 pixels.
    """
    return _structural.ms_ssim(x, y, **kwargs)

# The equivalent number of looks (SAR speckle level) is a metric too; it lives in sar.py.
__all__ += ["enl"]


# --------------------------------------------------------------- super-resolution conventions

__all__ += ["SR_CHANNELS", "rgb_to_y", "sr_view", "sr_psnr", "sr_ssim", "sr_ms_ssim"]

SR_CHANNELS = ("y", "rgb")
"""Where :func:`sr_psnr` and friends compare images: the BT.601 luma ``"y"`` or all of
``"rgb"``."""


@torch.no_grad()
def rgb_to_y(x: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    r"""The luma channel Y of ITU-R BT.601 ("studio swing"), as SR papers compute it.

    For RGB values :math:`R, G, B` in ``[0, L]`` (:math:`L` = ``data_range``):

    .. math:: Y = \frac{L}{255}\Big(16 + \frac{65.481\,R + 128.553\,G + 24.966\,B}{L}\Big)

    i.e. MATLAB's ``rgb2ycbcr`` (and scikit-image's ``rgb2ycbcr``, which returns
    :math:`255\,Y/L`) scaled back to the input's range. Y lies in
    :math:`[16 L/255,\ 235 L/255]`: its range is :math:`219/255` of the RGB range, so
    the same error measured on Y of a gray image is :math:`219/255` as large and its PSNR
    :math:`20\log_{10}(255/219) \approx 1.32` dB higher than on the gray values.

    Parameters
    ----------
    x : torch.Tensor
        RGB images ``(N, 3, H, W)`` in ``[0, data_range]``.
    data_range : float
        :math:`L`. Default 1.0.

    Returns
    -------
    torch.Tensor
        ``(N, 1, H, W)``, same dtype.

    References
    ----------
    ITU-R Recommendation BT.601-7, "Studio encoding parameters of digital television for
    standard 4:3 and wide-screen 16:9 aspect ratios", 2011.
    """
    from ._validate import check_image

    check_image(x)
    L = check_data_range(data_range)
    if x.shape[1] != 3:
        raise ValueError(f"rgb_to_y needs RGB images (N, 3, H, W); got {tuple(x.shape)}. A "
                         "gray image already is its own luma (pass it to sr_psnr as is).")
    w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype, device=x.device)
    y = (x * w.view(1, 3, 1, 1)).sum(dim=1, keepdim=True) + 16.0 * L
    return y / 255.0


def sr_view(x: torch.Tensor, *, channel: str, shave: int, data_range: float = 1.0
            ) -> torch.Tensor:
    """What an SR metric compares: Y (or RGB) of ``x`` with ``shave`` pixels cut off each
    border.

    ``channel="y"`` converts RGB to BT.601 luma (:func:`rgb_to_y`) and leaves a
    one-channel (gray) image as it is (it is its luma already); ``channel="rgb"`` keeps
    every channel. ``shave`` removes that many rows and columns at each of the four
    borders (the literature shaves ``scale`` pixels; the border is where a network saw
    zero padding). ``(N, C, H, W) -> (N, 1 or C, H - 2 shave, W - 2 shave)``.
    """
    from ._validate import check_image

    check_image(x)
    if channel not in SR_CHANNELS:
        raise ValueError(f"channel must be one of {SR_CHANNELS}; got {channel!r}.")
    if isinstance(shave, bool) or not isinstance(shave, int) or shave < 0:
        raise ValueError(f"shave must be an int >= 0 (the SR convention is the scale); got "
                         f"{shave!r}.")
    h, w = x.shape[-2:]
    if 2 * shave >= min(h, w):
        raise ValueError(f"shave={shave} leaves nothing of a {h} x {w} image; use shave < "
                         f"{(min(h, w) + 1) // 2}.")
    if channel == "y" and x.shape[1] == 3:
        x = rgb_to_y(x, data_range=data_range)
    elif channel == "y" and x.shape[1] != 1:
        raise ValueError(f"channel='y' needs 1 (gray) or 3 (RGB) channels; got {x.shape[1]}.")
    return x[..., shave:h - shave, shave:w - shave] if shave else x


@torch.no_grad()
def sr_psnr(x: torch.Tensor, y: torch.Tensor, *, channel: str, shave: int,
            data_range: float = 1.0, reduction: str = "mean") -> torch.Tensor:
    r"""PSNR under a super-resolution evaluation convention, stated by the caller.

    :func:`psnr` of :func:`sr_view` of both images: on BT.601 luma (``channel="y"``,
    the convention of SR papers since SRCNN, with ``shave = scale``, Lim et al. 2017)
    or on all RGB channels (``channel="rgb"``, ``shave=0``: what a plain PSNR does).
    Neither option has a default, because the same outputs score differently under
    each (Chapter 9 measures by how much); a table must say which one it uses.

    Parameters
    ----------
    x, y : torch.Tensor
        Images ``(N, C, H, W)``, ``C`` = 1 or 3, in ``[0, data_range]``.
    channel : {"y", "rgb"}
        See :func:`sr_view`.
    shave : int
        Border pixels removed on every side before comparing.
    data_range : float
        Default 1.0.
    reduction : {"mean", "none"}
        As in :func:`psnr` (mean of the per-image values).

    References
    ----------
    B. Lim et al., "Enhanced deep residual networks for single image super-resolution",
    CVPRW 2017 (evaluation on Y, ``scale`` pixels shaved).
    """
    check_pair(x, y)
    kw = dict(channel=channel, shave=shave, data_range=data_range)
    return psnr(sr_view(x, **kw), sr_view(y, **kw), data_range=data_range,
                reduction=reduction)


@torch.no_grad()
def sr_ssim(x: torch.Tensor, y: torch.Tensor, *, channel: str, shave: int,
            data_range: float = 1.0, **kwargs: object) -> torch.Tensor:
    """:func:`ssim` (Wang et al.'s 11x11 Gaussian window) under an SR convention; see
    :func:`sr_psnr`. Further keywords go to :func:`ssim`."""
    check_pair(x, y)
    kw = dict(channel=channel, shave=shave, data_range=data_range)
    return ssim(sr_view(x, **kw), sr_view(y, **kw), data_range=data_range, **kwargs)


@torch.no_grad()
def sr_ms_ssim(x: torch.Tensor, y: torch.Tensor, *, channel: str, shave: int,
               data_range: float = 1.0, **kwargs: object) -> torch.Tensor:
    """:func:`ms_ssim` under an SR convention; see :func:`sr_psnr`. With the default five
    scales both sides must exceed 160 pixels *after* shaving."""
    check_pair(x, y)
    kw = dict(channel=channel, shave=shave, data_range=data_range)
    return ms_ssim(sr_view(x, **kw), sr_view(y, **kw), data_range=data_range, **kwargs)
