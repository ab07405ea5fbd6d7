r"""Synthetic-aperture radar (SAR) toolkit: speckle, decibels, ENL and the Lee filter.

A SAR intensity image is the clean reflectivity times *speckle*. For fully developed
speckle averaged over :math:`L` independent looks, the speckle :math:`s` follows a Gamma
law of shape :math:`L` and scale :math:`1/L`:

.. math::
    z = y\,s, \qquad p(s) = \frac{L^L s^{L-1} e^{-Ls}}{\Gamma(L)}, \qquad
    \mathbb{E}[s] = 1, \quad \operatorname{Var}[s] = 1/L.

In the log domain the noise becomes additive but **biased**:
:math:`\mathbb{E}[\ln s] = \psi(L) - \ln L < 0` and :math:`\operatorname{Var}[\ln s] =
\psi'(L)` (digamma and trigamma). In decibels (:math:`10\log_{10}`) both scale by
:math:`10/\ln 10` (the variance by its square): for :math:`L=1` the mean is
:math:`-2.507` dB and the standard deviation :math:`5.570` dB.

The equivalent number of looks, :math:`\mathrm{ENL} = \mu^2/\sigma^2` over a homogeneous
region of an intensity image, is :math:`L` for pure speckle and grows as a filter
removes speckle.

Notation (the book's): :math:`y` the clean intensity, :math:`z` the speckled observation,
:math:`x` an estimate. Images are *intensities* (non-negative) of shape ``(N, C, H, W)``
unless a function says otherwise; randomness comes from an optional ``torch.Generator``.

References
----------
J.-S. Lee, "Digital image enhancement and noise filtering by use of local statistics",
IEEE TPAMI 2(2), 1980.
H. Xie, L. E. Pierce, F. T. Ulaby, "Statistical properties of logarithmically transformed
speckle", IEEE TGRS 40(3), 2002.
G. Chierchia, D. Cozzolino, G. Poggi, L. Verdoliva, "SAR image despeckling through
convolutional neural networks" (SAR-CNN), IGARSS 2017.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._validate import (
    check_finite,
    check_finite_result,
    check_image,
    check_number,
    check_pair,
    check_reduction,
)

__all__ = [
    "gamma_speckle",
    "add_speckle",
    "to_db",
    "from_db",
    "to_unit_db",
    "from_unit_db",
    "DB_PER_NEPER",
    "log_speckle_mean",
    "log_speckle_var",
    "log_speckle_skewness",
    "log_speckle_excess_kurtosis",
    "debias_log",
    "local_stats",
    "enl",
    "homogeneous_mask",
    "lee_filter",
    "box_filter",
    "enl_loss",
]

#: Decibels per unit of natural log: ``10 / ln 10`` (about 4.343).
DB_PER_NEPER = 10.0 / math.log(10.0)


# --------------------------------------------------------------------------- validation
def _check_looks(looks: object) -> float:
    if isinstance(looks, bool) or not isinstance(looks, (int, float)):
        raise TypeError(f"looks must be a positive number (e.g. 1, 4); got {type(looks).__name__}.")
    if not (looks > 0 and math.isfinite(looks)):
        raise ValueError(
            f"looks must be positive and finite (the number of looks L of the speckle, "
            f"L = 1 for single-look data); got {looks!r}."
        )
    return float(looks)


def _check_intensity(x: torch.Tensor, name: str = "x") -> None:
    check_finite(x, name)
    if bool((x < 0).any()):
        raise ValueError(
            f"{name} must be a non-negative intensity; got a minimum of "
            f"{float(x.detach().min()):.4g} "
            f"({int((x < 0).sum())} negative values). If {name} is in dB, convert it with "
            "from_db first; if it is an amplitude, square it."
        )


def _check_size(size: object, name: str = "size") -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 3 or size % 2 == 0:
        raise ValueError(f"{name} must be an odd int >= 3 (the window side); got {size!r}.")
    return size


def _check_positive(value: object, name: str, meaning: str) -> float:
    return check_number(value, name, positive=True, meaning=meaning)


def _check_float_dtype(dtype: object) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype (e.g. torch.float32); "
                        f"got {dtype!r}. Speckle is a real-valued multiplier.")
    return dtype


# ----------------------------------------------------------------------------- speckle
def gamma_speckle(
    shape: tuple[int, ...] | torch.Size,
    looks: float = 1,
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Draw speckle :math:`s \sim \mathrm{Gamma}(L, 1/L)` (mean 1, variance :math:`1/L`).

    Uses the Marsaglia-Tsang (2000) rejection sampler driven by ``generator``'s normals
    and uniforms (``torch._standard_gamma`` takes no generator), so results are
    reproducible. For :math:`L < 1` it samples :math:`\mathrm{Gamma}(L+1)` and multiplies
    by :math:`U^{1/L}`.

    Parameters
    ----------
    shape : tuple of int
        Output shape.
    looks : float
        :math:`L > 0`; need not be an integer.
    generator : torch.Generator, optional
        Source of randomness; on ``device``.
    dtype, device
        Of the output (``device`` defaults to the generator's).

    Returns
    -------
    torch.Tensor
        Positive samples of the given shape.

    Reference: G. Marsaglia, W. W. Tsang, "A simple method for generating gamma
    variables", ACM TOMS 26(3), 2000.
    """
    L = _check_looks(looks)
    _check_float_dtype(dtype)
    if device is None:
        device = generator.device if generator is not None else "cpu"
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise TypeError(f"shape must be a tuple of ints; got {shape!r}.") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"shape must not have negative sizes; got {shape}.")
    work = torch.float64
    a = L + 1.0 if L < 1 else L
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(shape, dtype=work, device=device).reshape(-1)
    todo = torch.arange(out.numel(), device=device)
    while todo.numel() > 0:
        z = torch.randn(todo.numel(), generator=generator, dtype=work, device=device)
        u = torch.rand(todo.numel(), generator=generator, dtype=work, device=device)
        v = (1.0 + c * z) ** 3
        ok = v > 0
        logv = torch.log(torch.where(ok, v, torch.ones_like(v)))
        ok &= torch.log(u) < 0.5 * z * z + d - d * v + d * logv
        out[todo[ok]] = d * v[ok]
        todo = todo[~ok]
    if L < 1:
        u = torch.rand(out.numel(), generator=generator, dtype=work, device=device)
        out = out * u.pow(1.0 / L)
    return (out / L).reshape(shape).to(dtype)


