r"""Losses made of several terms: fixed weights, the L1 + MS-SSIM "Mix", learned weights.

* :class:`CombinedLoss`: :math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i` with named terms;
  returns the total and the value of every term, for logging.
* :class:`MixLoss`: Zhao et al.'s (2017) mix of MS-SSIM and a Gaussian-weighted L1.
* :class:`UncertaintyWeightedLoss`: Kendall et al.'s (2018) learned weights
  :math:`\tfrac12 e^{-s_i}`, one log-variance :math:`s_i` per term.

All three return what :func:`lossbook.train.fit` accepts from a loss function: a scalar
(:class:`MixLoss`) or a tuple ``(total, {name: float})``.

References
----------
H. Zhao, O. Gallo, I. Frosio and J. Kautz, "Loss functions for image restoration with neural
networks", IEEE Trans. Comput. Imaging 3(1), 47-57, 2017.
A. Kendall, Y. Gal and R. Cipolla, "Multi-task learning using uncertainty to weigh losses
for scene geometry and semantics", CVPR 2018.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import (
    check_data_range,
    check_finite,
    check_finite_result,
    check_number,
    check_pair,
    check_reduction,
)
from .structural import MS_SSIM_WEIGHTS, gaussian_window, ms_ssim

__all__ = [
    "CombinedLoss", "MixLoss", "UncertaintyWeightedLoss", "gaussian_weighted_l1", "mix_l1_sigma",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], object]


def _term_value(name: str, out: object) -> torch.Tensor:
    """A term's scalar value; a nested ``(total, components)`` gives its total."""
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"loss term {name!r} must return a scalar tensor; got {shape}. Use reduction='mean' "
            "for that term."
        )
    return out.reshape(())


def _check_terms(terms: object, what: str) -> None:
    if not isinstance(terms, Mapping) or len(terms) == 0:
        raise TypeError(
            f"{what} takes a non-empty dict of named terms, e.g. "
            "{'l1': (0.16, L1Loss()), 'ms_ssim': (0.84, MSSSIMLoss())}; "
            f"got {type(terms).__name__}."
        )
    for name in terms:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"term names must be identifiers (e.g. 'l1', 'ssim'); got {name!r}.")


class CombinedLoss(nn.Module):
    r"""A weighted sum of named loss terms, :math:`\mathcal{L} = \sum_i w_i\,\mathcal{L}_i(x, y)`.

    Parameters
    ----------
    terms : dict
        ``{name: (weight, loss_fn)}``; ``loss_fn(x, y)`` returns a scalar tensor (or a
        ``(total, components)`` tuple, whose total is used). ``nn.Module`` terms are
        registered as submodules, so ``.to(device)`` and ``.parameters()`` include them.
        Weights are finite numbers (usually non-negative).

    Returns (forward)
    -----------------
    total : torch.Tensor
        The weighted sum, a scalar with gradient.
    components : dict of str to float
        The *unweighted* value of every term, detached, for logging.

    Examples
    --------
    >>> from lossbook.losses import L1Loss, SSIMLoss
    >>> loss = CombinedLoss({"l1": (0.5, L1Loss()), "ssim": (0.5, SSIMLoss())})
    >>> x = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> total, parts = loss(x, x)
    >>> float(total), sorted(parts)
    (0.0, ['l1', 'ssim'])
    """

    def __init__(self, terms: Mapping[str, tuple[float, LossFn]]) -> None:
        super().__init__()
        _check_terms(terms, "CombinedLoss")
        self.weights: dict[str, float] = {}
        self.fns: dict[str, LossFn] = {}
        modules = {}
        for name, spec in terms.items():
            if not (isinstance(spec, tuple) and len(spec) == 2):
                raise TypeError(
                    f"term {name!r} must be a (weight, loss_fn) pair, e.g. (0.84, MSSSIMLoss()); "
                    f"got {spec!r}."
                )
            weight, fn = spec
            check_number(weight, f"the weight of term {name!r}")
            if not callable(fn):
                raise TypeError(f"the loss of term {name!r} must be callable as fn(x, y); got "
                                f"{type(fn).__name__}.")
            self.weights[name] = float(weight)
            self.fns[name] = fn
            if isinstance(fn, nn.Module):
                modules[name] = fn
        self.terms = nn.ModuleDict(modules)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        total = None
        components: dict[str, float] = {}
        for name, fn in self.fns.items():
            value = _term_value(name, fn(x, y))
            components[name] = float(value.detach())
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        return total, components

    def extra_repr(self) -> str:
        return ", ".join(f"{n}: {w:g}" for n, w in self.weights.items())


