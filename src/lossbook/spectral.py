r"""Power spectra of images: where the energy of an image sits in frequency.

A blurry reconstruction has lost the top of its spectrum; a noisy one has too much of
it; a checkerboard is a peak at the upsampling frequency. This module measures that,
per image, with three functions that the rest of the package (``lossbook.diagnose``,
the super-resolution and feature-loss chapters) builds on:

* :func:`radial_power_spectrum` -- the power spectrum averaged over rings of equal
  spatial frequency, :math:`P(f)`, for :math:`0 \le f \le 0.5` cycles/pixel;
* :func:`high_frequency_share` -- the share of the non-DC power above a cutoff;
* :func:`sharpness_ratio` -- a prediction's share divided by its target's.

Conventions (the same in all three functions)
---------------------------------------------
*Detrend*: the mean of every image and channel is subtracted first, so the DC term
(the brightness) never counts. *Window*: by default the mean-free image is multiplied
by a separable symmetric Hann window before the FFT. Without it the jump between
opposite borders (an FFT treats the image as periodic) adds a spurious cross of power
along both frequency axes, falling like :math:`1/f^2` -- on natural images enough to
hide the difference between a sharp and a blurred result. The window costs resolution
(a pure tone spreads over about three bins) and leaves white noise white. Pass
``window=None`` for a periodic image (a synthetic tone, a texture that tiles).
*Normalisation*: the power is :math:`|\mathcal{F}[w\,(x-\bar x)]|^2 / \sum w^2`, so
white noise of variance :math:`\sigma^2` has expected power :math:`\sigma^2` in every bin,
window or not. Channels are averaged (power, not amplitude).

References
----------
A. van der Schaaf, J. H. van Hateren, "Modelling the power spectra of natural images:
statistics and information", Vision Research 36(17), 1996 (natural images fall off
roughly as :math:`1/f^2`).
F. J. Harris, "On the use of windows for harmonic analysis with the discrete Fourier
transform", Proceedings of the IEEE 66(1), 1978.
"""

from __future__ import annotations

import torch

from ._validate import check_finite, check_image, check_pair

__all__ = ["radial_power_spectrum", "high_frequency_share", "sharpness_ratio"]

_WINDOWS = ("hann", None)


def _check_window(window: object) -> None:
    if window not in _WINDOWS:
        raise ValueError(
            f"window must be 'hann' (the default, for ordinary images) or None (for "
            f"periodic images); got {window!r}."
        )


def _check_cutoff(cutoff: object) -> float:
    if isinstance(cutoff, bool) or not isinstance(cutoff, (int, float)):
        raise TypeError(f"cutoff must be a number in cycles/pixel; got {type(cutoff).__name__}.")
    value = float(cutoff)
    if not 0.0 < value < 0.5:
        raise ValueError(
            f"cutoff must lie strictly between 0 and 0.5 cycles/pixel (0.5 is the Nyquist "
            f"frequency); got {cutoff}. 0.25 (half of Nyquist) is the usual choice."
        )
    return value