def add_speckle(
    x: torch.Tensor,
    looks: float = 1,
    generator: torch.Generator | None = None,
    *,
    amplitude: bool = False,
) -> torch.Tensor:
    r"""Multiply a clean image by fully developed speckle with ``looks`` looks.

    Intensity (default): :math:`z = y\,s`, :math:`s \sim \mathrm{Gamma}(L, 1/L)`, so
    :math:`\mathbb{E}[y] = x` and :math:`\operatorname{Var}[y] = x^2/L`.
    Amplitude (``amplitude=True``, ``x`` is an amplitude :math:`\sqrt{\text{intensity}}`):
    :math:`z = y\sqrt{s}` (Nakagami-distributed speckle; Rayleigh for :math:`L=1`).

    Parameters
    ----------
    x : torch.Tensor
        Clean, non-negative image(s), any shape (usually ``(N, C, H, W)``).
    looks : float
        :math:`L > 0` (1 for single-look data; larger is less noisy).
    generator : torch.Generator, optional
        For reproducible noise (on ``x``'s device).
    amplitude : bool
        Treat ``x`` as an amplitude image (see above).

    Returns
    -------
    torch.Tensor
        The speckled image, same shape, dtype and device as ``x``.

    Raises
    ------
    ValueError
        If ``looks <= 0`` or ``x`` has negative values.
    """
    if not isinstance(x, torch.Tensor) or not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point torch.Tensor; got {type(x).__name__}"
                        + (f" of dtype {x.dtype}" if isinstance(x, torch.Tensor) else "") + ".")
    _check_looks(looks)
    _check_intensity(x)
    s = gamma_speckle(x.shape, looks, generator, dtype=x.dtype, device=x.device)
    return x * (s.sqrt() if amplitude else s)