def mix_l1_sigma(scales: int = 5, sigma: float = 1.5) -> float:
    r"""Width (pixels) of the Gaussian that weights the L1 term of the Mix loss.

    Zhao et al. (2017) weight the L1 error with :math:`G_{\sigma_G^M}`, the Gaussian of
    MS-SSIM's *coarsest* scale, so that both terms see the errors with the same spatial
    weighting. In their own MS-SSIM the scales are Gaussians of growing width at full
    resolution (:math:`\sigma = 0.5, 1, 2, 4, 8`), hence their :math:`\sigma_G^M = 8`. In
    Wang et al.'s (2003) MS-SSIM, which this package uses, every scale applies the same
    ``sigma``-pixel window to an image decimated by 2 per scale, so the coarsest of
    ``scales`` scales weights the original pixels with a Gaussian about

    .. math:: \sigma_G^M = \sigma \cdot 2^{M - 1}

    pixels wide: 24 for the standard five scales, 6 for three. This one rule is used
    wherever the book builds a Mix loss (Chapters 3, 7 and 9).

    Parameters
    ----------
    scales : int
        Number of MS-SSIM scales :math:`M` (default 5).
    sigma : float
        Standard deviation of the MS-SSIM window (default 1.5).

    Returns
    -------
    float
    """
    if isinstance(scales, bool) or not isinstance(scales, int) or scales < 1:
        raise ValueError(f"scales must be a positive integer (MS-SSIM scales); got {scales!r}.")
    sigma = check_number(sigma, "sigma", positive=True, meaning="pixels, e.g. 1.5")
    return sigma * 2 ** (scales - 1)


def gaussian_weighted_l1(
    x: torch.Tensor, y: torch.Tensor, *, sigma: float = 8.0, reduction: str = "mean"
) -> torch.Tensor:
    r"""L1 weighted by a Gaussian around every pixel, averaged: :math:`\overline{G_\sigma*|x-y|}`.

    Zhao et al. (2017) weight the L1 error of each patch by :math:`G_{\sigma_G^M}`, the
    Gaussian of MS-SSIM's coarsest scale (:math:`\sigma = 8` in their five-scale setting), so
    that the L1 term sees the errors with the same spatial weighting as MS-SSIM. Computed
    here as a 'valid' Gaussian blur of :math:`|x - y|` (window radius :math:`\lceil 3\sigma
    \rceil`), averaged over positions and channels: a plain mean L1 that weights border
    pixels less.

    Parameters
    ----------
    x, y : torch.Tensor
        Shape ``(N, C, H, W)``, both sides at least ``2 * ceil(3 * sigma) + 1`` (49 for 8).
    sigma : float
        Standard deviation of the Gaussian, pixels. Default 8.0.
    reduction : {"mean", "none"}

    Returns
    -------
    torch.Tensor
        Scalar, or shape ``(N,)``.
    """
    check_pair(x, y)
    check_reduction(reduction)
    sigma = check_number(sigma, "sigma", positive=True, meaning="pixels, e.g. 8.0")
    size = 2 * math.ceil(3 * sigma) + 1
    if min(x.shape[-2:]) < size:
        raise ValueError(
            f"the Gaussian-weighted L1 with sigma={sigma} uses a {size}x{size} window, so the "
            f"images must be at least {size}x{size}; got {x.shape[-2]}x{x.shape[-1]}. Use a "
            "smaller sigma."
        )
    check_finite(x, "x")
    check_finite(y, "y")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        d = (x.to(dtype) - y.to(dtype)).abs()
        g = gaussian_window(size, sigma, dtype=dtype, device=x.device)
        c = d.shape[1]
        d = F.conv2d(d, g.view(1, 1, size, 1).expand(c, 1, size, 1), groups=c)
        d = F.conv2d(d, g.view(1, 1, 1, size).expand(c, 1, 1, size), groups=c)
        per_image = d.flatten(1).mean(dim=1)
    return check_finite_result(per_image.mean() if reduction == "mean" else per_image,
                               "the Gaussian-weighted L1")


