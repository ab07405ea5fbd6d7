"""Synthetic test images: sharp edges, shapes and textures made from formulas.

They need no files and no network, are exactly reproducible (fixed seeds), and
stress what losses and networks find hard: edges at every orientation (Siemens
star), every spatial frequency (zone plate), occluding shapes at every scale
(dead leaves) and a periodic pattern (checkerboard). Every generator returns a
float32 tensor of shape ``(1, 1, size, size)`` with values in ``[0, 1]``;
edges are anti-aliased by averaging ``supersample x supersample`` sub-pixel samples.

The corpus (:func:`lossbook.data.load_image`) serves them under the names in
:data:`GENERATORS`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .._validate import check_number

__all__ = ["siemens_star", "zone_plate", "checkerboard", "dead_leaves", "GENERATORS"]


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an int >= 8 (pixels); got {size!r}.")
    return size


def _grid(size: int, supersample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel sample coordinates in [-1, 1], centred, shape (size*s, size*s)."""
    n = size * supersample
    t = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1
    return torch.meshgrid(t, t, indexing="ij")


def _finish(img: torch.Tensor, supersample: int) -> torch.Tensor:
    img = img.float()[None, None]
    if supersample > 1:
        img = F.avg_pool2d(img, supersample)
    return img.clamp(0, 1)


def siemens_star(size: int = 256, spokes: int = 16, supersample: int = 4) -> torch.Tensor:
    r"""A Siemens star: ``spokes`` black and ``spokes`` white wedges around the centre.

    :math:`I(r, \theta) = [\sin(\text{spokes}\,\theta) > 0]` inside the unit disc, mid-gray
    (0.5) outside. Edges of every orientation, and frequencies rising towards the centre
    until they alias: a test of how a loss treats fine, oriented detail.
    """
    size = _check_size(size)
    y, x = _grid(size, supersample)
    theta = torch.atan2(y, x)
    inside = (x**2 + y**2) <= 1.0
    wedge = (torch.sin(spokes * theta) > 0).float()
    return _finish(torch.where(inside, wedge, torch.full_like(wedge, 0.5)), supersample)


def zone_plate(size: int = 256, cycles: float | None = None, supersample: int = 4
               ) -> torch.Tensor:
    r"""A zone plate (circular chirp): :math:`I = \tfrac12 + \tfrac12 \cos(\pi k r^2)`.

    The local frequency grows linearly with the radius :math:`r` (in pixels from the
    centre), from 0 at the centre to ``cycles`` cycles per pixel at the border of the
    inscribed circle; the default 0.25 stays below the Nyquist limit of 0.5. Useful to see
    which frequencies a blur, a downsampling or a network keeps.
    """
    size = _check_size(size)
    cycles = 0.25 if cycles is None else float(cycles)
    y, x = _grid(size, supersample)
    r = torch.sqrt(x**2 + y**2) * size / 2  # radius in pixels
    # phase pi*k*r^2 has local frequency k*r cycles/pixel: k*(size/2) = cycles
    k = cycles / (size / 2)
    return _finish(0.5 + 0.5 * torch.cos(math.pi * k * r**2), supersample)


def checkerboard(size: int = 256, squares: int = 8) -> torch.Tensor:
    """A ``squares x squares`` checkerboard of exact 0s and 1s (no anti-aliasing needed
    when ``size`` is a multiple of ``squares``; otherwise edges are area-averaged)."""
    size = _check_size(size)
    if isinstance(squares, bool) or not isinstance(squares, int) or squares < 1:
        raise ValueError(f"squares must be a positive int; got {squares!r}.")
    ss = 1 if size % squares == 0 else 4
    y, x = _grid(size, ss)
    i = torch.floor((y + 1) / 2 * squares).clamp(max=squares - 1)
    j = torch.floor((x + 1) / 2 * squares).clamp(max=squares - 1)
    return _finish(((i + j) % 2).float(), ss)


def dead_leaves(size: int = 256, n_shapes: int = 2000, seed: int = 0, supersample: int = 2,
                r_min: float = 0.015, r_max: float = 0.3) -> torch.Tensor:
    r"""A dead-leaves image: opaque discs and squares of random gray levels, stacked.

    Each "leaf" has a uniform gray level, a centre uniform over the image, and a radius
    with density :math:`\propto r^{-3}` on ``[r_min, r_max]`` (fractions of the image
    width), which makes the image roughly scale invariant like natural images (Lee,
    Mumford & Huang 2001). Later leaves occlude earlier ones; with the defaults they leave
    well under 1% of the mid-gray background uncovered. Piecewise constant with sharp
    edges: what edge-preserving losses are meant to keep.

    The image depends only on its arguments (a fixed ``seed``).
    """
    size = _check_size(size)
    r_min = check_number(r_min, "r_min", positive=True, meaning="the smallest leaf radius, "
                         "as a fraction of the image width")
    r_max = check_number(r_max, "r_max", positive=True, meaning="the largest leaf radius, "
                         "as a fraction of the image width")
    if r_min >= r_max:
        raise ValueError(f"dead_leaves: r_min must be smaller than r_max; got r_min={r_min} "
                         f"and r_max={r_max}. Swap them (defaults 0.015 and 0.3).")
    if isinstance(n_shapes, bool) or not isinstance(n_shapes, int) or n_shapes < 0:
        raise ValueError(f"dead_leaves: n_shapes must be a non-negative int; got {n_shapes!r}.")
    g = torch.Generator().manual_seed(int(seed))
    y, x = _grid(size, supersample)
    img = torch.full_like(x, 0.5)
    u = torch.rand(n_shapes, 5, generator=g, dtype=torch.float64).float()
    # inverse-CDF sampling of p(r) ~ r^-3 on [r_min, r_max]
    a, b = r_min**-2, r_max**-2
    radius = (a + u[:, 0] * (b - a)) ** -0.5 * 2  # in [-1, 1] units (width 2)
    cx, cy = u[:, 1] * 2.4 - 1.2, u[:, 2] * 2.4 - 1.2
    gray, square = u[:, 3], u[:, 4] < 0.3
    n = size * supersample
    for k in range(n_shapes):
        # only touch the leaf's bounding box (grid coordinate t = (i + 0.5) / n * 2 - 1)
        lo = [max(int((c - radius[k] + 1) / 2 * n) - 1, 0) for c in (cy[k], cx[k])]
        hi = [min(int((c + radius[k] + 1) / 2 * n) + 2, n) for c in (cy[k], cx[k])]
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            continue
        box = (slice(lo[0], hi[0]), slice(lo[1], hi[1]))
        dx, dy = (x[box] - cx[k]).abs(), (y[box] - cy[k]).abs()
        if square[k]:
            mask = torch.maximum(dx, dy) <= radius[k]
        else:
            mask = dx**2 + dy**2 <= radius[k] ** 2
        img[box][mask] = gray[k]
    return _finish(img, supersample)


GENERATORS = {
    "siemens_star": siemens_star,
    "zone_plate": zone_plate,
    "checkerboard": checkerboard,
    "dead_leaves": dead_leaves,
}
"""The synthetic images the corpus serves by name: ``name -> generator(size)``."""
