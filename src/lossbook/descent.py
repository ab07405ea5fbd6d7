r"""Optimise an image's pixels directly under a loss, and record what happens.

Training a network mixes two things: what the loss asks for, and what the network
and the data can deliver. Descending a loss on the *pixels themselves* removes the
network: start from an image :math:`x_0` (noise, a blurred or shifted copy of the
target), and step

.. math:: x_{k+1} = \Pi\big(x_k - \eta\, \mathrm{update}(\nabla_x \mathcal{L}(x_k, y))\big)

where :math:`y` is the target, :math:`\eta` the learning rate, ``update`` is the
optimiser's rule (plain gradient descent or Adam) and :math:`\Pi` clamps the pixels
to :math:`[0, L]`. Whatever the result looks like is what the loss "wants" from that
starting point (Wang and Bovik 2009 search image space along SSIM's gradient in the same
spirit, to compare MSE and SSIM).

:func:`descend` runs this loop and returns a :class:`Trajectory`: the loss (and its
components, for losses such as ``CombinedLoss`` that report them), chosen metrics
(PSNR, SSIM, MS-SSIM, ...) every ``record_every`` steps, and snapshots of the image
at chosen steps, e.g. for an animation.

A closed form to keep in mind: with plain gradient descent on the mean squared error
over :math:`n` values, :math:`\nabla_x \mathrm{MSE} = \tfrac{2}{n}(x - y)`, so

.. math:: x_{k+1} - y = \big(1 - \tfrac{2\eta}{n}\big)(x_k - y),
    \qquad \mathrm{MSE}(x_k, y) = \big(1 - \tfrac{2\eta}{n}\big)^{2k} \mathrm{MSE}(x_0, y):

the error contracts by the same factor every step, for every pixel at once (the
clamp never acts when :math:`x_0` and :math:`y` lie in :math:`[0, L]` and
:math:`2\eta/n \le 1`).

References
----------
Z. Wang and A. C. Bovik, "Mean squared error: love it or leave it?", IEEE Signal
Processing Magazine 26(1), 2009.
D. P. Kingma and J. Ba, "Adam: a method for stochastic optimization", ICLR 2015.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from . import metrics as _metrics
from ._validate import check_data_range, check_finite, check_pair

__all__ = ["descend", "Trajectory", "snapshot_steps", "OPTIMIZERS", "METRICS"]

#: Optimisers :func:`descend` builds by name (any other: pass a factory ``params -> optimizer``).
OPTIMIZERS = ("adam", "sgd")
#: Metrics :func:`descend` looks up by name in :mod:`lossbook.metrics`.
METRICS = ("psnr", "ssim", "ms_ssim", "mse", "mae")

_TAKE_RANGE = ("psnr", "ssim", "ms_ssim")

MetricFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class Trajectory:
    """What happened while :func:`descend` optimised an image.

    Step ``k`` means "after ``k`` optimiser updates"; step 0 is the (clamped) start.

    Attributes
    ----------
    step : list of int
        The recorded steps: ``0, record_every, 2 * record_every, ...`` and the last step.
    loss : list of float
        The loss of the image at each recorded step.
    components : dict of str to list of float
        Per-term values at each recorded step, for losses that return
        ``(total, {name: value})`` (e.g. ``CombinedLoss``); empty otherwise.
    metrics : dict of str to list of float
        Each requested metric of the image against the target at each recorded step.
    snapshot_step : list of int
        The steps at which a snapshot was kept.
    snapshots : list of torch.Tensor
        Detached CPU copies of the image at ``snapshot_step``, each ``(N, C, H, W)``.
    image : torch.Tensor
        The final image (detached, on the target's device).
    seconds : float
        Wall-clock time of the run, metrics included.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    snapshot_step: list[int] = field(default_factory=list)
    snapshots: list[torch.Tensor] = field(default_factory=list)
    image: torch.Tensor | None = None
    seconds: float = 0.0

    def final(self, name: str = "loss") -> float:
        """The last recorded value of the loss, a component or a metric."""
        if name == "loss":
            return self.loss[-1]
        for table in (self.metrics, self.components):
            if name in table:
                return table[name][-1]
        known = ["loss", *self.metrics, *self.components]
        raise KeyError(f"{name!r} was not recorded; recorded: {', '.join(map(repr, known))}.")

    def first_step_reaching(self, name: str, value: float, *, above: bool = True) -> int | None:
        """The first recorded step where metric ``name`` is ``>= value`` (``<=`` if not
        ``above``), or ``None`` if it never gets there."""
        series = self.loss if name == "loss" else self.metrics.get(name)
        if series is None:
            raise KeyError(f"{name!r} was not recorded; recorded metrics: "
                           f"{', '.join(map(repr, self.metrics)) or 'none'}.")
        for s, v in zip(self.step, series, strict=True):
            if (v >= value) if above else (v <= value):
                return s
        return None


def snapshot_steps(steps: int, n: int) -> list[int]:
    """About ``n`` distinct steps from 0 to ``steps``, spaced geometrically.

    Early steps change an image most, so frames for an animation are best taken
    densely at the start and sparsely later. Always includes 0 and ``steps``.

    Examples
    --------
    >>> snapshot_steps(100, 6)
    [0, 1, 3, 10, 32, 100]
    """
    _check_int(steps, "steps", minimum=1)
    _check_int(n, "n", minimum=2)
    out = {0, steps}
    for i in range(n - 1 if n > 2 else 0):
        out.add(int(round(steps ** (i / (n - 2)))))
    return sorted(out)


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}; got {value!r}.")
    return value


