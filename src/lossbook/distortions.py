r"""Distortions with a strength knob, and scaling a distortion to a given MSE.

Wang et al. (2004, Fig. 2) show one image under several distortions that all have the same
mean squared error, yet look very different and get very different SSIM. This module
makes such a set for any image: every distortion ``f(x, strength)`` has one scalar knob,
and :func:`scale_to_mse` finds by bisection the strength whose MSE equals a target.

=================  =====================================================  ===============
name               ``f(x, s)``                                            strength range
=================  =====================================================  ===============
mean shift         ``x + s`` (``x - s`` for bright images), clipped       [0, 1]
contrast stretch   ``m + (1 + s)(x - m)``, ``m`` the image mean, clipped  [0, 4]
gaussian noise     ``x + s n``, ``n`` a fixed N(0, 1) sample, clipped     [0, 1]
impulse noise      a fraction ``s`` of pixels set to 0 or 1 (fixed order) [0, 1]
blur               Gaussian blur with standard deviation ``s`` pixels     [0, 20]
jpeg               JPEG (Pillow) at integer quality ``s``                 [1, 95]
=================  =====================================================  ===============

All take and return ``(N, C, H, W)`` float tensors in [0, 1]; the random ones draw from a
fixed seed, so that the MSE is a monotone function of the strength and bisection works.
JPEG's quality is an integer, so its MSE can only come close to the target: the achieved
MSE is returned and should be reported.

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE Trans. Image Process. 13(4), 2004 (Fig. 2).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ._validate import check_image

__all__ = [
    "mean_shift",
    "contrast_stretch",
    "gaussian_noise",
    "impulse_noise",
    "blur",
    "jpeg",
    "DISTORTIONS",
    "Distortion",
    "scale_to_mse",
    "equal_mse_set",
]

_SEED = 2004


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(_SEED)


def mean_shift(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Add ``strength`` to every pixel (subtract it for images brighter than 0.5), clipped."""
    sign = 1.0 if float(x.mean()) < 0.5 else -1.0
    return (x + sign * strength).clamp(0, 1)