# ------------------------------------------------------------------------------ decibels
def to_db(x: torch.Tensor, floor: float = 1e-10) -> torch.Tensor:
    r"""Intensity to decibels, :math:`10\log_{10}\max(x, \text{floor})`.

    Parameters
    ----------
    x : torch.Tensor
        Non-negative intensity (square an amplitude first).
    floor : float
        Smallest intensity kept (default ``1e-10``, i.e. -100 dB): zeros and values below
        it are clipped to it, so the logarithm stays finite. The gradient is zero where the
        floor is active.

    Raises
    ------
    ValueError
        On negative (or non-finite) values, or a non-positive floor.
    """
    floor = _check_positive(floor, "floor", "the smallest intensity kept, e.g. 1e-10")
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}.")
    _check_intensity(x)
    if x.is_floating_point() and floor > torch.finfo(x.dtype).max:
        raise ValueError(f"floor={floor:g} does not fit in {x.dtype} (largest "
                         f"{torch.finfo(x.dtype).max:g}); use a floor like 1e-10.")
    return 10.0 * torch.log10(x.clamp_min(floor))


def from_db(x: torch.Tensor) -> torch.Tensor:
    r"""Decibels to intensity, :math:`10^{x/10}` (the inverse of :func:`to_db` above the floor)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}.")
    check_finite(x, "x")
    return check_finite_result(torch.pow(10.0, x / 10.0), "from_db(x)",
                               "The dB values are too large for the dtype (float32 holds "
                               "intensities up to about +385 dB); use float64.")


def to_unit_db(x: torch.Tensor, floor_db: float = -30.0) -> torch.Tensor:
    r"""Intensity to a dB image rescaled so that ``[floor_db, 0]`` dB maps to ``[0, 1]``.

    .. math:: t(x) = \frac{10\log_{10}\max(x, 10^{f/10}) - f}{-f}, \qquad f = \text{floor\_db}

    Intensities at or below the floor map to 0, an intensity of 1 (0 dB) maps to 1;
    brighter values (speckle peaks) go above 1. This is the input and target scale of
    the dB-domain despeckling network of Chapter 6: a network sees values of the same
    order in both domains. :func:`from_unit_db` is its inverse above the floor.

    Parameters
    ----------
    x : torch.Tensor
        Non-negative intensity.
    floor_db : float
        The floor in decibels (negative; default -30 dB, an intensity of ``1e-3``).

    Raises
    ------
    ValueError
        On negative intensities or a floor that is not negative.

    Examples
    --------
    >>> to_unit_db(torch.tensor([1e-4, 1e-3, 0.1, 1.0]))
    tensor([0.0000, 0.0000, 0.6667, 1.0000])
    """
    f = _check_floor_db(floor_db)
    return (to_db(x, 10.0 ** (f / 10.0)) - f) / -f


def from_unit_db(t: torch.Tensor, floor_db: float = -30.0) -> torch.Tensor:
    r"""The inverse of :func:`to_unit_db`: :math:`10^{(f - f t)/10}` with :math:`f` = ``floor_db``.

    ``t = 0`` gives the floor's intensity (``1e-3`` for -30 dB), ``t = 1`` gives 1.
    """
    f = _check_floor_db(floor_db)
    return from_db(-f * t + f)


def _check_floor_db(floor_db: object) -> float:
    if isinstance(floor_db, bool) or not isinstance(floor_db, (int, float)) or not (
            math.isfinite(floor_db) and floor_db < 0):
        raise ValueError(
            f"floor_db must be a negative number of decibels (e.g. -30); got {floor_db!r}."
        )
    return float(floor_db)


# ------------------------------------------------------------------ log-speckle moments
def log_speckle_mean(looks: float, db: bool = False) -> float:
    r"""Mean of the log of Gamma(L, 1/L) speckle: :math:`\psi(L) - \ln L`.

    Negative for every :math:`L`: averaging in the log domain underestimates the
    intensity. ``db=True`` returns it in decibels (times :math:`10/\ln 10`).
    :math:`L=1`: -0.5772 (-2.507 dB); :math:`L=4`: -0.1302; :math:`L=10`: -0.0508.
    Reference: Xie, Pierce, Ulaby 2002.
    """
    L = _check_looks(looks)
    value = float(torch.special.digamma(torch.tensor(L, dtype=torch.float64))) - math.log(L)
    return value * DB_PER_NEPER if db else value


def log_speckle_var(looks: float, db: bool = False) -> float:
    r"""Variance of the log of Gamma(L, 1/L) speckle: :math:`\psi'(L)` (trigamma).

    ``db=True`` returns it in dB² (times :math:`(10/\ln 10)^2`). :math:`L=1`: 1.6449
    (:math:`\pi^2/6`; std 5.570 dB); :math:`L=4`: 0.2838; :math:`L=10`: 0.1052.
    Reference: Xie, Pierce, Ulaby 2002.
    """
    L = _check_looks(looks)
    value = float(torch.special.polygamma(1, torch.tensor(L, dtype=torch.float64)))
    return value * DB_PER_NEPER**2 if db else value


def log_speckle_skewness(looks: float) -> float:
    r"""Skewness of the log of Gamma(L, 1/L) speckle: :math:`\psi''(L) / \psi'(L)^{3/2}`.

    The cumulants of :math:`\ln s` are :math:`\kappa_n = \psi^{(n-1)}(L)` (polygamma
    functions; the shift by :math:`-\ln L` changes only the mean), so the skewness is
    :math:`\kappa_3/\kappa_2^{3/2}`: always negative (a long tail towards dark values), 0
    only in the limit of many looks. The same in dB (a scale factor cancels).
    :math:`L=1`: :math:`-2\zeta(3)/(\pi^2/6)^{3/2} = -1.1395`; a Gaussian has 0.
    Reference: Xie, Pierce, Ulaby 2002.
    """
    L = torch.tensor(_check_looks(looks), dtype=torch.float64)
    k2, k3 = (float(torch.special.polygamma(n, L)) for n in (1, 2))
    return k3 / k2**1.5


def log_speckle_excess_kurtosis(looks: float) -> float:
    r"""Excess kurtosis of the log of Gamma(L, 1/L) speckle: :math:`\psi^{(3)}(L)/\psi'(L)^2`.

    :math:`\kappa_4/\kappa_2^2` with the cumulants of :func:`log_speckle_skewness`; 0 for a
    Gaussian, 2.4 for one look (:math:`6\zeta(4)/(\pi^2/6)^2 = 12/5`): heavier tails than
    a Gaussian of the same variance.
    """
    L = torch.tensor(_check_looks(looks), dtype=torch.float64)
    k2, k4 = (float(torch.special.polygamma(n, L)) for n in (1, 3))
    return k4 / k2**2


def debias_log(log_x: torch.Tensor, looks: float, db: bool = False) -> torch.Tensor:
    r"""Remove the log-speckle bias: :math:`\ln z - (\psi(L) - \ln L)`.

    If ``log_x`` estimates :math:`\mathbb{E}[\ln z] = \ln y + \psi(L) - \ln L` (e.g. a
    network trained with MSE on log-speckled inputs, or a local mean of them), the result
    estimates :math:`\ln y`; exponentiating it then gives an unbiased-in-the-mean
    intensity (SAR-CNN, Chierchia et al. 2017). ``db=True`` for inputs in dB.
    """
    if not isinstance(log_x, torch.Tensor):
        raise TypeError(f"log_x must be a torch.Tensor; got {type(log_x).__name__}.")
    check_finite(log_x, "log_x")
    return log_x - log_speckle_mean(looks, db=db)


# ------------------------------------------------------------------- local statistics
def box_filter(x: torch.Tensor, size: int = 7) -> torch.Tensor:
    """Mean over a ``size`` x ``size`` window, same shape as ``x``.

    Border: torch's ``reflect`` padding (mirror without repeating the edge pixel), which is
    ``scipy.ndimage.uniform_filter(..., mode="mirror")``.
    """
    check_image(x)
    _check_size(size)
    check_finite(x, "x")
    n, c, h, w = x.shape
    r = size // 2
    if h <= r or w <= r:
        raise ValueError(f"the image ({h}x{w}) must be larger than half the window ({r}); "
                         "use a smaller size.")
    flat = F.pad(x.reshape(n * c, 1, h, w), (r, r, r, r), mode="reflect")
    return F.avg_pool2d(flat, size, stride=1).reshape(n, c, h, w)


def local_stats(x: torch.Tensor, size: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mean and (population) variance over ``size`` x ``size`` windows (reflect padding)."""
    mean = box_filter(x, size)
    var = (box_filter(x * x, size) - mean * mean).clamp_min(0)
    return mean, var


