r"""Straight-ray travel-time tomography: a small, honest toy of ultrasound speed-of-sound imaging.

A ring of ``n`` transducers surrounds a speed-of-sound map :math:`c(x, y)` (m/s). Each
transducer transmits in turn and all of them receive; the first arrival of the pulse from
transmitter :math:`i` at receiver :math:`j` comes after the travel time

.. math:: t_{ij} = \int_{\text{ray } ij} \frac{d\ell}{c(x, y)} = \sum_p A_{(ij),p}\, s_p,
          \qquad s = 1/c \ \text{(slowness, s/m)},

where :math:`A_{(ij),p}` is the length (metres) of ray :math:`ij` inside pixel :math:`p`.
The rays are **straight lines**: refraction (rays bending towards slower tissue, Snell's
law) is ignored, as in the first, linearised iteration of a bent-ray reconstruction. So
the forward operator is linear in the slowness, and its adjoint is the transpose
:math:`A^\top` (back-projection).

What the module holds:

* :class:`Ring` (the geometry), :func:`ray_matrix` (the sparse ray-length matrix, built
  once per geometry and cached), :func:`project` / :func:`backproject` (:math:`A` and
  :math:`A^\top` on image batches, CPU or GPU), :func:`travel_times`;
* phantoms: :func:`random_phantoms` (soft tissue near 1540 m/s with elliptical inclusions
  between fat, ~1450 m/s, and ~1600 m/s; or, out of distribution, rotated rectangles);
* sensor signals: :func:`sensor_signals` (a band-limited pulse at each arrival time, plus
  white noise at a stated SNR), :func:`pick_arrivals` (cross-correlation picking);
* classical reconstructions: :func:`tikhonov` (conjugate gradients) and
  :func:`tv_reconstruction` (Chambolle-Pock primal-dual, isotropic TV).

Pixel convention: pixel ``(row i, column j)`` of a ``grid_size x grid_size`` map has its
centre at :math:`x = -e/2 + (j + 1/2) h`, :math:`y = -e/2 + (i + 1/2) h` with
:math:`h = e/\text{grid\_size}` and :math:`e` the extent; row 0 is at the *bottom*
(:math:`y = -e/2`), so plots use ``origin="lower"``. Flattened index ``i * grid_size + j``.

References
----------
N. Duric et al., "Detection of breast cancer with ultrasound tomography: first results
with the Computed Ultrasound Risk Evaluation (CURE) prototype", Med. Phys. 34(2), 2007.
R. L. Siddon, "Fast calculation of the exact radiological path for a three-dimensional CT
array", Med. Phys. 12(2), 1985 (the exact ray-pixel intersection lengths).
A. Chambolle, T. Pock, "A first-order primal-dual algorithm for convex problems with
applications to imaging", J. Math. Imaging Vis. 40, 2011.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .losses import total_variation

__all__ = [
    "SPEED_TISSUE",
    "SPEED_FAT",
    "SPEED_WATER",
    "SPEED_RANGE",
    "Ring",
    "ray_matrix",
    "operator_norm",
    "project",
    "backproject",
    "travel_times",
    "to_unit",
    "from_unit",
    "Phantoms",
    "random_phantoms",
    "disc_phantom",
    "gabor_pulse",
    "sensor_signals",
    "pick_arrivals",
    "conjugate_gradient",
    "grad2d",
    "grad2d_adjoint",
    "tikhonov",
    "tv_objective",
    "tv_reconstruction",
]

SPEED_TISSUE = 1540.0
"""Speed of sound in soft tissue, m/s (the usual scanner calibration value)."""
SPEED_FAT = 1450.0
"""Speed of sound in fat, m/s (approximate)."""
SPEED_WATER = 1480.0
"""Speed of sound in water at 20 degC, m/s (approximate: 1482 m/s)."""
SPEED_RANGE = (1400.0, 1650.0)
"""The speed range (m/s) mapped to [0, 1] by :func:`to_unit` for training, PSNR and SSIM."""


# ------------------------------------------------------------------------- geometry


def _positive_number(value: object, name: str, meaning: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number ({meaning}); got {type(value).__name__}.")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite ({meaning}); got {value!r}.")
    return float(value)


@dataclass(frozen=True)
class Ring:
    """A ring of transducers around a square pixel grid (all lengths in metres).

    Parameters
    ----------
    n_transducers : int
        Transducers evenly spaced on the ring; each transmits in turn and all receive, so
        there are ``n_transducers ** 2`` transmitter-receiver pairs (the ``n`` pairs with
        transmitter = receiver have zero length and zero travel time). At least 2, else
        no transmitter has a receiver.
    radius : float
        Ring radius, m. The ring must lie inside the grid: ``radius < extent / 2``.
    grid_size : int
        Pixels per side of the speed-of-sound map (>= 2).
    extent : float
        Side of the square the grid covers, ``[-extent/2, extent/2]^2``, m.

    Transducer ``k`` sits at angle :math:`2\\pi k / n`: ``(radius cos, radius sin)``.

    Examples
    --------
    >>> ring = Ring(32, radius=0.045, grid_size=64, extent=0.1)
    >>> ring.pixel_size
    0.0015625
    """

    n_transducers: int
    radius: float
    grid_size: int
    extent: float

    def __post_init__(self) -> None:
        n = self.n_transducers
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n_transducers must be an int; got {type(n).__name__}.")
        if n < 2:
            raise ValueError(
                f"n_transducers must be at least 2; got {n}: with {n} transducer(s) there "
                "are zero receivers for each transmitter. Use e.g. Ring(32, ...)."
            )
        g = self.grid_size
        if isinstance(g, bool) or not isinstance(g, int) or g < 2:
            raise ValueError(f"grid_size must be an int >= 2 (pixels per side); got {g!r}.")
        r = _positive_number(self.radius, "radius", "the ring's radius in metres")
        e = _positive_number(self.extent, "extent", "the side of the imaged square in metres")
        if r >= e / 2:
            raise ValueError(
                f"the transducers lie outside the grid: radius {r} m >= extent/2 = {e / 2} m. "
                "Every ray must stay inside the pixel grid; make the ring smaller or the "
                f"extent larger (e.g. extent={2.2 * r:.4g})."
            )

    @property
    def pixel_size(self) -> float:
        """Side of one pixel, m."""
        return self.extent / self.grid_size

    @property
    def n_rays(self) -> int:
        """Transmitter-receiver pairs, ``n_transducers ** 2``."""
        return self.n_transducers**2

    def positions(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Transducer coordinates ``(n_transducers, 2)`` as ``(x, y)`` in metres."""
        theta = 2 * math.pi * torch.arange(self.n_transducers, dtype=torch.float64)
        theta = theta / self.n_transducers
        return (self.radius * torch.stack([theta.cos(), theta.sin()], dim=1)).to(dtype)

    def pixel_centres(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Coordinates of the pixel centres along one axis, ``(grid_size,)``, m."""
        h = self.pixel_size
        return (-self.extent / 2 + h * (torch.arange(self.grid_size, dtype=torch.float64)
                                        + 0.5)).to(dtype)

    def distances(self) -> torch.Tensor:
        """Straight-line transmitter-receiver distances ``(n, n)``, m (float64)."""
        p = self.positions()
        return (p[:, None, :] - p[None, :, :]).norm(dim=-1)

    def inside(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Mask ``(grid_size, grid_size)`` of the pixels whose centre lies inside the ring."""
        c = self.pixel_centres()
        return ((c[None, :] ** 2 + c[:, None] ** 2) < self.radius**2).to(dtype)


def _check_ring(ring: object) -> Ring:
    if not isinstance(ring, Ring):
        raise TypeError(f"ring must be a lossbook.traveltime.Ring; got {type(ring).__name__}. "
                        "Build one with Ring(n_transducers, radius, grid_size, extent).")
    return ring


@functools.lru_cache(maxsize=16)
def _ray_matrix_cpu(ring: Ring) -> torch.Tensor:
    """Exact ray-pixel intersection lengths (Siddon 1985), vectorised over all rays."""
    n, g, e, h = ring.n_transducers, ring.grid_size, ring.extent, ring.pixel_size
    pos = ring.positions().numpy()
    p0 = np.repeat(pos, n, axis=0)  # transmitter of ray k = i * n + j
    p1 = np.tile(pos, (n, 1))  # receiver
    d = p1 - p0
    length = np.hypot(d[:, 0], d[:, 1])
    lines = -e / 2 + h * np.arange(g + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ax = (lines[None, :] - p0[:, :1]) / d[:, :1]
        ay = (lines[None, :] - p0[:, 1:]) / d[:, 1:]
    alphas = np.concatenate([np.zeros((len(d), 1)), np.ones((len(d), 1)), ax, ay], axis=1)
    alphas[~np.isfinite(alphas) | (alphas < 0) | (alphas > 1)] = 1.0
    alphas.sort(axis=1)
    seg = np.diff(alphas, axis=1) * length[:, None]
    mid = 0.5 * (alphas[:, 1:] + alphas[:, :-1])
    xm = p0[:, :1] + mid * d[:, :1]
    ym = p0[:, 1:] + mid * d[:, 1:]
    col = np.clip(np.floor((xm + e / 2) / h).astype(np.int64), 0, g - 1)
    row = np.clip(np.floor((ym + e / 2) / h).astype(np.int64), 0, g - 1)
    keep = seg > 1e-12 * h
    rays = np.broadcast_to(np.arange(len(d))[:, None], seg.shape)[keep]
    pix = (row * g + col)[keep]
    a = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rays, pix])), torch.from_numpy(seg[keep]),
        size=(n * n, g * g), dtype=torch.float64, check_invariants=False,
    )
    return a.coalesce()