def _power_2d(x: torch.Tensor, window: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel-averaged 2-D power spectrum ``(N, H, W)`` and the radius grid ``(H, W)``."""
    check_image(x, "x")
    _check_window(window)
    n, c, h, w = x.shape
    if n == 0 or c == 0:
        raise ValueError(f"x must hold at least one image and one channel; got shape "
                         f"{tuple(x.shape)}.")
    if min(h, w) < 4:
        raise ValueError(
            f"x must be at least 4 x 4 pixels for a spectrum; got {h} x {w}. Pass whole "
            "images or larger patches."
        )
    check_finite(x, "x")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    x = x.to(dtype)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    if window == "hann":
        wy = torch.hann_window(h, periodic=False, dtype=dtype, device=x.device)
        wx = torch.hann_window(w, periodic=False, dtype=dtype, device=x.device)
        win = wy[:, None] * wx[None, :]
    else:
        win = torch.ones(h, w, dtype=dtype, device=x.device)
    spec = torch.fft.fft2(x * win)
    power = (spec.real**2 + spec.imag**2) / (win**2).sum()
    fy = torch.fft.fftfreq(h, dtype=dtype, device=x.device)
    fx = torch.fft.fftfreq(w, dtype=dtype, device=x.device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return power.mean(dim=1), radius


def radial_power_spectrum(
    x: torch.Tensor, *, window: str | None = "hann"
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Radially averaged power spectrum of each image.

    .. math::
        P(f_k) = \operatorname{mean}_{\,|\,\mathrm{round}(n\,r(u,v)) = k}\;
        \frac{|\mathcal{F}[w\,(x - \bar x)](u, v)|^2}{\sum w^2},
        \qquad f_k = k / n,\ k = 0, \dots, \lfloor n/2 \rfloor,

    where :math:`r(u, v)` is the radial frequency of FFT bin :math:`(u, v)` in
    cycles/pixel, :math:`n = \min(H, W)`, and the power is averaged over channels.
    Bins beyond 0.5 cycles/pixel (the corners of the 2-D spectrum) are left out of the
    rings; :func:`high_frequency_share` counts them.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(N, C, H, W)``, floating point, at least 4 x 4.
    window : {"hann", None}
        Taper applied after subtracting each image's mean (see the module docstring).

    Returns
    -------
    freqs : torch.Tensor
        ``(K,)`` ring frequencies in cycles/pixel, ``0, 1/n, ..., floor(n/2)/n``.
        ``freqs[0] = 0`` is the DC ring, about 0 after the mean is removed.
    power : torch.Tensor
        ``(N, K)`` mean power in each ring (float32, or float64 for float64 input).
        White noise of variance :math:`\sigma^2` gives about :math:`\sigma^2` everywhere.

    Examples
    --------
    >>> import math, torch
    >>> j = torch.arange(64.0)
    >>> tone = torch.cos(2 * math.pi * 0.125 * j).expand(64, 64)[None, None]
    >>> freqs, power = radial_power_spectrum(tone, window=None)
    >>> float(freqs[power[0].argmax()])
    0.125
    """
    power2d, radius = _power_2d(x, window)
    n = min(x.shape[-2], x.shape[-1])
    k_max = n // 2
    ring = torch.round(radius * n).long()
    keep = ring <= k_max
    idx = ring[keep]
    counts = torch.bincount(idx, minlength=k_max + 1).to(power2d.dtype)
    sums = torch.zeros(power2d.shape[0], k_max + 1, dtype=power2d.dtype, device=x.device)
    sums.index_add_(1, idx, power2d[:, keep])
    freqs = torch.arange(k_max + 1, dtype=power2d.dtype, device=x.device) / n
    return freqs, sums / counts.clamp_min(1)


def high_frequency_share(
    x: torch.Tensor, cutoff: float = 0.25, *, window: str | None = "hann"
) -> torch.Tensor:
    r"""Share of each image's non-DC power above ``cutoff`` cycles/pixel.

    .. math::
        s = \frac{\sum_{r(u,v) > f_c} P(u, v)}{\sum_{r(u,v) > 0} P(u, v)} \in [0, 1],

    summed over every bin of the 2-D spectrum (corners beyond 0.5 cycles/pixel
    included: diagonal detail, and the checkerboard at (0.5, 0.5), live there). For
    white noise every bin has the same expected power, so :math:`s` is the share of
    bins beyond the cutoff, :math:`\approx 1 - \pi f_c^2` (0.80 for
    :math:`f_c = 0.25`). Natural images sit far lower (their power falls like
    :math:`1/f^2`); blur lowers :math:`s`, noise raises it. An image with no non-DC
    power at all (a constant) gets 0.

    Parameters
    ----------
    x : torch.Tensor
        Images ``(N, C, H, W)``.
    cutoff : float
        Frequency in cycles/pixel, strictly between 0 and 0.5 (0.25 = half Nyquist).
    window : {"hann", None}
        See the module docstring.

    Returns
    -------
    torch.Tensor
        ``(N,)`` shares in ``[0, 1]``.
    """
    cutoff = _check_cutoff(cutoff)
    power2d, radius = _power_2d(x, window)
    non_dc = (radius > 0).to(power2d.dtype)
    high = (radius > cutoff).to(power2d.dtype)
    total = (power2d * non_dc).sum(dim=(-2, -1))
    above = (power2d * high).sum(dim=(-2, -1))
    # A constant image: no non-DC power to share out -> 0 (it is as blurry as it gets).
    tiny = torch.finfo(power2d.dtype).tiny
    return torch.where(total > tiny, above / total.clamp_min(tiny), torch.zeros_like(total))


def sharpness_ratio(
    pred: torch.Tensor,
    target: torch.Tensor,
    cutoff: float = 0.25,
    *,
    window: str | None = "hann",
) -> torch.Tensor:
    r"""How much high-frequency detail a prediction has, relative to its target.

    .. math::
        \rho = \frac{s(x)}{s(y)}

    with :math:`s` the :func:`high_frequency_share`, :math:`x` the prediction and
    :math:`y` the target. :math:`\rho < 1`: the prediction
    is blurrier than the target (the classic MSE/L2 result); :math:`\rho > 1`: it has
    extra high-frequency content -- invented detail, residual noise or upsampling
    artefacts. A ratio says nothing about *which* details are right: pair it with a
    distortion metric (PSNR, SSIM).

    Parameters
    ----------
    pred, target : torch.Tensor
        Images ``(N, C, H, W)`` of the same shape.
    cutoff : float
        Frequency in cycles/pixel (see :func:`high_frequency_share`).
    window : {"hann", None}
        See the module docstring.

    Returns
    -------
    torch.Tensor
        ``(N,)`` ratios, non-negative.

    Raises
    ------
    ValueError
        If a target image is constant (its share is 0 and the ratio undefined).
    """
    check_pair(pred, target, ("pred", "target"))
    s_pred = high_frequency_share(pred, cutoff, window=window)
    s_target = high_frequency_share(target, cutoff, window=window)
    flat = (s_target <= 0).nonzero().flatten().tolist()
    if flat:
        raise ValueError(
            f"target images {flat} have no power above the cutoff (constant or extremely "
            "smooth), so a sharpness ratio is undefined for them. Drop them, or compare "
            "high_frequency_share(pred) directly."
        )
    return s_pred / s_target