class MixLoss(nn.Module):
    r"""Zhao et al.'s (2017) "Mix": MS-SSIM plus a Gaussian-weighted L1.

    .. math::

        \mathcal{L}^{\mathrm{Mix}} = \alpha\,\bigl(1 - \mathrm{MS\text{-}SSIM}(x, y)\bigr)
            + (1 - \alpha)\; \overline{G_{\sigma} * |x - y|}

    MS-SSIM keeps edges and local structure; the L1 term keeps colours and overall
    brightness, which MS-SSIM is insensitive to.

    Parameters
    ----------
    alpha : float
        Weight of the MS-SSIM term, in [0, 1]. Default 0.84, the value in the paper. (The
        authors' released code defaults to 0.025, which weights the L1 term much more
        heavily; we follow the paper.)
    data_range : float
        Passed to :func:`~lossbook.losses.ms_ssim`. Default 1.0.
    l1_sigma : float or None
        :math:`\sigma` of the L1 weighting (:func:`gaussian_weighted_l1`). Default
        ``None``: the width of the coarsest scale of the MS-SSIM this loss uses,
        :func:`mix_l1_sigma` of its number of scales and window sigma (24 pixels for the
        standard five scales; Zhao et al.'s own MS-SSIM gives 8, see there).
    reduction : {"mean", "none"}
    **ms_ssim_kwargs
        Further keywords of :func:`~lossbook.losses.ms_ssim` (``win_size``, ``sigma``,
        ``weights``, ``k1``, ``k2``). With the defaults both image sides must exceed 160.

    Notes
    -----
    The paper computes MS-SSIM with a different Gaussian per scale
    (:math:`\sigma = 0.5, 1, 2, 4, 8`) for a patch's centre pixel; we use the standard
    MS-SSIM of Wang et al. (2003) (the same 11x11, sigma 1.5 window at every scale of the
    pyramid), as most reimplementations do.
    """

    def __init__(
        self,
        alpha: float = 0.84,
        *,
        data_range: float = 1.0,
        l1_sigma: float | None = None,
        reduction: str = "mean",
        **ms_ssim_kwargs: object,
    ) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
            raise ValueError(
                f"alpha must be in [0, 1] (the weight of the MS-SSIM term; the paper uses 0.84); "
                f"got {alpha!r}."
            )
        self.alpha = float(alpha)
        self.data_range = check_data_range(data_range)
        self.reduction = check_reduction(reduction)
        self.ms_ssim_kwargs = dict(ms_ssim_kwargs)
        self.ms_ssim_kwargs.setdefault("weights", MS_SSIM_WEIGHTS)
        if l1_sigma is None:
            l1_sigma = mix_l1_sigma(len(self.ms_ssim_kwargs["weights"]),
                                    float(self.ms_ssim_kwargs.get("sigma", 1.5)))
        self.l1_sigma = check_number(l1_sigma, "l1_sigma", positive=True,
                                     meaning="pixels, e.g. 6.0")

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ms = ms_ssim(x, y, data_range=self.data_range, reduction="none", **self.ms_ssim_kwargs)
        l1 = gaussian_weighted_l1(x, y, sigma=self.l1_sigma, reduction="none")
        per_image = self.alpha * (1 - ms) + (1 - self.alpha) * l1
        return per_image.mean() if self.reduction == "mean" else per_image

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, data_range={self.data_range}, l1_sigma={self.l1_sigma}"


class UncertaintyWeightedLoss(nn.Module):
    r"""Kendall et al.'s (2018) learned weighting of loss terms by homoscedastic uncertainty.

    For regression terms, Kendall et al. minimise
    :math:`\sum_i \frac{1}{2\sigma_i^2}\mathcal{L}_i + \log\sigma_i`. With the learnable
    log-variance :math:`s_i = \log\sigma_i^2` (stable: no division, no positivity
    constraint) that is

    .. math::

        \mathcal{L} = \sum_i \tfrac12 e^{-s_i}\,\mathcal{L}_i + \tfrac12 s_i .

    For fixed :math:`\mathcal{L}_i` the optimum is :math:`s_i = \log \mathcal{L}_i`: a term
    with a large loss gets a small weight. The widespread variant
    :math:`\sum_i e^{-s_i}\mathcal{L}_i + s_i` is exactly twice this, so it has the same
    minimiser and the same weights ratio, but gradients twice as large (like doubling the
    learning rate).

    Parameters
    ----------
    terms : dict
        ``{name: loss_fn}``; each ``loss_fn(x, y)`` returns a scalar.
    init_log_var : float
        Initial :math:`s_i` (default 0: every weight starts at 1/2).

    Returns (forward)
    -----------------
    total : torch.Tensor
        The weighted sum above, differentiable in the inputs and in :attr:`log_vars`.
    components : dict of str to float
        Each term's raw value under its name, and its current weight
        :math:`\tfrac12 e^{-s_i}` under ``"weight_<name>"``.

    Notes
    -----
    Put :attr:`log_vars` in the optimiser (``optim.Adam(list(model.parameters()) +
    list(loss.parameters()))``), or the weights never move.
    """

    def __init__(self, terms: Mapping[str, LossFn], init_log_var: float = 0.0) -> None:
        super().__init__()
        _check_terms(terms, "UncertaintyWeightedLoss")
        for name, fn in terms.items():
            if not callable(fn):
                raise TypeError(f"the loss of term {name!r} must be callable as fn(x, y); got "
                                f"{type(fn).__name__}.")
        self.names = list(terms)
        self.fns = dict(terms)
        self.terms = nn.ModuleDict({n: f for n, f in terms.items() if isinstance(f, nn.Module)})
        init_log_var = check_number(init_log_var, "init_log_var",
                                    meaning="the initial log-variance s_i; 0 gives weight 1/2")
        self.log_vars = nn.Parameter(torch.full((len(self.names),), init_log_var))

    def combine(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        r"""The total :math:`\sum_i \tfrac12 e^{-s_i} L_i + \tfrac12 s_i` of given term values."""
        missing = set(self.names) - set(values)
        if missing:
            raise KeyError(f"missing loss terms {sorted(missing)}; expected {self.names}.")
        stacked = torch.stack([_term_value(n, values[n]) for n in self.names])
        s = self.log_vars.to(stacked.dtype)
        return (0.5 * torch.exp(-s) * stacked + 0.5 * s).sum()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        values = {n: _term_value(n, self.fns[n](x, y)) for n in self.names}
        total = self.combine(values)
        components = {n: float(v.detach()) for n, v in values.items()}
        weights = (0.5 * torch.exp(-self.log_vars.detach())).tolist()
        components.update({f"weight_{n}": w for n, w in zip(self.names, weights, strict=True)})
        return total, components

    def extra_repr(self) -> str:
        return f"terms={self.names}"