_CONVERTED: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _csr_pair(ring: Ring, device: torch.device, dtype: torch.dtype):
    """``(A, A^T)`` as CSR tensors on ``device`` (cached): fast ``torch.sparse.mm``."""
    key = (ring, str(device), dtype)
    if key not in _CONVERTED:
        a = _ray_matrix_cpu(ring).to(dtype)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            _CONVERTED[key] = (a.to_sparse_csr().to(device),
                               a.t().coalesce().to_sparse_csr().to(device))
    return _CONVERTED[key]


def ray_matrix(ring: Ring, *, device: str | torch.device | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""The ray-length matrix :math:`A` of ``ring``: sparse ``(n_rays, grid_size**2)``, metres.

    Row ``i * n + j`` (transmitter ``i``, receiver ``j``) holds the length of the straight
    segment from transducer ``i`` to transducer ``j`` inside every pixel (exact
    intersections, Siddon 1985), so that travel times are :math:`t = A s` for the
    slowness :math:`s = 1/c` flattened row-major. Every row sums to the
    transmitter-receiver distance. Built once per geometry (cached), then converted and
    kept as CSR per ``(device, dtype)`` for :func:`project` / :func:`backproject`
    (``torch.sparse.mm``), which work on the CPU and the GPU.

    Refraction is ignored: real sound bends towards slower regions (Snell's law); a
    straight-ray model is the linearisation around a homogeneous medium.

    Parameters
    ----------
    ring : Ring
    device : str or torch.device, optional
        Default: the CPU.
    dtype : torch.dtype
        Default float64.

    Returns
    -------
    torch.Tensor
        A coalesced sparse COO tensor of shape ``(n_transducers**2, grid_size**2)``.
    """
    _check_ring(ring)
    return _ray_matrix_cpu(ring).to(device=torch.device(device or "cpu"), dtype=dtype)


def _check_maps(x: object, ring: Ring, name: str) -> torch.Tensor:
    g = ring.grid_size
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, 1, {g}, {g}); got "
                        f"{type(x).__name__}.")
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[2:] != (g, g):
        raise ValueError(
            f"{name} must have shape (N, 1, {g}, {g}) for this ring (grid_size={g}); got "
            f"{tuple(x.shape)}. A single map m of shape ({g}, {g}) is m[None, None]."
        )
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be floating point; got {x.dtype}. Use .double().")
    return x


def project(x: torch.Tensor, ring: Ring) -> torch.Tensor:
    r"""Apply :math:`A`: pixel maps ``(N, 1, G, G)`` -> ray sums ``(N, n_rays)``.

    With ``x`` a slowness map (s/m) this is the travel time of every ray (s). Runs on
    ``x``'s device, in ``x``'s dtype.
    """
    _check_maps(x, ring, "x")
    a, _ = _csr_pair(ring, x.device, x.dtype)
    return torch.sparse.mm(a, x.reshape(x.shape[0], -1).T).T


def backproject(y: torch.Tensor, ring: Ring) -> torch.Tensor:
    r"""Apply :math:`A^\top`: ray values ``(N, n_rays)`` -> pixel maps ``(N, 1, G, G)``.

    The adjoint of :func:`project`: :math:`\langle A x, y\rangle = \langle x, A^\top y\rangle`.
    """
    _check_ring(ring)
    if not isinstance(y, torch.Tensor) or y.ndim != 2 or y.shape[1] != ring.n_rays:
        got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"y must have shape (N, {ring.n_rays}) (one value per ray); got {got}.")
    _, at = _csr_pair(ring, y.device, y.dtype)
    g = ring.grid_size
    return torch.sparse.mm(at, y.T).T.reshape(y.shape[0], 1, g, g)


def travel_times(speed: torch.Tensor, ring: Ring) -> torch.Tensor:
    r"""Straight-ray travel times :math:`t_{ij} = \sum_p A_{(ij),p} / c_p` in seconds.

    Parameters
    ----------
    speed : torch.Tensor
        Speed-of-sound maps ``(N, 1, grid_size, grid_size)`` in m/s, all positive.
    ring : Ring

    Returns
    -------
    torch.Tensor
        ``(N, n_transducers, n_transducers)``: entry ``[b, i, j]`` is the time from
        transmitter ``i`` to receiver ``j`` (zero on the diagonal). Computed in float64
        and returned in ``speed``'s dtype, on its device.

    Examples
    --------
    >>> ring = Ring(8, radius=0.04, grid_size=16, extent=0.1)
    >>> t = travel_times(torch.full((1, 1, 16, 16), 1500.0, dtype=torch.float64), ring)
    >>> round(float(t[0, 0, 4] * 1e6), 3)  # 8 cm across at 1500 m/s: 53.333 us
    53.333
    """
    _check_ring(ring)
    _check_maps(speed, ring, "speed")
    if not bool(torch.isfinite(speed).all()) or not bool((speed > 0).all()):
        raise ValueError(
            f"speed must be positive and finite (m/s, e.g. ~1540 for soft tissue); got values "
            f"in [{float(speed.min()):.4g}, {float(speed.max()):.4g}]. Are these slowness or "
            "normalised values? lossbook.traveltime.from_unit converts [0, 1] maps to m/s."
        )
    t = project(1.0 / speed.double(), ring)
    n = ring.n_transducers
    return t.reshape(speed.shape[0], n, n).to(speed.dtype)


def operator_norm(ring: Ring, iters: int = 100) -> float:
    """Largest singular value of ``ray_matrix(ring)`` (metres), by power iteration (cached)."""
    return _operator_norm(_check_ring(ring), iters)


@functools.lru_cache(maxsize=16)
def _operator_norm(ring: Ring, iters: int) -> float:
    gen = torch.Generator().manual_seed(0)
    g = ring.grid_size
    x = torch.rand(1, 1, g, g, generator=gen, dtype=torch.float64)
    for _ in range(iters):
        x = backproject(project(x, ring), ring)
        x = x / x.norm()
    return float(project(x, ring).norm())


def to_unit(speed: torch.Tensor) -> torch.Tensor:
    """Map speeds in m/s to [0, 1] over :data:`SPEED_RANGE` (1400-1650 m/s), linearly."""
    lo, hi = SPEED_RANGE
    return (speed - lo) / (hi - lo)


def from_unit(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_unit`: [0, 1] -> m/s."""
    lo, hi = SPEED_RANGE
    return lo + u * (hi - lo)


# ------------------------------------------------------------------------- phantoms


class Phantoms(NamedTuple):
    """Speed maps ``(N, 1, G, G)`` in m/s and labels ``(N, 1, G, G)`` (int64, 0 =
    background, ``k`` = the k-th inclusion drawn; a later inclusion covers an earlier one)."""

    speed: torch.Tensor
    labels: torch.Tensor


def _uniform(gen: torch.Generator, lo: float, hi: float, n: int = 1) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=gen, dtype=torch.float64)


def random_phantoms(n: int, ring: Ring, *, generator: torch.Generator | None = None,
                    shape: str = "ellipses", max_inclusions: int = 4,
                    supersample: int = 4) -> Phantoms:
    r"""Random speed-of-sound maps: soft tissue with a few inclusions inside the ring.

    The background is uniform at :math:`c_0 \sim U(1530, 1550)` m/s (soft tissue). Between
    1 and ``max_inclusions`` inclusions are placed with their centres within 0.6 of the
    ring radius; each has a speed :math:`U(1450, 1600)` m/s (fat to fibroglandular-like
    tissue), at least 15 m/s away from the background. ``shape="ellipses"`` (the training
    family) draws ellipses with semi-axes between 0.08 and 0.3 ring radii at a random
    angle; ``shape="rectangles"`` (out of distribution: straight edges and corners never
    seen in training) draws rotated rectangles with half-sides in the same range. Edges
    are anti-aliased by averaging ``supersample**2`` sub-pixel samples (partial volume).

    Returns
    -------
    Phantoms
        ``speed`` (float32, m/s) and ``labels``, each ``(n, 1, G, G)``.
    """
    _check_ring(ring)
    if shape not in ("ellipses", "rectangles"):
        raise ValueError(f"shape must be 'ellipses' (training) or 'rectangles' (out of "
                         f"distribution); got {shape!r}.")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (number of phantoms); got {n!r}.")
    gen = generator or torch.Generator().manual_seed(0)
    g, h, r = ring.grid_size, ring.pixel_size, ring.radius
    s = supersample
    fine = (-ring.extent / 2 + h * (torch.arange(g * s, dtype=torch.float64) + 0.5) / s)
    fy, fx = torch.meshgrid(fine, fine, indexing="ij")
    cy, cx = torch.meshgrid(ring.pixel_centres(), ring.pixel_centres(), indexing="ij")
    speeds, labels = [], []
    for _ in range(n):
        c0 = float(_uniform(gen, 1530.0, 1550.0))
        fine_map = torch.full_like(fx, c0)
        lab = torch.zeros(g, g, dtype=torch.int64)
        k = int(torch.randint(1, max_inclusions + 1, (1,), generator=gen))
        for idx in range(1, k + 1):
            rho = 0.6 * r * float(torch.rand(1, generator=gen, dtype=torch.float64)) ** 0.5
            phi = float(_uniform(gen, 0, 2 * math.pi))
            x0, y0 = rho * math.cos(phi), rho * math.sin(phi)
            a, b = (float(v) for v in _uniform(gen, 0.08 * r, 0.3 * r, 2))
            ang = float(_uniform(gen, 0, math.pi))
            c = float(_uniform(gen, 1450.0, 1600.0))
            if abs(c - c0) < 15.0:
                c = c0 + math.copysign(15.0, c - c0)

            def inside(x, y, x0=x0, y0=y0, a=a, b=b, ang=ang):
                u = (x - x0) * math.cos(ang) + (y - y0) * math.sin(ang)
                v = -(x - x0) * math.sin(ang) + (y - y0) * math.cos(ang)
                if shape == "ellipses":
                    return (u / a) ** 2 + (v / b) ** 2 <= 1.0
                return (u.abs() <= a) & (v.abs() <= b)

            fine_map[inside(fx, fy)] = c
            lab[inside(cx, cy)] = idx
        speeds.append(F.avg_pool2d(fine_map[None, None], s)[0])
        labels.append(lab[None])
    return Phantoms(torch.stack(speeds).float(), torch.stack(labels))


def disc_phantom(ring: Ring, centre: tuple[float, float], disc_radius: float,
                 speed_in: float, speed_out: float = SPEED_TISSUE,
                 supersample: int = 8) -> torch.Tensor:
    """One map ``(1, 1, G, G)`` (float64, m/s): a disc of ``speed_in`` in ``speed_out``,
    its edge anti-aliased with ``supersample**2`` sub-pixel samples."""
    _check_ring(ring)
    g, h, s = ring.grid_size, ring.pixel_size, supersample
    fine = -ring.extent / 2 + h * (torch.arange(g * s, dtype=torch.float64) + 0.5) / s
    fy, fx = torch.meshgrid(fine, fine, indexing="ij")
    inside = (fx - centre[0]) ** 2 + (fy - centre[1]) ** 2 <= disc_radius**2
    fine_map = torch.where(inside, torch.tensor(float(speed_in), dtype=torch.float64),
                           torch.tensor(float(speed_out), dtype=torch.float64))
    return F.avg_pool2d(fine_map[None, None], s)


# ------------------------------------------------------------------------- signals


def gabor_pulse(t: torch.Tensor, frequency: float) -> torch.Tensor:
    r"""The transmitted pulse, :math:`p(t) = e^{-t^2 / (2\tau^2)} \cos(2\pi f t)` with
    :math:`\tau = 1/(2 f)`: a band-limited burst of about two cycles, peak 1 at ``t = 0``
    (``t`` in seconds, ``frequency`` in Hz)."""
    tau = 0.5 / frequency
    return torch.exp(-0.5 * (t / tau) ** 2) * torch.cos(2 * math.pi * frequency * t)


def sensor_signals(times: torch.Tensor, *, n_samples: int, dt: float, frequency: float,
                   delay: float, snr_db: float | None = 30.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Received traces: the pulse at each arrival time plus white Gaussian noise.

    Trace :math:`(b, i, j)` is :math:`p(k\,\Delta t - t_{bij} - \text{delay}) + n_k`,
    :math:`k = 0, \dots, S-1`, where :math:`p` is :func:`gabor_pulse` (peak amplitude 1)
    and :math:`n_k \sim \mathcal N(0, \sigma^2)` with :math:`20\log_{10}(1/\sigma)` =
    ``snr_db`` (peak-signal-to-noise-std ratio in dB). Only the first arrival is modelled
    (no scattering, no attenuation, no reflections); ``delay`` keeps the whole pulse
    inside the recording for the zero-length transmitter = receiver pairs.

    Parameters
    ----------
    times : torch.Tensor
        Travel times ``(N, T, R)`` in seconds (:func:`travel_times`).
    n_samples, dt : int, float
        Samples per trace and sampling interval (s).
    frequency : float
        Pulse centre frequency, Hz.
    delay : float
        Time added to every arrival, s.
    snr_db : float or None
        Noise level; ``None`` for noiseless traces.
    generator : torch.Generator, optional
        For the noise (on ``times``' device).

    Returns
    -------
    torch.Tensor
        ``(N, T, R, n_samples)`` float32 on ``times``' device.
    """
    if not isinstance(times, torch.Tensor) or times.ndim != 3:
        got = tuple(times.shape) if isinstance(times, torch.Tensor) else type(times).__name__
        raise ValueError(f"times must have shape (N, transmitters, receivers); got {got}.")
    if (float(times.max()) + delay) > (n_samples - 1) * dt:
        raise ValueError(
            f"the latest arrival ({float(times.max()) * 1e6:.2f} us + delay "
            f"{delay * 1e6:.2f} us) falls after the recording ends "
            f"({(n_samples - 1) * dt * 1e6:.2f} us); increase n_samples or dt."
        )
    k = torch.arange(n_samples, device=times.device, dtype=torch.float64) * dt
    arg = (k - (times.double()[..., None] + delay)).float()  # float64 difference, then
    traces = gabor_pulse(arg, frequency)  # float32 is ample (|arg| < 1e-3 s, error ~1e-11 s)
    if snr_db is not None:
        sigma = 10 ** (-snr_db / 20)
        traces = traces + sigma * torch.randn(traces.shape, generator=generator,
                                              device=times.device, dtype=traces.dtype)
    return traces


def pick_arrivals(signals: torch.Tensor, *, dt: float, frequency: float,
                  delay: float) -> torch.Tensor:
    r"""Arrival times ``(N, T, R)`` (s) picked by cross-correlation with the known pulse.

    The peak of :math:`r(k) = \sum_m x(k + m)\, p(m\,\Delta t)` is found on the sample
    grid and refined by fitting a parabola through the peak and its two neighbours
    (sub-sample precision); ``delay`` is subtracted. This is the matched filter, the
    optimal detector of a known pulse in white noise.
    """
    if not isinstance(signals, torch.Tensor) or signals.ndim != 4:
        got = tuple(signals.shape) if isinstance(signals, torch.Tensor) else \
            type(signals).__name__
        raise ValueError(f"signals must have shape (N, T, R, samples); got {got}.")
    half = int(math.ceil(3 * 0.5 / frequency / dt)) + 1
    m = torch.arange(-half, half + 1, device=signals.device, dtype=torch.float64) * dt
    kernel = gabor_pulse(m, frequency).to(signals.dtype)[None, None]
    flat = signals.reshape(-1, 1, signals.shape[-1])
    r = F.conv1d(flat, kernel, padding=half)[:, 0]
    k = r.argmax(dim=1).clamp(1, r.shape[1] - 2)
    idx = torch.arange(r.shape[0], device=r.device)
    y0, y1, y2 = r[idx, k - 1], r[idx, k], r[idx, k + 1]
    den = y0 - 2 * y1 + y2
    shift = torch.where(den.abs() > 1e-12, 0.5 * (y0 - y2) / den, torch.zeros_like(den))
    t = (k.double() + shift.double().clamp(-0.5, 0.5)) * dt - delay
    return t.reshape(signals.shape[:3]).to(torch.float64)


# ------------------------------------------------------------------------- solvers


def grad2d(x: torch.Tensor) -> torch.Tensor:
    r"""Forward differences with a Neumann boundary, ``(N, 1, G, G)`` -> ``(N, 2, G, G)``
    (``[:, 0]`` along columns, ``[:, 1]`` along rows), as in
    :func:`lossbook.losses.total_variation`."""
    dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    return torch.cat([dx, dy], dim=1)


def grad2d_adjoint(g: torch.Tensor) -> torch.Tensor:
    r"""The adjoint of :func:`grad2d` (minus the divergence): ``(N, 2, G, G)`` ->
    ``(N, 1, G, G)``."""
    gx, gy = g[:, :1, :, :-1], g[:, 1:, :-1, :]
    out_x = F.pad(gx, (1, 0, 0, 0)) - F.pad(gx, (0, 1, 0, 0))
    out_y = F.pad(gy, (0, 0, 1, 0)) - F.pad(gy, (0, 0, 0, 1))
    return out_x + out_y


def conjugate_gradient(apply, b: torch.Tensor, *, iters: int = 200, tol: float = 1e-8,
                       x0: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    r"""Solve :math:`M x = b` for a symmetric positive-definite operator, batch-wise.

    ``apply(x)`` computes :math:`M x` for a batch ``(N, ...)``; each item of the batch is
    an independent system (its own step sizes). Stops when every relative residual
    :math:`\|b - Mx\| / \|b\|` is below ``tol`` or after ``iters`` iterations (Hestenes &
    Stiefel 1952).

    Returns
    -------
    x : torch.Tensor
    residuals : list of float
        The largest relative residual over the batch after each iteration.
    """
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    dims = tuple(range(1, b.ndim))
    r = b - apply(x)
    p = r.clone()
    rs = (r * r).sum(dims, keepdim=True)
    bnorm = (b * b).sum(dims, keepdim=True).sqrt().clamp_min(1e-30)
    history = []
    for _ in range(iters):
        mp = apply(p)
        alpha = rs / (p * mp).sum(dims, keepdim=True).clamp_min(1e-300)
        x = x + alpha * p
        r = r - alpha * mp
        rs_new = (r * r).sum(dims, keepdim=True)
        rel = float((rs_new.sqrt() / bnorm).max())
        history.append(rel)
        if rel < tol:
            break
        p = r + (rs_new / rs.clamp_min(1e-300)) * p
        rs = rs_new
    return x, history


def _check_times(times: object, ring: Ring) -> torch.Tensor:
    n = ring.n_transducers
    if not isinstance(times, torch.Tensor) or times.ndim != 3 or times.shape[1:] != (n, n):
        got = tuple(times.shape) if isinstance(times, torch.Tensor) else type(times).__name__
        raise ValueError(f"times must have shape (N, {n}, {n}) for this ring; got {got}.")
    return times


def _normalised_data(times: torch.Tensor, ring: Ring, background: float):
    """Data of the scaled linear problem  Ã x = d̃  with x the relative slowness
    perturbation ``s / s0 - 1`` (s0 = 1/background), Ã = A / ||A|| (unit norm)."""
    s0 = 1.0 / background
    norm = operator_norm(ring)
    t = times.double().reshape(times.shape[0], -1)
    ones = torch.ones(1, 1, ring.grid_size, ring.grid_size, dtype=torch.float64,
                      device=t.device)
    t_bg = project(ones * s0, ring)
    d = (t - t_bg) / (s0 * norm)
    return d, s0, norm


def _to_speed(x: torch.Tensor, s0: float) -> torch.Tensor:
    return (1.0 / (s0 * (1.0 + x))).float()


def tikhonov(times: torch.Tensor, ring: Ring, weight: float, *, reg: str = "gradient",
             background: float = SPEED_TISSUE, iters: int = 300,
             tol: float = 1e-7) -> torch.Tensor:
    r"""Tikhonov-regularised least squares by conjugate gradients.

    With :math:`x = s/s_0 - 1` the relative slowness perturbation about the background
    :math:`s_0 = 1/c_0` and :math:`\tilde A = A/\|A\|_2`, :math:`\tilde d = (t - A s_0)/(s_0
    \|A\|_2)`, solves

    .. math:: \min_x \|\tilde A x - \tilde d\|^2 + \lambda \|L x\|^2
              \iff (\tilde A^\top \tilde A + \lambda L^\top L)\, x = \tilde A^\top \tilde d

    with :math:`L = \nabla` (forward differences, ``reg="gradient"``: smooth maps) or
    :math:`L = I` (``reg="identity"``: small perturbations) by :func:`conjugate_gradient`,
    and returns :math:`c = 1/(s_0(1 + x))`. The scaling makes ``weight`` independent of
    units and of the number of rays.

    Parameters
    ----------
    times : torch.Tensor
        Measured travel times ``(N, n, n)``, s.
    ring : Ring
    weight : float
        :math:`\lambda > 0`.
    reg : {"gradient", "identity"}
    background : float
        :math:`c_0`, m/s.

    Returns
    -------
    torch.Tensor
        Speed maps ``(N, 1, G, G)``, float32, m/s.
    """
    _check_ring(ring)
    _check_times(times, ring)
    weight = _positive_number(weight, "weight", "the Tikhonov weight lambda")
    if reg not in ("gradient", "identity"):
        raise ValueError(f"reg must be 'gradient' or 'identity'; got {reg!r}.")
    d, s0, norm = _normalised_data(times, ring, background)

    def normal(x):
        out = backproject(project(x, ring), ring) / norm**2
        return out + weight * (grad2d_adjoint(grad2d(x)) if reg == "gradient" else x)

    x, _ = conjugate_gradient(normal, backproject(d, ring) / norm, iters=iters, tol=tol)
    return _to_speed(x, s0)


def tv_objective(x: torch.Tensor, d: torch.Tensor, ring: Ring, weight: float) -> torch.Tensor:
    r"""Per-map objective of :func:`tv_reconstruction` in its scaled variables:
    :math:`\tfrac12\|\tilde A x - \tilde d\|^2 + \mu\,\mathrm{TV}_\text{iso}(x)`, ``(N,)``."""
    norm = operator_norm(ring)
    fit = 0.5 * ((project(x, ring) / norm - d) ** 2).sum(1)
    return fit + weight * total_variation(x, "isotropic", "none", eps=0.0)


def tv_reconstruction(times: torch.Tensor, ring: Ring, weight: float, *,
                      background: float = SPEED_TISSUE, iters: int = 300,
                      return_history: bool = False):
    r"""Total-variation-regularised reconstruction by the Chambolle-Pock primal-dual method.

    In the scaled variables of :func:`tikhonov`, solves

    .. math:: \min_x \tfrac12 \|\tilde A x - \tilde d\|^2 + \mu\,\mathrm{TV}_\text{iso}(x),
              \qquad \mathrm{TV}_\text{iso}(x) = \sum_p \|(\nabla x)_p\|_2

    (the isotropic TV of :func:`lossbook.losses.total_variation` with ``eps=0``, same
    forward differences and Neumann boundary). With :math:`K = [\tilde A; \nabla]`,
    :math:`\|K\|^2 \le 1 + 8`, steps :math:`\sigma = \tau = 0.99/3`, each iteration is

    .. math:: p \leftarrow \frac{p + \sigma(\tilde A \bar x - \tilde d)}{1 + \sigma},\quad
              q \leftarrow \Pi_{\|q_p\| \le \mu}(q + \sigma \nabla \bar x),\quad
              x^+ = x - \tau(\tilde A^\top p + \nabla^\top q),\quad \bar x = 2x^+ - x,

    which converges to the exact minimiser (Chambolle & Pock 2011); no smoothing of the
    TV is needed. Returns speed maps ``(N, 1, G, G)`` (float32, m/s), and with
    ``return_history`` also the mean objective (:func:`tv_objective`) every 10 iterations.
    """
    _check_ring(ring)
    _check_times(times, ring)
    weight = _positive_number(weight, "weight", "the TV weight mu")
    d, s0, norm = _normalised_data(times, ring, background)
    g = ring.grid_size
    x = torch.zeros(d.shape[0], 1, g, g, dtype=torch.float64, device=d.device)
    xbar, p, q = x.clone(), torch.zeros_like(d), torch.zeros_like(grad2d(x))
    sigma = tau = 0.99 / 3.0
    history = []
    for it in range(iters):
        p = (p + sigma * (project(xbar, ring) / norm - d)) / (1 + sigma)
        q = q + sigma * grad2d(xbar)
        q = q / (q.norm(dim=1, keepdim=True) / weight).clamp_min(1.0)
        x_new = x - tau * (backproject(p, ring) / norm + grad2d_adjoint(q))
        xbar = 2 * x_new - x
        x = x_new
        if return_history and (it % 10 == 9 or it == iters - 1):
            history.append(float(tv_objective(x, d, ring, weight).mean()))
    speed = _to_speed(x, s0)
    return (speed, history) if return_history else speed