def contrast_stretch(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Stretch values away from each image's mean by a factor ``1 + strength``, clipped."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (m + (1 + strength) * (x - m)).clamp(0, 1)


def gaussian_noise(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Add ``strength`` times a fixed standard-normal sample, clipped."""
    n = torch.randn(x.shape, generator=_gen(), dtype=x.dtype).to(x.device)
    return (x + strength * n).clamp(0, 1)


def impulse_noise(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Salt and pepper: a fraction ``strength`` of the pixels set to 0 or 1 (fixed pattern).

    The pixels are hit in a fixed random order; the last one hit is blended by the
    fractional part of ``strength * numel``, so the error grows continuously with the
    strength (bisection can then match any MSE).
    """
    g = _gen()
    order = torch.rand(x.numel(), generator=g).argsort().argsort().view(x.shape)
    salt = (torch.rand(x.shape, generator=g) < 0.5).to(dtype=x.dtype, device=x.device)
    weight = (strength * x.numel() - order.to(device=x.device, dtype=x.dtype)).clamp(0, 1)
    return x + weight * (salt - x)


def blur(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Gaussian blur with standard deviation ``strength`` pixels (reflective borders)."""
    if strength <= 0:
        return x.clone()
    r = max(1, math.ceil(3 * strength))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    i = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    g = torch.exp(-(i**2) / (2 * strength**2))
    g = g / g.sum()
    c, k = x.shape[1], 2 * r + 1
    out = F.pad(x, (r, r, r, r), mode="reflect")
    out = F.conv2d(out, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(out, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


def jpeg(x: torch.Tensor, quality: float) -> torch.Tensor:
    """JPEG-compress each image with Pillow at ``quality`` (rounded to an integer 1-95)."""
    q = int(round(min(max(quality, 1), 95)))
    out = []
    for img in x.detach().cpu():
        arr = (img.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        pil = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr)
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=q)
        dec = np.asarray(Image.open(buf)).astype(np.float32) / 255.0
        dec = dec[..., None] if dec.ndim == 2 else dec
        out.append(torch.from_numpy(dec).permute(2, 0, 1))
    return torch.stack(out).to(dtype=x.dtype, device=x.device)


@dataclass(frozen=True)
class Distortion:
    """A distortion ``fn(x, strength)`` with the strength range that bisection searches."""

    fn: Callable[[torch.Tensor, float], torch.Tensor]
    low: float
    high: float
    integer: bool = False
    decreasing: bool = False  # True when a larger strength means a smaller error (JPEG)


DISTORTIONS: dict[str, Distortion] = {
    "mean shift": Distortion(mean_shift, 0.0, 1.0),
    "contrast stretch": Distortion(contrast_stretch, 0.0, 4.0),
    "gaussian noise": Distortion(gaussian_noise, 0.0, 1.0),
    "impulse noise": Distortion(impulse_noise, 0.0, 1.0),
    "blur": Distortion(blur, 0.0, 20.0),
    "jpeg": Distortion(jpeg, 1.0, 95.0, integer=True, decreasing=True),
}


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).pow(2).mean())


def scale_to_mse(
    distort: str | Distortion | Callable[[torch.Tensor, float], torch.Tensor],
    x: torch.Tensor,
    target_mse: float,
    *,
    low: float | None = None,
    high: float | None = None,
    rtol: float = 1e-3,
    max_iter: int = 60,
) -> tuple[torch.Tensor, float, float]:
    r"""Distort ``x`` so that :math:`\mathrm{MSE}(f(x, s), x)` equals ``target_mse``.

    Bisection on the strength ``s`` between ``low`` and ``high``, assuming the MSE grows
    with ``s`` (or shrinks, for :class:`Distortion` s marked ``decreasing``).

    Parameters
    ----------
    distort : str, Distortion or callable
        A name in :data:`DISTORTIONS`, a :class:`Distortion`, or any ``f(x, s)`` (then give
        ``low`` and ``high``).
    x : torch.Tensor
        Image(s) ``(N, C, H, W)`` in [0, 1]; the MSE is over the whole batch.
    target_mse : float
        In the units of ``x`` (for [0, 1] images, an MSE of 210 on the 0-255 scale is
        ``210 / 255**2``).
    low, high : float, optional
        The strength range (default: the distortion's).
    rtol : float
        Stop when the MSE is within ``rtol`` (relative) of the target. Default 1e-3.
    max_iter : int
        At most this many halvings (default 60).

    Returns
    -------
    distorted : torch.Tensor
    strength : float
    achieved_mse : float
        Equal to the target within ``rtol`` for continuous strengths; for integer ones
        (JPEG) the closest reachable value.

    Raises
    ------
    ValueError
        If the target is outside the range of MSEs the distortion reaches.
    """
    check_image(x)
    if isinstance(distort, str):
        if distort not in DISTORTIONS:
            raise ValueError(f"unknown distortion {distort!r}; choose one of {list(DISTORTIONS)}.")
        distort = DISTORTIONS[distort]
    if not isinstance(distort, Distortion):
        if low is None or high is None:
            raise ValueError("give low and high (the strength range) for a plain function.")
        distort = Distortion(distort, low, high)
    lo = distort.low if low is None else low
    hi = distort.high if high is None else high
    if not target_mse > 0:
        raise ValueError(f"target_mse must be positive; got {target_mse}.")
    sign = -1.0 if distort.decreasing else 1.0

    def err(s: float) -> float:
        return sign * (_mse(distort.fn(x, s), x) - target_mse)

    e_lo, e_hi = err(lo), err(hi)
    if e_lo > 0 or e_hi < 0:
        reach = sorted([_mse(distort.fn(x, lo), x), _mse(distort.fn(x, hi), x)])
        raise ValueError(
            f"target_mse={target_mse:.4g} is outside what this distortion reaches on this image "
            f"over strengths [{lo}, {hi}] (MSE from {reach[0]:.4g} to {reach[1]:.4g}); choose a "
            "target in that range or widen low/high."
        )
    for _ in range(max_iter):
        if distort.integer and hi - lo <= 1:
            break
        mid = (lo + hi) / 2
        if distort.integer:
            mid = float(math.floor(mid))
        e = err(mid)
        if abs(e) <= rtol * target_mse:
            lo = hi = mid
            break
        lo, hi = (mid, hi) if e < 0 else (lo, mid)
    if distort.integer:
        best = min({lo, hi}, key=lambda s: abs(err(s)))
    else:
        best = (lo + hi) / 2
    out = distort.fn(x, best)
    return out, float(best), _mse(out, x)


def equal_mse_set(
    x: torch.Tensor, target_mse: float, names: list[str] | None = None
) -> dict[str, tuple[torch.Tensor, float, float]]:
    """``{name: scale_to_mse(name, x, target_mse)}`` for the named (default: all) distortions."""
    names = list(DISTORTIONS) if names is None else names
    return {name: scale_to_mse(name, x, target_mse) for name in names}
