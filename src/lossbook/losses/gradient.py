r"""Gradient-domain losses: Sobel gradients, the Laplacian and total variation.

Pixel losses compare values; the losses here compare (or penalise) *differences
between neighbouring pixels*, which is where edges, texture and noise live.

``sobel``
    The 3x3 Sobel derivative filters, :math:`g_x` (left to right) and :math:`g_y`
    (top to bottom).
``gradient_loss``
    :math:`\frac{1}{CHW}\sum |g_x(x) - g_x(y)|^p + |g_y(x) - g_y(y)|^p`: asks the
    prediction to have the target's edges.
``laplacian_loss``
    :math:`\frac{1}{CHW}\sum |\Delta x - \Delta y|^p` with the 5-point Laplacian: compares
    curvature (second derivatives) and ignores constant slopes.
``total_variation``
    :math:`\sum |\nabla x|`: a regulariser on one image (no target), the ROF prior.

Boundary convention
-------------------
Filters (Sobel, Laplacian) use **replicate padding** by default (the image is extended
by repeating its border pixels, ``padding="replicate"``), so outputs have the input's
size; this is scipy.ndimage's ``mode="nearest"`` (and, for a 3x3 filter, its default
``mode="reflect"``). ``padding="valid"`` drops the one-pixel border instead (output
``(H-2, W-2)``). Zero padding is deliberately not offered: it invents an edge along
the whole image border.

Total variation uses **forward differences with a Neumann boundary**: the difference
past the last row or column is zero (Chambolle 2004), so a constant image has TV 0.

Precision
---------
Everything here is computed in float32 (float64 for float64 inputs), also under
``torch.autocast`` and for float16/bfloat16 inputs, as the structural losses are: a
bf16 Sobel filter is off by 2-3 %, which is the size of the signal a gradient loss
trains on. Results are returned in that precision.

References
----------
L. I. Rudin, S. Osher, E. Fatemi, "Nonlinear total variation based noise removal
algorithms", Physica D 60, 1992.
A. Chambolle, "An algorithm for total variation minimization and applications",
J. Math. Imaging Vis. 20, 2004.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import (
    check_finite,
    check_finite_result,
    check_image,
    check_number,
    check_pair,
    check_reduction,
)

__all__ = [
    "sobel",
    "laplacian",
    "gradient_loss",
    "laplacian_loss",
    "total_variation",
    "GradientLoss",
    "LaplacianLoss",
    "TVLoss",
]

PADDINGS = ("replicate", "valid")
TV_KINDS = ("anisotropic", "isotropic")
TV_REDUCTIONS = ("mean", "sum", "none")

_SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]
_LAPLACE = [[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]


def _check_padding(padding: object) -> str:
    if padding not in PADDINGS:
        raise ValueError(
            f"padding must be one of {', '.join(repr(p) for p in PADDINGS)}; got {padding!r}. "
            "'replicate' keeps the image size by repeating border pixels, 'valid' drops the "
            "one-pixel border."
        )
    return padding  # type: ignore[return-value]


def _check_p(p: object) -> int:
    if isinstance(p, bool) or p not in (1, 2):
        raise ValueError(
            f"p must be 1 (L1, robust to outliers) or 2 (squared L2); got {p!r}."
        )
    return int(p)


def _full(x: torch.Tensor) -> torch.Tensor:
    """float32 for half-precision inputs (float32 and float64 are kept)."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _no_autocast(x: torch.Tensor):
    return torch.autocast(device_type=x.device.type, enabled=False)


def _filter3(x: torch.Tensor, kernel: list[list[float]], padding: str) -> torch.Tensor:
    """Cross-correlate every channel of ``x`` with one 3x3 ``kernel`` (full precision)."""
    with _no_autocast(x):
        return _filter3_full(_full(x), kernel, padding)