def _as_mask(mask: object, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a boolean torch.Tensor; got {type(mask).__name__}.")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must have dtype torch.bool; got {mask.dtype}. "
                        "Use mask > 0.5 or mask.bool().")
    try:
        return torch.broadcast_to(mask.to(x.device), x.shape)
    except RuntimeError:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to the image "
                         f"shape {tuple(x.shape)}; use (H, W), (N, 1, H, W) or "
                         "(N, C, H, W).") from None


@torch.no_grad()
def enl(x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""Equivalent number of looks of each image: :math:`\mu^2 / \sigma^2`.

    Parameters
    ----------
    x : torch.Tensor
        Intensity images, shape ``(N, C, H, W)`` (channels are pooled).
    mask : torch.Tensor, optional
        Boolean, broadcastable to ``x`` (e.g. ``(H, W)`` or ``(N, 1, H, W)``): the
        homogeneous region. Only its pixels enter the statistics. Default: the whole image.

    Returns
    -------
    torch.Tensor
        Shape ``(N,)``. :math:`\mu` and :math:`\sigma^2` are the mean and the unbiased
        (``ddof=1``) variance over the region; ``inf`` where the region is constant
        (also a region of zeros: never NaN). About :math:`L` for pure :math:`L`-look
        speckle on a constant image. The values lie in :math:`[0, \infty]`.

    Raises
    ------
    ValueError
        If the mask selects fewer than 2 pixels in some image, or ``x`` is negative.
    """
    check_image(x)
    _check_intensity(x)
    xd = x.double()
    if mask is None:
        m = torch.ones_like(xd, dtype=torch.bool)
    else:
        m = _as_mask(mask, x)
    w = m.double().flatten(1)
    count = w.sum(dim=1)
    if bool((count < 2).any()):
        bad = [i for i, c in enumerate(count.tolist()) if c < 2]
        raise ValueError(
            f"the mask selects fewer than 2 pixels in image(s) {bad} (counts "
            f"{[int(count[i]) for i in bad]}); ENL needs a homogeneous region of many pixels. "
            "Loosen homogeneous_mask's threshold (a larger max_cv or margin) or pass a "
            "larger region."
        )
    v = xd.flatten(1)
    mean = (v * w).sum(dim=1) / count
    var = (((v - mean[:, None]) ** 2) * w).sum(dim=1) / (count - 1)
    value = torch.where(var > 0, mean * mean / var.clamp_min(1e-300),
                        torch.full_like(var, math.inf))  # constant (even all-zero): inf
    return value.to(x.dtype)


@torch.no_grad()
def homogeneous_mask(
    x: torch.Tensor,
    *,
    size: int = 15,
    looks: float | None = None,
    max_cv: float | None = None,
    margin: float = 0.25,
) -> torch.Tensor:
    r"""Find flat regions: pixels whose local coefficient of variation is small.

    The local coefficient of variation :math:`\mathrm{CV} = \sigma/\mu` over a
    ``size`` x ``size`` window is about :math:`1/\sqrt{L}` on a flat speckled region and
    larger near edges and texture. A pixel is homogeneous when its CV is at most the
    threshold.

    Parameters
    ----------
    x : torch.Tensor
        Non-negative intensities ``(N, C, H, W)``.
    size : int
        Odd window side (default 15).
    looks : float, optional
        For a speckled ``x``: the threshold becomes :math:`(1 + \text{margin})/\sqrt{L}`.
    max_cv : float, optional
        An explicit threshold (e.g. 0.05 for a clean image). Give ``looks`` or ``max_cv``.
    margin : float
        Relative tolerance above the speckle CV (default 0.25).

    Returns
    -------
    torch.Tensor
        Boolean, same shape as ``x``.
    """
    check_image(x)
    _check_intensity(x)
    _check_size(size)
    if (looks is None) == (max_cv is None):
        raise ValueError("give exactly one of looks (for a speckled image: the threshold is "
                         "(1 + margin)/sqrt(looks)) or max_cv (an explicit threshold, e.g. "
                         f"0.05 for a clean image); got looks={looks!r}, max_cv={max_cv!r}.")
    margin = check_number(margin, "margin", nonnegative=True,
                          meaning="relative tolerance above the speckle CV, e.g. 0.25")
    if looks is not None:
        threshold = (1.0 + margin) / math.sqrt(_check_looks(looks))
    else:
        threshold = _check_positive(max_cv, "max_cv", "the largest local sigma/mu kept")
    mean, var = local_stats(x.double(), size)
    return var.sqrt() <= threshold * mean.clamp_min(1e-12)


def lee_filter(x: torch.Tensor, size: int = 7, looks: float = 1) -> torch.Tensor:
    r"""Lee's (1980) local-statistics speckle filter for intensity images.

    With the local mean :math:`\bar z` and variance :math:`\sigma_z^2` over a
    ``size`` x ``size`` window, the speckle's coefficient of variation
    :math:`C_s = 1/\sqrt{L}` and the local one :math:`C_z = \sigma_z/\bar z`:

    .. math::
        x = \bar z + k\,(z - \bar z), \qquad
        k = \operatorname{clip}\!\left(1 - \frac{C_s^2}{C_z^2},\, 0,\, 1\right).

    On flat regions :math:`C_z \approx C_s`, so :math:`k \approx 0` and the output is the
    local mean (speckle removed); at edges :math:`C_z \gg C_s`, :math:`k \to 1`, and the
    pixel is kept (edge preserved).

    Parameters
    ----------
    x : torch.Tensor
        Speckled intensity ``(N, C, H, W)``, non-negative.
    size : int
        Odd window side (default 7); reflect padding at the border.
    looks : float
        :math:`L` of the speckle.

    Returns
    -------
    torch.Tensor
        The filtered intensity, same shape.

    Reference: J.-S. Lee, IEEE TPAMI 2(2), 1980 (the linearised multiplicative model).
    """
    check_image(x)
    _check_intensity(x)
    _check_size(size)
    cs2 = 1.0 / _check_looks(looks)
    mean, var = local_stats(x, size)
    cy2 = var / (mean * mean).clamp_min(torch.finfo(x.dtype).tiny)
    k = (1.0 - cs2 / cy2.clamp_min(torch.finfo(x.dtype).tiny)).clamp(0.0, 1.0)
    return mean + k * (x - mean)


# ------------------------------------------------------------------------------ ENL loss
#: Added to mu^2 (of intensities scaled to a masked mean of 1) in the ENL loss, so that
#: a region of zeros, or of intensities too small to square in float32, has the finite
#: ENL 1/eps of a constant region instead of 0/0.
_ENL_TINY = 1e-12


def _enl_ratio(mu, var, eps):
    """``(mu^2 + tau) / (var + eps (mu^2 + tau))``: mu^2/(var + eps mu^2), finite at 0."""
    m2 = mu * mu + _ENL_TINY
    return m2 / (var + eps * m2)


def _unit_mean(t: torch.Tensor, w: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``t`` divided by its (detached) masked mean: ENL is scale-free, float32 is not."""
    scale = ((t.detach() * w).flatten(1).sum(1) / count)[:, None, None, None]
    return t / torch.where(scale > 0, scale, torch.ones_like(scale))


def _masked_enl_map(x, w, size, eps):
    """Local ENL over masked pixels only; returns (enl map, valid) with valid windows."""
    n, c, h, wd = x.shape
    r = size // 2
    flat = lambda t: t.reshape(n * c, 1, h, wd)  # noqa: E731
    pool = lambda t: F.avg_pool2d(t, size, stride=1, padding=r,  # noqa: E731
                                  count_include_pad=True).reshape(n, c, h, wd)
    cnt = pool(flat(w))
    safe = cnt.clamp_min(1e-12)
    mu = pool(flat(x * w)) / safe
    var = (pool(flat(x * x * w)) / safe - mu * mu).clamp_min(0)
    valid = (w > 0) & (cnt * size * size >= 2 - 1e-6)
    return _enl_ratio(mu, var, eps), valid


def enl_loss(
    x: torch.Tensor,
    target: torch.Tensor | float,
    mask: torch.Tensor,
    *,
    size: int | None = 15,
    eps: float = 1e-4,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""ENL-aware loss: match the prediction's ENL on homogeneous regions.

    .. math::
        \mathcal{L} = \frac{1}{|M|}\sum_{p \in M}
        \left(\ln \mathrm{ENL}_x(p) - \ln \mathrm{ENL}_t(p)\right)^2,
        \qquad \mathrm{ENL} = \frac{\mu^2}{\sigma^2 + \varepsilon \mu^2}

    where :math:`\mu, \sigma^2` are computed over the **masked pixels only** of the
    ``size`` x ``size`` window around each masked pixel :math:`p` (pixels outside the
    mask never enter the statistics: multiplying by the mask, as a common recipe does,
    would let its zeros pull the means and variances down). The log makes the loss
    scale-free; :math:`\varepsilon` caps the ENL at :math:`1/\varepsilon` so that a
    perfectly flat target stays finite. The loss and its gradient are finite for every
    finite non-negative input, zeros and tiny intensities included: the intensities are
    first divided by their masked mean (a detached scale; ENL does not depend on it) and
    :math:`\mu^2` gets a tiny floor (:math:`10^{-12}` of that mean squared), so a region
    of zeros has the ENL :math:`1/\varepsilon` of any constant region.

    Parameters
    ----------
    x : torch.Tensor
        Prediction (intensity), ``(N, C, H, W)``.
    target : torch.Tensor or float
        A reference image (its local ENL is the target) or one target ENL value.
    mask : torch.Tensor
        Boolean homogeneous-region mask, broadcastable to ``x``; must select at least 2
        pixels per image.
    size : int or None
        Odd window side (default 15); ``None`` uses one window per image (the whole masked
        region, as :func:`enl`).
    eps : float
        See above (default ``1e-4``, ENL at most 10 000).
    reduction : {"mean", "none"}

    Returns
    -------
    torch.Tensor
        Scalar or ``(N,)``.
    """
    check_image(x)
    check_reduction(reduction)
    eps = check_number(eps, "eps", positive=True, high=1.0,
                       meaning="caps the ENL at 1/eps, e.g. 1e-4")
    _check_intensity(x)
    if isinstance(target, torch.Tensor):
        check_pair(x, target, ("x", "target"))
        _check_intensity(target, "target")
    else:
        _check_positive(target, "target", "a target ENL value, or pass a reference image")
    m = _as_mask(mask, x)
    w = m.to(x.dtype)
    count = w.flatten(1).sum(dim=1)
    if bool((count < 2).any()):
        raise ValueError(
            f"the mask selects fewer than 2 pixels in some image (counts {count.tolist()}); "
            "the ENL loss needs a homogeneous region. Loosen homogeneous_mask's threshold "
            "(a larger max_cv or margin) or pass a larger region."
        )
    x = _unit_mean(x, w, count)
    if isinstance(target, torch.Tensor):
        target = _unit_mean(target, w, count)
    if size is None:
        def enl_of(t):
            mu = (t * w).flatten(1).sum(1) / count
            var = (((t - mu[:, None, None, None]) ** 2) * w).flatten(1).sum(1) / count
            return _enl_ratio(mu, var, eps)

        log_x = torch.log(enl_of(x))
        log_t = (torch.log(enl_of(target)) if isinstance(target, torch.Tensor)
                 else torch.full_like(log_x, math.log(target)))
        per_image = (log_x - log_t) ** 2
    else:
        _check_size(size)
        enl_x, valid = _masked_enl_map(x, w, size, eps)
        one = torch.ones_like(enl_x)
        log_x = torch.log(torch.where(valid, enl_x, one))  # no log(0) outside the mask
        if isinstance(target, torch.Tensor):
            enl_t, _ = _masked_enl_map(target, w, size, eps)
            log_t = torch.log(torch.where(valid, enl_t, one))
        else:
            log_t = torch.full_like(enl_x, math.log(target))
        vw = valid.to(x.dtype)
        sq = torch.where(valid, (log_x - log_t) ** 2, torch.zeros_like(enl_x))
        per_image = sq.flatten(1).sum(1) / vw.flatten(1).sum(1).clamp_min(1)
    return check_finite_result(per_image.mean() if reduction == "mean" else per_image,
                               "the ENL loss")
