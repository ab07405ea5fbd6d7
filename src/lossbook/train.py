"""Training loop: ``fit`` a model to a loss on data sampled batch by batch.

The loop reads top to bottom: sample a batch, predict, compute the loss, step.
Data is a *sampler*: a callable ``data(batch_size, generator) -> (inputs, targets)``
that draws a fresh batch with the given ``torch.Generator``, so a run is
reproducible from its seed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["fit", "History", "resolve_device"]

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class History:
    """What happened during :func:`fit`.

    Attributes
    ----------
    step : list of int
        The logged steps (1-based).
    loss : list of float
        The total loss at each logged step.
    components : dict of str to list of float
        Per-term values for losses that report them (see ``CombinedLoss``).
    seconds : float
        Wall-clock time of the run.
    images_per_second : float
        Training throughput.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else -> ``torch.device(device)``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _split_loss(out: object) -> tuple[torch.Tensor, dict[str, float]]:
    if isinstance(out, tuple):
        total, parts = out
        return total, {k: float(v) for k, v in parts.items()}
    return out, {}  # type: ignore[return-value]


def fit(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Sampler,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device = "auto",
    log_every: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> History:
    """Train ``model`` for ``steps`` optimiser steps and return its :class:`History`.

    Parameters
    ----------
    model : nn.Module
        The network; moved to ``device``.
    loss_fn : callable
        ``loss_fn(prediction, target)`` -> scalar tensor, or ``(total, {name: value})``.
    data : callable
        ``data(batch_size, generator)`` -> ``(inputs, targets)`` on ``device``.
    steps : int
        Number of optimiser steps.
    batch_size : int
        Images per step.
    lr : float
        Learning rate of the default Adam optimiser.
    optimizer : torch.optim.Optimizer, optional
        Use this optimiser instead of Adam.
    device : str or torch.device
        ``"auto"`` picks CUDA when available.
    log_every : int
        Record the loss every this many steps (and at the last step).
    seed : int
        Seeds the data generator and the model's initialisation is left as is.
    progress : bool
        Show a progress bar (``tqdm.auto``).
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}.")
    device = resolve_device(device)
    model.to(device)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    history = History()
    bar = range(1, steps + 1)
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(bar, desc="training", leave=False)
    start = time.perf_counter()
    model.train()
    for step in bar:
        inputs, targets = data(batch_size, gen)
        loss, parts = _split_loss(loss_fn(model(inputs), targets))
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss became {loss.item()} at step {step} (components: {parts}); lower "
                "the learning rate or check the data for NaN."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % log_every == 0 or step == steps:
            history.step.append(step)
            history.loss.append(float(loss))
            for k, v in parts.items():
                history.components.setdefault(k, []).append(v)
    model.eval()
    history.seconds = time.perf_counter() - start
    history.images_per_second = steps * batch_size / max(history.seconds, 1e-9)
    return history
