r"""Structural similarity: SSIM and multi-scale SSIM, as metrics and as losses.

SSIM (Wang, Bovik, Sheikh and Simoncelli 2004) compares two images window by window
through three local statistics: the means :math:`\mu_x, \mu_y`, the standard deviations
:math:`\sigma_x, \sigma_y` and the covariance :math:`\sigma_{xy}`, all weighted by a
normalised window :math:`w` (an 11x11 Gaussian with :math:`\sigma = 1.5` by default):

.. math::

    l = \frac{2\mu_x\mu_y + C_1}{\mu_x^2 + \mu_y^2 + C_1}, \qquad
    c = \frac{2\sigma_x\sigma_y + C_2}{\sigma_x^2 + \sigma_y^2 + C_2}, \qquad
    s = \frac{\sigma_{xy} + C_3}{\sigma_x\sigma_y + C_3},

with :math:`C_1 = (K_1 R)^2`, :math:`C_2 = (K_2 R)^2`, :math:`C_3 = C_2/2`, :math:`R` the
data range (Wang et al. write :math:`L`), :math:`K_1 = 0.01`, :math:`K_2 = 0.03`. With
:math:`C_3 = C_2/2` the product simplifies to

.. math::

    \mathrm{SSIM} = l\,c\,s = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                                   {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}.

The statistics are computed with convolutions (population, not sample, moments):
:math:`\mu_x = w * x`, :math:`\sigma_x^2 = w * x^2 - \mu_x^2`,
:math:`\sigma_{xy} = w * (xy) - \mu_x\mu_y`, "valid" filtering (no padding), so the SSIM
map is ``(H - win_size + 1) x (W - win_size + 1)``; the image's SSIM is the mean of the
map, averaged over channels. Variances computed this way can come out slightly negative
by rounding and are clamped at 0.

Implementation (CPU speed and accuracy; each choice measured, see benchmarks/README.md):

* **On the CPU, one compiled kernel** (:mod:`._ssim_fused`, compiled by Numba on first
  use and cached on disk) streams over the rows of each image plane: it forms the five
  maps :math:`x, y, x^2, y^2, xy` of a row once, blurs them along H and W with the window
  summed in registers, computes the SSIM (or cs) map and its sum, and, where a gradient
  is needed, the derivatives and their adjoint blur, finishing each input row's gradient
  as soon as its last contribution is in. Every pixel is read from memory once and its
  gradient written once, where the PyTorch operations below make one pass over memory
  per tap and per pointwise step. On a 2-core AMD EPYC (AVX2), one thread, forward and
  backward: 1.5-3x faster than those operations, and at most a quarter of the time of the
  fastest other library (pytorch-msssim) on the benchmark shapes.
  The planes of a call are split between ``torch.get_num_threads()`` threads (the kernel
  releases the GIL; the results do not depend on the split). MS-SSIM's 2x2 averages are
  compiled too (bit for bit ``avg_pool2d``). Where Numba cannot be imported (or with
  :data:`_CPU_FUSED` off) the CPU takes the PyTorch path; both are tested against the
  references and against each other.

The PyTorch path (on a GPU, and the fallback on the CPU):

* **One blur for five maps, in dense memory.** The maps :math:`x, y, x^2, y^2, xy` are
  written straight into one stacked contiguous tensor and blurred together, separably
  (a 1-D window along H, then along W). The pointwise work that follows reads the
  blurred maps in place and writes the adjoint's inputs straight into their own stack.
  Every map stays a dense block: on an AVX2 CPU a pointwise operation on the
  channel-slice of a channels-last stack was 5.6 times slower than on a dense map (PyTorch
  does not vectorise the strided loop), and converting layouts around the convolutions
  cost as much as it saved. So on the CPU each 1-D pass is a sum of ``win_size``
  shifted slices scaled by the taps (dense, vectorised passes); for small images, two
  banded matrix products (:data:`_MATMUL_SIDES`); on a GPU, depthwise convolutions.
  Nothing is zero-filled (the adjoint's first tap sets its output; a chunk's gradient
  rows are copied and only a band's halo rows added), and each chunk is centred
  straight into the stack. On a 2-core AMD EPYC (AVX2) these took 30-40 % off the
  forward+backward time of every benchmark shape (old and new code side by side, one
  thread).
* **Chunks.** The batch is processed a few images at a time, and an image larger than a
  chunk in bands of rows (each band reads ``win_size - 1`` extra rows), so that every
  temporary stays near 2.5 MiB (:data:`_CHUNK_ELEMENTS`). Without chunks the stacked maps
  of a ``4x3x512x512`` batch are 63 MB, above glibc's mmap threshold (at most 32 MiB):
  every call then mapped fresh pages and paid about 60 000 page faults, which cost more
  than the arithmetic on some machines; with chunks the allocator recycles the same
  memory (0 page faults per call measured) and the maps stay in cache.
* **The gradient is formed in the forward pass.** The output is a mean over the map, so
  its gradient is the upstream scalar per channel times a fixed map
  :math:`G = \partial\,\mathrm{mean}/\partial x`; :math:`G` is computed chunk by chunk
  while the statistics are in cache (one adjoint blur of three maps), and the backward
  pass is one multiplication. Only :math:`G` is kept, not the statistics. Under
  ``torch.no_grad()`` it is skipped.
* **Moments about a centre.** The moments are taken of :math:`x - r` and :math:`y - r`,
  with :math:`r` the midpoint of each channel's values (added back for the luminance).
  :math:`E[x^2] - \mu_x^2` otherwise cancels catastrophically far from 0: in float32 an
  offset of 1000 gave SSIM = -4.8. Where the values of a channel still lie more than
  about two data ranges from their centre, the statistics are computed in float64 (the
  result stays float32); beyond about :math:`4 \cdot 10^4` data ranges a ``ValueError``
  asks for the right ``data_range``. MS-SSIM centres once, before its pyramid.

The statistics are computed in float32 (or float64 as above), also under
``torch.autocast``. The window is cached per size, sigma, device and dtype. On CUDA the
PyTorch path runs in one chunk; it was not tuned for the GPU (see benchmarks/README.md).

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE Trans. Image Process. 13(4), 600-612, 2004.
Z. Wang, E. P. Simoncelli and A. C. Bovik, "Multiscale structural similarity for image
quality assessment", Proc. 37th Asilomar Conf. Signals, Systems and Computers, 2003.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
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
    if (isinstance(sigma, bool) or not isinstance(sigma, (int, float))
            or not math.isfinite(sigma) or not sigma >= 1e-3):
        raise ValueError(
            f"sigma must be a positive number, finite and at least 1e-3 pixels (e.g. 1.5); got "
            f"{sigma!r}. "
            "A narrower Gaussian underflows to a single tap (use win_size=1 for that) and an "
            "infinite one is the uniform window (window='uniform')."
        )
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


def _check_inputs(x: torch.Tensor, y: torch.Tensor, min_side: int, what: str):
    """Refuse mismatched, non-finite or too small images; returns the extremes found on
    the way (:func:`_small_extremes`, None for large images), for :func:`_reference`."""
    check_pair(x, y)
    small = _small_extremes(x, y)
    for v, name in ((x, "x"), (y, "y")):
        # NaN and +-inf show up in the extremes: two fast reductions instead of
        # isfinite(v).all() (about 10x slower on the CPU); check_finite words the error
        if small is not None:
            if not small[2]:
                check_finite(v, name)
        elif v.numel() and not math.isfinite(float(v.detach().amax() + v.detach().amin())):
            check_finite(v, name)
    h, w = x.shape[-2:]
    if min(h, w) < min_side:
        raise _ImageTooSmallError(f"{what}; got images of {h}x{w}.")
    return small


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
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"gaussian_window: dtype must be a floating-point torch dtype (e.g. "
                        f"torch.float32); got {dtype!r}, whose taps would round to 0.")
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


#: On the CPU, images (or chunks) with ``H + W`` at most this are blurred by two small
#: matrix products instead of depthwise convolutions: below about 100 x 100 pixels a
#: convolution call costs far more than its arithmetic (about 0.1 ms each). Measured,
#: blur and adjoint of five maps, one thread: 64 x 64, 0.18 ms against 0.50 ms;
#: 96 x 96, 0.41 against 0.66 ms; 128 x 128, equal; larger, the convolution wins.
_MATMUL_SIDES = 200


def _by_matmul(t: torch.Tensor, h: int, w: int) -> bool:
    """Whether maps of ``h x w`` pixels on ``t``'s device are blurred by matrix products."""
    return t.device.type == "cpu" and h + w <= _MATMUL_SIDES