def _filter3_full(x: torch.Tensor, kernel: list[list[float]], padding: str) -> torch.Tensor:
    n, c, h, w = x.shape
    need = 3 if padding == "valid" else 1
    if h < need or w < need:
        raise ValueError(
            f"the image is too small for a 3x3 filter with padding={padding!r}: got "
            f"H={h}, W={w}; need H, W >= {need}. Use padding='replicate' or a larger image."
        )
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device).view(1, 1, 3, 3)
    flat = x.reshape(n * c, 1, h, w)
    if padding == "replicate":
        flat = F.pad(flat, (1, 1, 1, 1), mode="replicate")
    out = F.conv2d(flat, k)
    return out.reshape(n, c, out.shape[-2], out.shape[-1])


def sobel(
    x: torch.Tensor, *, padding: str = "replicate", normalized: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Sobel derivatives of every channel: ``(gx, gy)``.

    .. math::
        g_x = \begin{pmatrix}-1&0&1\\-2&0&2\\-1&0&1\end{pmatrix} \star x, \qquad
        g_y = \begin{pmatrix}-1&-2&-1\\0&0&0\\1&2&1\end{pmatrix} \star x

    (:math:`\star` is cross-correlation, as in ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    x : torch.Tensor
        Images, shape ``(N, C, H, W)``, floating point.
    padding : {"replicate", "valid"}
        Boundary convention (see the module docstring). ``"replicate"`` gives
        ``(N, C, H, W)``, ``"valid"`` gives ``(N, C, H-2, W-2)``.
    normalized : bool
        Divide by 8, so that a ramp rising by :math:`s` per pixel has gradient :math:`s`
        (default ``False``: the raw filter, whose response to that ramp is :math:`8s`).

    Returns
    -------
    gx, gy : torch.Tensor
        ``gx`` is the derivative along the width (positive where brightness increases to
        the right), ``gy`` along the height (positive where it increases downwards).

    Notes
    -----
    Conventions match ``scipy.ndimage.sobel``: ``gx`` equals ``sobel(img, axis=-1)`` and
    ``gy`` equals ``sobel(img, axis=-2)`` (with ``mode="nearest"`` at the border).

    Reference: I. Sobel, G. Feldman, "A 3x3 isotropic gradient operator for image
    processing", 1968 (talk at the Stanford AI Project).
    """
    check_image(x)
    _check_padding(padding)
    check_finite(x, "x")
    gx = _filter3(x, _SOBEL_X, padding)
    gy = _filter3(x, [list(r) for r in zip(*_SOBEL_X, strict=True)], padding)
    if normalized:
        gx, gy = gx / 8.0, gy / 8.0
    return gx, gy


def laplacian(x: torch.Tensor, *, padding: str = "replicate") -> torch.Tensor:
    r"""The 5-point Laplacian, :math:`x_{i\pm1,j} + x_{i,j\pm1} - 4x_{ij}` summed over neighbours.

    Zero on constant images and on linear ramps (away from the border); :math:`2a + 2b` on
    :math:`a i^2 + b j^2`. Shapes and ``padding`` as in :func:`sobel`. Equals
    ``scipy.ndimage.laplace(img, mode="nearest")``.
    """
    check_image(x)
    _check_padding(padding)
    check_finite(x, "x")
    return _filter3(x, _LAPLACE, padding)


def _prepare_pair(x, y, reduction, padding):
    check_pair(x, y)
    check_reduction(reduction)
    _check_padding(padding)
    check_finite(x, "x")
    check_finite(y, "y")


def _penalty(d: torch.Tensor, p: int) -> torch.Tensor:
    return d.abs() if p == 1 else d * d


def _reduce_mean(per_value: torch.Tensor, reduction: str) -> torch.Tensor:
    per_image = per_value.flatten(1).mean(dim=1)
    return check_finite_result(per_image.mean() if reduction == "mean" else per_image,
                               "the loss")


def gradient_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    p: int = 1,
    *,
    padding: str = "replicate",
    normalized: bool = True,
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Gradient (edge) loss: L1 or squared L2 between Sobel gradients.

    .. math::
        \mathcal{L}(x, y) = \frac{1}{CHW}\sum_{c,h,w}
        |g_x(x) - g_x(y)|^p + |g_y(x) - g_y(y)|^p

    Parameters
    ----------
    x, y : torch.Tensor
        Prediction and target, shape ``(N, C, H, W)``.
    p : {1, 2}
        1: absolute differences (default, as in most edge losses); 2: squared.
    padding : {"replicate", "valid"}
        Boundary convention of the Sobel filter (see the module docstring); the mean runs
        over the filter's output pixels.
    normalized : bool
        Use the Sobel filter divided by 8 (default ``True``), so gradients are in
        "intensity per pixel" and the loss has the scale of a pixel loss on differences.
    reduction : {"mean", "none"}
        A scalar, or one value per image ``(N,)``.

    Returns
    -------
    torch.Tensor
        Zero when ``x == y``; also zero when ``x - y`` is constant (a brightness offset is
        invisible to gradients). For two horizontal ramps of slopes :math:`a` and :math:`b`
        (normalized, replicate padding, width :math:`W`), :math:`p=1` gives
        :math:`|a-b|(W-1)/W`.
    """
    p = _check_p(p)
    _prepare_pair(x, y, reduction, padding)
    with _no_autocast(x):
        gx, gy = sobel(_full(x) - _full(y), padding=padding,
                       normalized=normalized)  # Sobel is linear
        return _reduce_mean(_penalty(gx, p) + _penalty(gy, p), reduction)


def laplacian_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    p: int = 1,
    *,
    padding: str = "replicate",
    reduction: str = "mean",
) -> torch.Tensor:
    r"""Laplacian loss: L1 (default) or squared L2 between 5-point Laplacians.

    .. math:: \mathcal{L}(x, y) = \frac{1}{CHW}\sum_{c,h,w} |\Delta x - \Delta y|^p

    Blind to constant offsets *and* to linear ramps (their Laplacian is zero), so it only
    compares curvature: edges, lines, corners and fine texture. Parameters as in
    :func:`gradient_loss`. For :math:`x = a j^2` against :math:`y = 0` with
    ``padding="valid"`` the loss is :math:`|2a|^p`.
    """
    p = _check_p(p)
    _prepare_pair(x, y, reduction, padding)
    with _no_autocast(x):
        return _reduce_mean(_penalty(laplacian(_full(x) - _full(y), padding=padding), p),
                            reduction)


def total_variation(
    x: torch.Tensor,
    kind: str = "anisotropic",
    reduction: str = "mean",
    *,
    eps: float = 1e-8,
) -> torch.Tensor:
    r"""Total variation of each image: the summed size of its forward differences.

    With :math:`d^x_{ij} = x_{i,j+1} - x_{ij}` and :math:`d^y_{ij} = x_{i+1,j} - x_{ij}`
    (zero past the last column / row: Neumann boundary),

    .. math::
        \mathrm{TV}_\text{aniso}(x) = \sum_{c,i,j} |d^x_{cij}| + |d^y_{cij}|, \qquad
        \mathrm{TV}_\text{iso}(x) = \sum_{c,i,j}
        \left(\sqrt{(d^x_{cij})^2 + (d^y_{cij})^2 + \varepsilon^2} - \varepsilon\right).

    The isotropic form is rotation invariant (the ROF/Chambolle TV); the anisotropic one
    favours axis-aligned edges. :math:`\varepsilon` keeps the isotropic gradient finite
    where the image is flat (the plain square root has an infinite derivative at 0);
    subtracting it keeps :math:`\mathrm{TV}(\text{constant}) = 0`.

    Parameters
    ----------
    x : torch.Tensor
        Images, shape ``(N, C, H, W)``.
    kind : {"anisotropic", "isotropic"}
    reduction : {"mean", "sum", "none"}
        ``"none"``: the per-image sum over channels and pixels, shape ``(N,)``;
        ``"sum"``: those summed over the batch; ``"mean"`` (default): each per-image sum
        divided by the number of pixels :math:`HW` (channels add up), averaged over the
        batch.
    eps : float
        :math:`\varepsilon` above (default ``1e-8``; isotropic only). ``0`` gives the exact
        TV but NaN gradients on flat regions.

    Returns
    -------
    torch.Tensor
        A scalar, or shape ``(N,)`` for ``reduction="none"``.

    Notes
    -----
    A step of height :math:`h` across an image :math:`H` rows tall has TV :math:`hH` (both
    kinds). A checkerboard of contrast 1 on :math:`H \times W` pixels has anisotropic TV
    :math:`H(W-1) + W(H-1)`. ``"sum"`` with ``kind="anisotropic"`` equals TensorFlow's
    ``tf.reduce_sum(tf.image.total_variation(x))``.

    References: Rudin, Osher, Fatemi 1992; Chambolle 2004.
    """
    check_image(x)
    if kind not in TV_KINDS:
        raise ValueError(
            f"kind must be 'anisotropic' (|dx| + |dy|) or 'isotropic' (sqrt(dx^2 + dy^2)); "
            f"got {kind!r}."
        )
    check_reduction(reduction, TV_REDUCTIONS)
    eps = check_number(eps, "eps", nonnegative=True, meaning="e.g. 1e-8")
    check_finite(x, "x")
    with _no_autocast(x):
        x = _full(x)
        dx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
        dy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
        if kind == "anisotropic":
            per_pixel = dx.abs() + dy.abs()
        else:
            per_pixel = torch.sqrt(dx * dx + dy * dy + eps * eps) - eps
        per_image = per_pixel.flatten(1).sum(dim=1)
        if reduction == "none":
            out = per_image
        elif reduction == "sum":
            out = per_image.sum()
        else:
            out = (per_image / (x.shape[-2] * x.shape[-1])).mean()
    return check_finite_result(out, "the total variation")


class GradientLoss(nn.Module):
    """Module form of :func:`gradient_loss`; ``GradientLoss(p=1)``."""

    def __init__(self, p: int = 1, *, padding: str = "replicate", normalized: bool = True,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.p = _check_p(p)
        self.padding = _check_padding(padding)
        self.normalized = normalized
        self.reduction = check_reduction(reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return gradient_loss(x, y, self.p, padding=self.padding, normalized=self.normalized,
                             reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"p={self.p}, padding={self.padding!r}, reduction={self.reduction!r}"


class LaplacianLoss(nn.Module):
    """Module form of :func:`laplacian_loss`; ``LaplacianLoss(p=1)``."""

    def __init__(self, p: int = 1, *, padding: str = "replicate",
                 reduction: str = "mean") -> None:
        super().__init__()
        self.p = _check_p(p)
        self.padding = _check_padding(padding)
        self.reduction = check_reduction(reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return laplacian_loss(x, y, self.p, padding=self.padding, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"p={self.p}, padding={self.padding!r}, reduction={self.reduction!r}"


class TVLoss(nn.Module):
    """Module form of :func:`total_variation`, a regulariser on the prediction.

    ``forward(x, target=None)`` ignores ``target``, so the module fits anywhere a
    ``loss(prediction, target)`` is expected (e.g. as one term of a ``CombinedLoss``).
    """

    def __init__(self, kind: str = "anisotropic", reduction: str = "mean", *,
                 eps: float = 1e-8) -> None:
        super().__init__()
        if kind not in TV_KINDS:
            raise ValueError(f"kind must be 'anisotropic' or 'isotropic'; got {kind!r}.")
        self.kind = kind
        self.reduction = check_reduction(reduction, TV_REDUCTIONS)
        self.eps = check_number(eps, "eps", nonnegative=True, meaning="e.g. 1e-8")

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        return total_variation(x, self.kind, self.reduction, eps=self.eps)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, reduction={self.reduction!r}, eps={self.eps}"