def _make_optimizer(optimizer: object, params: list[torch.Tensor], lr: float):
    if callable(optimizer) and not isinstance(optimizer, str):
        opt = optimizer(params)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                "an optimizer factory must return a torch.optim.Optimizer; got "
                f"{type(opt).__name__}. Example: optimizer=lambda p: torch.optim.SGD(p, lr=0.1)."
            )
        return opt
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(
        f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))} or a callable "
        f"params -> torch.optim.Optimizer; got {optimizer!r}."
    )


def _resolve_metrics(
    metrics: Sequence[str] | Mapping[str, MetricFn] | None, data_range: float
) -> dict[str, MetricFn]:
    if metrics is None:
        return {}
    if isinstance(metrics, str):
        raise TypeError(
            f"metrics must be a list of names or a dict of callables; got the string "
            f"{metrics!r}. Write metrics=[{metrics!r}]."
        )
    if isinstance(metrics, Mapping):
        bad = [k for k, f in metrics.items() if not callable(f)]
        if bad:
            raise TypeError(f"metrics values must be callables fn(x, target); not for {bad}.")
        return dict(metrics)
    out: dict[str, MetricFn] = {}
    for name in metrics:
        fn = getattr(_metrics, name, None) if name in METRICS else None
        if fn is None:
            available = [m for m in METRICS if hasattr(_metrics, m)]
            raise ValueError(
                f"unknown metric {name!r}; available by name: {', '.join(map(repr, available))}. "
                "For anything else pass a dict {name: fn(x, target) -> tensor}."
            )
        if name in _TAKE_RANGE:
            out[name] = _with_range(fn, data_range)
        else:
            out[name] = fn
    return out


def _with_range(fn: Callable[..., torch.Tensor], data_range: float) -> MetricFn:
    return lambda x, y: fn(x, y, data_range=data_range)


def _split_loss(out: object, step: int) -> tuple[torch.Tensor, dict[str, float]]:
    parts: dict[str, float] = {}
    if isinstance(out, tuple):
        if len(out) != 2 or not isinstance(out[1], Mapping):
            raise TypeError(
                "loss_fn must return a scalar tensor or (total, {name: value}); got a tuple of "
                f"length {len(out)}."
            )
        out, raw = out
        parts = {k: float(v.detach() if isinstance(v, torch.Tensor) else v) for k, v in raw.items()}
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        what = (f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
                else type(out).__name__)
        raise TypeError(
            f"loss_fn must return a scalar tensor; got {what}. Use reduction='mean' "
            "(or .mean() the result)."
        )
    if not torch.isfinite(out):
        raise FloatingPointError(
            f"the loss became {out.item()} at step {step} (components: {parts}); lower the "
            "learning rate, or check the loss for a division by zero."
        )
    return out.reshape(()), parts