#: On the CPU, blur larger images by sums of shifted slices (:func:`_shift_sum`) rather
#: than depthwise convolutions, whose fast (channels-last) layout makes the pointwise work
#: around them slow (see the module docstring). A switch for the tests.
_CPU_SHIFTS = True


def _by_shifts(t: torch.Tensor) -> bool:
    """Whether maps on ``t``'s device (too large for matrix products) are blurred by
    shifted sums."""
    return t.device.type == "cpu" and _CPU_SHIFTS


def _band(n: int, win: torch.Tensor) -> torch.Tensor:
    """The (n - t + 1, n) matrix of 'valid' filtering by ``win`` (t taps): row i holds
    ``win`` in columns i .. i + t - 1."""
    t = win.numel()
    band = win.new_zeros(n - t + 1, n)
    band.as_strided((n - t + 1, t), (n + 1, 1)).copy_(win.expand(n - t + 1, t))
    return band


def _blur(stacked: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' filtering of every channel of contiguous ``stacked`` (N, K, H, W)
    by ``win``, returned contiguous.

    On the CPU, sums of shifted slices (:func:`_shift_sum`), along H then W, or for small
    maps (:data:`_MATMUL_SIDES`) the products :math:`A_H X A_W^T` with the banded matrices
    of :func:`_band`; elsewhere (and with :data:`_CPU_SHIFTS` off), one depthwise (grouped)
    convolution along H, then one along W, over all ``K`` channels at once.
    """
    k, t = stacked.shape[1], win.numel()
    h, w = stacked.shape[-2:]
    if _by_matmul(stacked, h, w):
        return torch.matmul(torch.matmul(_band(h, win), stacked), _band(w, win).T)
    if _by_shifts(stacked):
        return _shift_sum(_shift_sum(stacked, win, -2), win, -1)
    out = F.conv2d(_channels_last(stacked), win.view(1, 1, t, 1).expand(k, 1, t, 1), groups=k)
    return F.conv2d(out, win.view(1, 1, 1, t).expand(k, 1, 1, t), groups=k).contiguous()


def _shift_sum(x: torch.Tensor, win: torch.Tensor, dim: int) -> torch.Tensor:
    """'Valid' filtering of contiguous ``x`` along ``dim`` by ``win``: the sum of ``t``
    shifted slices, each scaled by a tap (dense, vectorised passes, no layout change)."""
    taps = win.tolist()
    t, n = len(taps), x.shape[dim] - len(taps) + 1
    out = torch.mul(x.narrow(dim, 0, n), taps[0])
    for k in range(1, t):
        out.add_(x.narrow(dim, k, n), alpha=taps[k])
    return out


def _shift_sum_adjoint(g: torch.Tensor, win: torch.Tensor, dim: int) -> torch.Tensor:
    """The adjoint of :func:`_shift_sum`: each tap's scaled copy of ``g`` added back at
    its shift ('full' filtering with the flipped window)."""
    taps = win.tolist()
    t = len(taps)
    shape = list(g.shape)
    n = shape[dim]
    shape[dim] = n + t - 1
    out = g.new_empty(shape)
    torch.mul(g, taps[0], out=out.narrow(dim, 0, n))  # the first tap sets, no zero fill
    out.narrow(dim, n, t - 1).zero_()
    for k in range(1, t):
        out.narrow(dim, k, n).add_(g, alpha=taps[k])
    return out


def _blur_adjoint(g: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`_blur`: 'full' filtering from (N, K, H', W') back to (N, K, H, W).

    On the CPU, :func:`_shift_sum_adjoint` along W then H, or for small maps
    :math:`A_H^T G A_W`; elsewhere a zero-padded convolution with the flipped window
    (faster than ``conv_transpose2d``). Contiguous in, contiguous out, like :func:`_blur`.
    """
    k, t = g.shape[1], win.numel()
    h, w = g.shape[-2] + t - 1, g.shape[-1] + t - 1
    if _by_matmul(g, h, w):
        return torch.matmul(torch.matmul(_band(h, win).T, g), _band(w, win))
    if _by_shifts(g):
        return _shift_sum_adjoint(_shift_sum_adjoint(g, win, -1), win, -2)
    w_flip = win.flip(0)
    out = F.conv2d(_channels_last(g), w_flip.view(1, 1, 1, t).expand(k, 1, 1, t), groups=k,
                   padding=(0, t - 1))
    return F.conv2d(out, w_flip.view(1, 1, t, 1).expand(k, 1, t, 1), groups=k,
                    padding=(t - 1, 0)).contiguous()


def _channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` in channels-last memory, where PyTorch's CPU depthwise convolution is about
    twice as fast as in the contiguous layout (one copy, well worth it)."""
    return t.contiguous(memory_format=torch.channels_last)


def _reference(x: torch.Tensor, y: torch.Tensor,
               small: tuple | None = None) -> tuple[torch.Tensor, float]:
    """Per-(image, channel) centre ``r`` of the values of both images, and their half-spread.

    ``r`` (N, C, 1, 1) is the midpoint of ``[min(x, y), max(x, y)]`` in each channel, and
    ``spread = max |v - r|`` over both images and all channels (a Python float). The
    moments are computed from ``x - r`` and ``y - r``. ``small``: the extremes
    :func:`_check_inputs` already found for these values (computed here if None).
    """
    small = small if small is not None else _small_extremes(x, y)
    if small is not None:  # numpy arrays: a few microseconds instead of five operations
        lo, hi = small[0].numpy(), small[1].numpy()
        r = torch.from_numpy(0.5 * (lo + hi))[..., None, None]
        return r, float((hi - lo).max()) / 2
    # amin and amax over (H, W): two vectorised passes, faster than one aminmax(dim=2)
    lo = torch.minimum(x.amin(dim=(2, 3)), y.amin(dim=(2, 3)))
    hi = torch.maximum(x.amax(dim=(2, 3)), y.amax(dim=(2, 3)))
    r = (0.5 * (lo + hi))[..., None, None]
    return r, float((hi - lo).max()) / 2


#: Up to this many elements per tensor, the CPU finds the extremes of ``x`` and ``y`` (for
#: the finite check and the centre) in one compiled pass instead of four PyTorch
#: reductions, whose fixed cost dominates a small image's SSIM; above, PyTorch's
#: vectorised reductions are faster than the kernel's scalar loop.
_SMALL_ELEMENTS = 1 << 16


def _small_extremes(x: torch.Tensor, y: torch.Tensor):
    """``(lo, hi, finite)``: per-(image, channel) minimum and maximum over both images
    (N, C), and whether every value is finite, by :func:`._ssim_fused.plane_extremes`;
    None where that kernel does not apply (see :data:`_SMALL_ELEMENTS`)."""
    if not 0 < x.numel() <= _SMALL_ELEMENTS or x.dtype not in (torch.float32, torch.float64):
        return None
    kernel = _fused_kernel(x)
    if kernel is None:
        return None
    n, c = x.shape[:2]
    lo, hi = x.new_empty(n, c), x.new_empty(n, c)
    finite = kernel.plane_extremes(x.detach().contiguous().view(n * c, -1).numpy(),
                                   y.detach().contiguous().view(n * c, -1).numpy(),
                                   lo.view(-1).numpy(), hi.view(-1).numpy())
    return lo, hi, bool(finite)


def _raw_moments(
    x: torch.Tensor, y: torch.Tensor, win: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local means, variances (not yet clamped) and covariance, each (N, C, H', W').

    The moments are formed from the images minus a per-channel centre (see
    :func:`_reference`), so an offset far outside ``[0, data_range]`` costs no precision;
    the means add the centre back.
    """
    c = x.shape[1]
    r, _ = _reference(x.detach(), y.detach())
    xc, yc = x - r, y - r
    stats = _blur(torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1), win)
    m_x, m_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)
    return m_x + r, m_y + r, e_xx - m_x * m_x, e_yy - m_y * m_y, e_xy - m_x * m_y


def _moments(
    x: torch.Tensor, y: torch.Tensor, win: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local means, variances (clamped at 0) and covariance, each (N, C, H', W')."""
    mu_x, mu_y, var_x, var_y, cov = _raw_moments(x, y, win)
    return mu_x, mu_y, var_x.clamp_min(0), var_y.clamp_min(0), cov


#: Input elements (pixels x channels) per chunk on the CPU: the stacked statistics of a
#: chunk are 20 bytes per element (5 float32 maps), 2.5 MiB here, far below glibc's mmap
#: threshold (at most 32 MiB), so temporaries are recycled by the allocator instead of
#: mapped and page-faulted afresh on every call, and mostly stay in cache. Chosen by an
#: interleaved CPU-time comparison of 2**16 to 2**20 (forward+backward, one thread): 2**17
#: was within 5 % of the fastest for every benchmark shape; 2**20 was 5-45 % slower.
_CHUNK_ELEMENTS = 1 << 17


def _chunks(n: int, c: int, h: int, w: int, t: int, budget: int) -> list[tuple[int, int, int, int]]:
    """Chunks ``(b0, b1, r0, r1)``: images ``b0:b1`` and SSIM-map rows ``r0:r1``.

    Whole images are grouped while they fit in ``budget`` elements; an image larger than
    that is cut into bands of output rows (each band reads ``t - 1`` extra input rows).
    """
    h_out = h - t + 1
    per_image = c * h * w
    if per_image <= budget:
        nb = max(1, budget // per_image)
        return [(b, min(b + nb, n), 0, h_out) for b in range(0, n, nb)]
    rows = max(budget // (c * w) - (t - 1), 4 * (t - 1), 16)  # at most 25 % halo
    bands = [(r, min(r + rows, h_out)) for r in range(0, h_out, rows)]
    return [(b, b + 1, r0, r1) for b in range(n) for (r0, r1) in bands]


def _stack_moments(x: torch.Tensor, y: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """``a, b, a*a, b*b, a*b`` with ``a = x - centre``, ``b = y - centre`` (each
    (n, C, h, W); ``centre`` (n, C, 1, 1)), stacked along channels, contiguous.

    Each map is written once, straight into the stacked tensor (the centred images and
    the products are not formed first and then copied, as ``torch.cat`` would).
    """
    c = x.shape[1]
    n, _, h, w = x.shape
    out = x.new_empty(n, 5 * c, h, w)
    a, b = out[:, :c], out[:, c:2 * c]
    torch.sub(x, centre, out=a)
    torch.sub(y, centre, out=b)
    torch.mul(a, a, out=out[:, 2 * c:3 * c])
    torch.mul(b, b, out=out[:, 3 * c:4 * c])
    torch.mul(a, b, out=out[:, 4 * c:])
    return out


def _ssim_chunk(x, y, centre, r, win, c1, c2, cs_only, need_x, need_y, inv_m):
    """SSIM (or cs) map sums of one chunk, and the chunk's input gradients of their mean.

    ``x``, ``y`` (n, C, h, W): the moments are taken of ``x - centre`` and
    ``y - centre``; the true values are those plus ``r`` (``centre`` and ``r`` are
    (n, C, 1, 1)), and ``r`` matters only to the luminance term.
    Returns ``(sums (n, C), gx, gy)``; ``gx``/``gy`` are contiguous (n, C, h, W), or None.
    """
    c = x.shape[1]
    stacked = _stack_moments(x, y, centre)
    x, y = stacked[:, :c], stacked[:, c:2 * c]  # centred, dense
    blurred = _blur(stacked, win)
    m_x, m_y = blurred[:, :c], blurred[:, c:2 * c]
    e_xx, e_yy, e_xy = blurred[:, 2 * c:3 * c], blurred[:, 3 * c:4 * c], blurred[:, 4 * c:]
    var_x = torch.addcmul(e_xx, m_x, m_x, value=-1, out=torch.empty_like(m_x))
    var_y = torch.addcmul(e_yy, m_y, m_y, value=-1, out=torch.empty_like(m_y))
    cov = torch.addcmul(e_xy, m_x, m_y, value=-1, out=torch.empty_like(m_x))
    grad = need_x or need_y
    if grad:
        keep_x, keep_y = var_x >= 0, var_y >= 0
    b2 = var_x.clamp_min_(0).add_(var_y.clamp_min_(0)).add_(c2)
    cs = cov.mul_(2).add_(c2).div_(b2)
    if cs_only:
        value = cs
    else:
        mu_x, mu_y = m_x + r, m_y + r
        c1t = m_x.new_full((), c1)
        # A1 = C1 + mu_x mu_y + mu_x mu_y and B1 = C1 + mu_x^2 + mu_y^2 by the same two
        # steps: equal, bit for bit, when x == y (luminance exactly 1)
        lum = torch.addcmul(c1t, mu_x, mu_y).addcmul_(mu_x, mu_y)
        b1 = torch.addcmul(c1t, mu_x, mu_x).addcmul_(mu_y, mu_y)
        lum.div_(b1)
        value = lum * cs
    sums = value.sum(dim=(2, 3))
    if not grad:
        return sums, None, None
    # The derivatives of the mean with k = 2 / m, so that the stack holds d_mx, -2 d_exx
    # and d_cov = 2 d_a2 directly (the factors 2 of dE_xx/dx = 2x, dA2/dE_xy = 2 and
    # dB1/dmu = 2 mu fold in; signs go into the coefficients):
    #   G = w* d_mx - x (w* (-2 d_exx)) + y (w* d_cov)
    k = 2.0 * inv_m
    b2.reciprocal_().mul_(k)  # k / B2
    back_in = x.new_empty(x.shape[0], (5 if need_y else 3) * c, *m_x.shape[-2:])
    d_xy = back_in[:, 2 * c:3 * c]  # d_cov, written straight into the stack
    neg_exx = back_in[:, c:2 * c]  # -2 d_exx, likewise
    if cs_only:
        d_xy.copy_(b2)
        neg_b2 = cs.mul_(b2)
    else:
        torch.mul(lum, b2, out=d_xy)
        neg_b2 = value.mul(b2)
        b1.reciprocal_().mul_(k)
        neg_b1 = value.mul_(b1)  # -d/dB1
        d_a1 = cs.mul_(b1)
    torch.mul(neg_b2, keep_x, out=neg_exx)
    d_mx = torch.mul(m_x, neg_exx).addcmul_(m_y, d_xy, value=-1)
    if not cs_only:
        d_mx.addcmul_(mu_y, d_a1).addcmul_(mu_x, neg_b1, value=-1)
    back_in[:, :c].copy_(d_mx)
    if need_y:
        neg_eyy = back_in[:, 4 * c:5 * c]
        torch.mul(neg_b2, keep_y, out=neg_eyy)
        d_my = torch.mul(m_y, neg_eyy).addcmul_(m_x, d_xy, value=-1)
        if not cs_only:
            d_my.addcmul_(mu_x, d_a1).addcmul_(mu_y, neg_b1, value=-1)
        back_in[:, 3 * c:4 * c].copy_(d_my)
    back = _blur_adjoint(back_in, win).split(c, dim=1)
    gx = back[0].addcmul(x, back[1], value=-1).addcmul_(y, back[2]) if need_x else None
    gy = back[3].addcmul(y, back[4], value=-1).addcmul_(x, back[2]) if need_y else None
    return sums, gx, gy


def _put_rows(g: torch.Tensor, part: torch.Tensor, r0: int, r1: int, t: int) -> None:
    """Write a chunk's gradient (input rows ``r0 .. r1 + t - 1``) into ``g``.

    Bands of one image come in order (:func:`_chunks`), so the first ``t - 1`` rows of a
    band after the first were written by the band before: those are added to, the rest
    copied (every row of ``g`` is written, so ``g`` needs no zero fill).
    """
    if r0 == 0:
        g[:, :, :r1 + t - 1].copy_(part)
        return
    g[:, :, r0:r0 + t - 1] += part[:, :, :t - 1]
    g[:, :, r0 + t - 1:r1 + t - 1].copy_(part[:, :, t - 1:])


#: On the CPU, compute SSIM with the compiled kernel of :mod:`._ssim_fused` where Numba
#: is installed (it is a dependency); off, or without Numba, the PyTorch operations
#: above. A switch for the tests and the benchmark.
_CPU_FUSED = True


@functools.lru_cache(maxsize=1)
def _load_fused():
    """The module :mod:`._ssim_fused` (its kernel compiles on first use), or None where
    Numba cannot be imported."""
    try:
        from . import _ssim_fused
    except ImportError:  # pragma: no cover - numba is a dependency
        return None
    return _ssim_fused


def _fused_kernel(x: torch.Tensor, win: torch.Tensor | None = None):
    """The fused CPU kernel's module where it applies to ``x`` and ``win``, else None.

    It applies on the CPU, for float32 and float64, and for symmetric windows (its adjoint
    uses the window as its own flip; the Gaussian and uniform windows are symmetric).
    """
    if not _CPU_FUSED or x.device.type != "cpu" or x.dtype not in (torch.float32,
                                                                    torch.float64):
        return None
    if win is not None:
        taps = win.tolist()
        if taps != taps[::-1]:
            return None
    return _load_fused()


#: The fused kernel splits the image planes of a call between this many threads at most
#: (``torch.get_num_threads()``, like PyTorch's own operations), each taking at least
#: this many pixels: below, starting threads costs more than it saves.
_PIXELS_PER_THREAD = 1 << 16


def _thread_pool(threads: int) -> concurrent.futures.ThreadPoolExecutor:
    """The threads of this process: a forked child (e.g. a ``multiprocessing`` worker)
    gets its own, as the parent's threads do not exist there (their pool would hang)."""
    return _pool_of_process(threads, os.getpid())


@functools.lru_cache(maxsize=4)
def _pool_of_process(threads: int, pid: int) -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="lossbook-ssim")


def _fused_means(kernel, x, y, win, c1, c2, cs_only, r, shift, need_x, need_y):
    """:class:`_SSIMMean`'s forward by the compiled kernel: per-channel means (N, C) and
    the gradient maps of the means (or None), as the chunked PyTorch path computes them.

    The planes (images x channels) are split between up to ``torch.get_num_threads()``
    threads (the kernel releases the GIL), one plane at least per thread. Plain NumPy
    around the kernel: for a small image each PyTorch operation here would cost as much
    as the kernel's work.
    """
    n, c, h, w = x.shape
    t = win.numel()
    m = (h - t + 1) * (w - t + 1)
    planes = n * c
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    gx = torch.empty(n, c, h, w, dtype=x.dtype) if need_x else None
    gy = torch.empty(n, c, h, w, dtype=x.dtype) if need_y else None
    unused = np.empty((0, 0, 0), dtype)
    centre = r.detach().contiguous().view(planes).numpy()
    lum = centre if shift is None else centre + shift.detach().contiguous().view(planes).numpy()
    inputs = (x.detach().contiguous().view(planes, h, w).numpy(),
              y.detach().contiguous().view(planes, h, w).numpy(), centre, lum)
    sums = np.empty(planes, np.float64)
    outputs = (sums, unused if gx is None else gx.view(planes, h, w).numpy(),
               unused if gy is None else gy.view(planes, h, w).numpy())
    fixed = (win.detach().contiguous().numpy(), np.array([c1, c2, 2.0 / m, 0.0, 1.0], dtype),
             bool(cs_only), bool(need_x), bool(need_y))
    threads = min(torch.get_num_threads(), planes, max(1, planes * h * w // _PIXELS_PER_THREAD))
    if threads <= 1:
        kernel.ssim_planes(*inputs, *fixed, *outputs)
    else:
        def run(lo: int, hi: int) -> None:
            kernel.ssim_planes(*(a[lo:hi] for a in inputs), *fixed,
                               *(o[lo:hi] if o.size else o for o in outputs))

        bounds = [planes * k // threads for k in range(threads + 1)]
        pool = _thread_pool(threads)
        jobs = [pool.submit(run, lo, hi) for lo, hi in zip(bounds, bounds[1:])]
        for job in jobs:
            job.result()
    return torch.from_numpy((sums / m).astype(dtype)).view(n, c), gx, gy


class _Pool2(torch.autograd.Function):
    """``F.avg_pool2d(x, 2, ceil_mode=True)`` by the compiled kernel, bit for bit (forward
    and backward of a ``4x3x512x512`` batch: 10 ms against PyTorch's 16 ms, one thread)."""

    @staticmethod
    def forward(ctx, x, kernel):  # noqa: D102
        n, c, h, w = x.shape
        dtype = np.float64 if x.dtype == torch.float64 else np.float32
        factors = np.array([0.5, 0.25, 1.0], dtype)
        out = x.new_empty(n, c, (h + 1) // 2, (w + 1) // 2)
        kernel.pool2(x.detach().contiguous().view(n * c, h, w).numpy(), factors,
                     out.view(n * c, *out.shape[-2:]).numpy())
        ctx.kernel, ctx.factors, ctx.shape = kernel, factors, x.shape
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # noqa: D102
        n, c, h, w = ctx.shape
        out = g.new_empty(n, c, h, w)
        ctx.kernel.pool2_adjoint(g.contiguous().view(n * c, *g.shape[-2:]).numpy(), ctx.factors,
                                 out.view(n * c, h, w).numpy())
        return out, None


def _pool2(x: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """MS-SSIM's 2x2 average (ceil mode), by the compiled kernel where SSIM uses it."""
    kernel = _fused_kernel(x, win)
    if kernel is None:
        return F.avg_pool2d(x, 2, ceil_mode=True)
    return _Pool2.apply(x, kernel)


class _SSIMMean(torch.autograd.Function):
    r"""Per-channel mean of the SSIM map (or of the cs map), gradient computed with it.

    The output is a mean over the map, so its gradient with respect to the input is the
    upstream scalar per channel times a fixed map :math:`G = \partial\,\mathrm{mean}/
    \partial x`. :math:`G` is computed in the forward pass, chunk by chunk (see
    :func:`_chunks`), while each chunk's statistics are still in cache: with
    :math:`s = A_1 A_2 / (B_1 B_2)`, :math:`A_1 = 2\mu_x\mu_y + C_1`,
    :math:`B_1 = \mu_x^2 + \mu_y^2 + C_1`, :math:`A_2 = 2\sigma_{xy} + C_2`,
    :math:`B_2 = \sigma_x^2 + \sigma_y^2 + C_2`, the derivatives with respect to the
    blurred maps :math:`\mu_x, E[x^2], E[xy]` are formed pointwise and sent back through
    the adjoint blur once (3 maps per channel, 5 when ``y`` needs a gradient too):
    :math:`G = w \star g_{\mu_x} + 2x\,(w \star g_{xx}) + y\,(w \star g_{xy})`. The
    backward pass is one multiplication. Only :math:`G` is kept for it (one map of the
    input's size), not the statistics; the tests check it with ``gradcheck``.
    """

    @staticmethod
    def forward(ctx, x, y, win, c1, c2, cs_only, r, shift):  # noqa: D102
        need_x, need_y = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        kernel = _fused_kernel(x, win)
        if kernel is not None:
            means, gx, gy = _fused_means(kernel, x, y, win, c1, c2, cs_only, r, shift, need_x,
                                         need_y)
            ctx.save_for_backward(gx, gy)
            return means
        if shift is None:
            shift = torch.zeros_like(r)
        n, c, h, w = x.shape
        t = win.numel()
        inv_m = 1.0 / ((h - t + 1) * (w - t + 1))
        budget = _CHUNK_ELEMENTS if x.device.type == "cpu" else 1 << 62
        sums = x.new_zeros(n, c)
        gx = torch.empty_like(x, memory_format=torch.contiguous_format) if need_x else None
        gy = torch.empty_like(y, memory_format=torch.contiguous_format) if need_y else None
        for b0, b1, r0, r1 in _chunks(n, c, h, w, t, budget):
            rows = slice(r0, r1 + t - 1)
            rc = r[b0:b1]
            s, gxc, gyc = _ssim_chunk(x[b0:b1, :, rows], y[b0:b1, :, rows], rc,
                                      rc + shift[b0:b1], win, c1, c2, cs_only, need_x, need_y,
                                      inv_m)
            sums[b0:b1] += s
            if gxc is not None:
                _put_rows(gx[b0:b1], gxc, r0, r1, t)
            if gyc is not None:
                _put_rows(gy[b0:b1], gyc, r0, r1, t)
        ctx.save_for_backward(gx, gy)
        return sums / ((h - t + 1) * (w - t + 1))  # a division: exactly 1 when x == y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):  # noqa: D102
        gx, gy = ctx.saved_tensors
        g = g[..., None, None]
        return (None if gx is None else g * gx, None if gy is None else g * gy,
                None, None, None, None, None, None)


#: float32 statistics are used while the values of each channel stay within this many
#: ``sqrt(C2)`` (= ``k2 * data_range``) of their centre (66 x 0.03 = 2 data ranges for
#: the defaults); beyond, float64 (rounding of the variances in flat windows would
#: otherwise move SSIM by more than about 1e-3); beyond the float64 limit, an error.
_F32_SPREAD, _F64_SPREAD = 66.0, 1.5e6


def _statistics_dtype(p: _Prepared, spread: float) -> torch.dtype:
    """float64 where float32 statistics would be inaccurate (see :data:`_F32_SPREAD`)."""
    scale = math.sqrt(p.c2)
    if spread > _F64_SPREAD * scale:
        raise ValueError(
            f"the image values spread over {2 * spread:.3g}, {2 * spread / p.data_range:.3g} "
            f"times data_range={p.data_range:g}: SSIM's statistics cannot be computed "
            "accurately that far outside [0, data_range]. Pass the images' real data_range "
            "(e.g. 255 for 8-bit values) or rescale them."
        )
    if p.x.dtype == torch.float32 and spread > _F32_SPREAD * scale:
        return torch.float64
    return p.x.dtype


def _ssim_mean(p: _Prepared, *, cs_only: bool = False,
               shift: torch.Tensor | None = None, small: tuple | None = None) -> torch.Tensor:
    """Per-channel mean (N, C) of the SSIM map of ``p.x, p.y``, or of the cs map.

    ``shift`` (N, C, 1, 1): ``p.x`` and ``p.y`` were centred by subtracting it (as
    :func:`ms_ssim` does before its pyramid); it is added back for the luminance. Computed
    in the dtype of ``p.x`` (float32 or float64), or in float64 where the values spread too
    far for float32 (see :data:`_F32_SPREAD`), and returned in ``p.x.dtype``. ``small``:
    the extremes of ``p.x, p.y`` from :func:`_check_inputs`, if any.
    """
    if not torch.is_grad_enabled():  # no_grad: skip the gradient maps (needs_input_grad
        p = p._replace(x=p.x.detach(), y=p.y.detach())  # would still say True)
    r, spread = _reference(p.x.detach(), p.y.detach(), small)
    dtype = _statistics_dtype(p, spread)
    if dtype == p.x.dtype:
        return _SSIMMean.apply(p.x, p.y, p.win, p.c1, p.c2, cs_only, r, shift)
    out = _SSIMMean.apply(p.x.to(dtype), p.y.to(dtype), p.win.to(dtype), p.c1, p.c2,
                          cs_only, r.to(dtype), None if shift is None else shift.to(dtype))
    return out.to(p.x.dtype)


class _Prepared(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor
    win: torch.Tensor
    c1: float
    c2: float
    data_range: float


def _prepare(x, y, data_range, win_size, sigma, k1, k2, window) -> _Prepared:
    L = check_data_range(data_range)
    _check_window_args(win_size, sigma, window)
    _check_k(k1, k2)
    dtype = _compute_dtype(x)
    win = _window(window, win_size, float(sigma), x.device, dtype)
    return _Prepared(x.to(dtype), y.to(dtype), win, (k1 * L) ** 2, (k2 * L) ** 2, L)


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
        :math:`R`, the width of the value range: 1.0 for [0, 1] images, 255 for 8-bit.
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
    small = _check_inputs(x, y, win_size, _too_small(win_size))
    with torch.autocast(device_type=x.device.type, enabled=False):
        dtype = _statistics_dtype(p, _reference(p.x.detach(), p.y.detach(), small)[1])
        mu_x, mu_y, var_x, var_y, cov = _moments(p.x.to(dtype), p.y.to(dtype), p.win.to(dtype))
        c1, c2 = p.c1, p.c2
        c3 = c2 / 2
        sd_x, sd_y = var_x.sqrt(), var_y.sqrt()
        lum = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
        con = (2 * sd_x * sd_y + c2) / (var_x + var_y + c2)
        struc = (cov + c3) / (sd_x * sd_y + c3)
        maps = (lum, con, struc, lum * con * struc)
        return SSIMComponents(*(m.to(p.x.dtype) for m in maps))


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
        :math:`R` in :math:`C_i = (K_i R)^2`: 1.0 for [0, 1] images (default), 255 for 8-bit.
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
    small = _check_inputs(x, y, win_size, _too_small(win_size))
    with torch.autocast(device_type=x.device.type, enabled=False):
        per_channel = _ssim_mean(p, small=small)
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
    small = _check_inputs(
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
        # centre once, so that the pyramid's averages lose no precision to an offset
        r, spread = _reference(p.x.detach(), p.y.detach(), small)
        dtype = _statistics_dtype(p, spread)
        a, b = p.x.to(dtype) - r.to(dtype), p.y.to(dtype) - r.to(dtype)
        value = None
        for j, beta in enumerate(betas):
            last = j == scales - 1
            term = _ssim_mean(p._replace(x=a, y=b, win=p.win.to(dtype)), cs_only=not last,
                              shift=r.to(dtype))
            if not last:
                a, b = _pool2(a, p.win), _pool2(b, p.win)
            factor = _safe_pow(term, beta)  # (N, C)
            value = factor if value is None else value * factor
        per_image = value.mean(dim=1).to(p.x.dtype)
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