def descend(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], object],
    target: torch.Tensor,
    init: torch.Tensor,
    *,
    steps: int,
    lr: float,
    optimizer: str | Callable[[list[torch.Tensor]], torch.optim.Optimizer] = "adam",
    record_every: int = 1,
    metrics: Sequence[str] | Mapping[str, MetricFn] | None = None,
    snapshot_at: Sequence[int] | None = None,
    clamp: bool = True,
    data_range: float = 1.0,
) -> Trajectory:
    r"""Optimise the pixels of ``init`` to minimise ``loss_fn(image, target)``.

    Each step computes :math:`\mathcal{L}(x_k, y)`, back-propagates to the pixels, lets
    the optimiser update them and (if ``clamp``) clips them to :math:`[0, L]`. The run is
    deterministic: no randomness is drawn (make ``init`` with a seeded generator).

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(x, target)`` -> scalar tensor, or ``(total, {name: value})`` as
        ``CombinedLoss`` returns (the components are recorded too). Must be
        differentiable in ``x``.
    target : torch.Tensor
        The image to reach, ``(N, C, H, W)``, floating point, values in ``[0, L]``.
    init : torch.Tensor
        The starting image, same shape, dtype and device as ``target``. It is copied,
        never modified; with ``clamp`` the copy is clipped to ``[0, L]`` first.
    steps : int
        Number of optimiser updates (>= 1).
    lr : float
        Learning rate. For ``"sgd"`` on a loss averaged over :math:`n` values the gradient
        of each pixel is :math:`O(1/n)`, so useful rates are :math:`O(n)` (see the module
        docstring); Adam normalises the gradient, so its ``lr`` is roughly the change of a
        pixel per step (0.01 to 0.05 for images in [0, 1]).
    optimizer : {"adam", "sgd"} or callable
        Plain gradient descent (``torch.optim.SGD`` without momentum), Adam (default), or a
        factory ``params -> torch.optim.Optimizer`` (then ``lr`` is ignored).
    record_every : int
        Record the loss and metrics at steps ``0, record_every, 2 * record_every, ...``
        and at the last step. Default 1.
    metrics : list of str or dict of str to callable, optional
        Names from :mod:`lossbook.metrics` (``"psnr"``, ``"ssim"``, ``"ms_ssim"``, ``"mse"``,
        ``"mae"``; ``data_range`` is passed to those that take it), or a dict of
        ``fn(x, target) -> tensor`` (a scalar, or one value per image that is averaged).
        Computed without gradients.
    snapshot_at : sequence of int, optional
        Steps in ``[0, steps]`` at which to keep a copy of the image (e.g.
        :func:`snapshot_steps`). Default: none (the final image is always in ``.image``).
    clamp : bool
        Clip the pixels to ``[0, data_range]`` after every update (default True).
    data_range : float
        :math:`L`, the width of the value range (1.0 for images in [0, 1]).

    Returns
    -------
    Trajectory
        Recorded loss, components, metrics, snapshots and the final image.

    Raises
    ------
    TypeError, ValueError
        For bad arguments (the message says what was given and what is expected).
    FloatingPointError
        If the loss becomes NaN or infinite; the message names the step.

    Examples
    --------
    >>> y = torch.full((1, 1, 4, 4), 0.5); x0 = torch.zeros_like(y)
    >>> tr = descend(lambda x, t: ((x - t) ** 2).mean(), y, x0, steps=3, lr=4.0,
    ...              optimizer="sgd")
    >>> [round(v, 6) for v in tr.loss]  # contracts by (1 - 2 * 4 / 16) ** 2 = 0.25 per step
    [0.25, 0.0625, 0.015625, 0.003906]
    """
    if not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a callable loss_fn(x, target); got {type(loss_fn).__name__}."
        )
    check_pair(init, target, ("init", "target"))
    check_finite(init, "init")
    check_finite(target, "target")
    L = check_data_range(data_range)
    _check_int(steps, "steps", minimum=1)
    _check_int(record_every, "record_every", minimum=1)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (0 < lr < math.inf):
        raise ValueError(f"lr must be a positive finite number (the step size); got {lr!r}.")
    if not isinstance(clamp, bool):
        raise TypeError(f"clamp must be True or False; got {clamp!r}.")
    snaps = set()
    for s in snapshot_at or ():
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= steps:
            raise ValueError(
                f"snapshot_at must hold ints in [0, steps={steps}]; got {s!r}. "
                "snapshot_steps(steps, n) makes a valid list."
            )
        snaps.add(s)
    metric_fns = _resolve_metrics(metrics, L)

    target = target.detach()
    x = init.detach().clone()
    if clamp:
        x.clamp_(0.0, L)
    x.requires_grad_(True)
    opt = _make_optimizer(optimizer, [x], float(lr))
    traj = Trajectory(metrics={name: [] for name in metric_fns})

    start = time.perf_counter()
    for k in range(steps + 1):
        # the loss of x_k, the image after k updates
        loss, parts = _split_loss(loss_fn(x, target), k)
        if k % record_every == 0 or k == steps:
            traj.step.append(k)
            traj.loss.append(float(loss.detach()))
            for name, v in parts.items():
                traj.components.setdefault(name, []).append(v)
            with torch.no_grad():
                for name, fn in metric_fns.items():
                    traj.metrics[name].append(float(fn(x.detach(), target).float().mean()))
        if k in snaps:
            traj.snapshot_step.append(k)
            traj.snapshots.append(x.detach().cpu().clone())
        if k == steps:
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if clamp:
            with torch.no_grad():
                x.clamp_(0.0, L)
    traj.seconds = time.perf_counter() - start
    traj.image = x.detach()
    return traj
