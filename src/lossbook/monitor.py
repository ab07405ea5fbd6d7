"""Monitoring a training run with TensorBoard: every loss term, the learning rate, the
validation metrics and a picture of a fixed validation batch.

:func:`lossbook.train.fit` uses this module when it is given ``log_dir=``; nothing here
is needed to train. What gets written (TensorBoard "tags"):

``train/loss``
    The total loss, averaged over the steps since the previous log (as in
    :class:`~lossbook.train.History`).
``train/<term>``
    Every component a loss reports (``CombinedLoss`` reports each unweighted term).
``train/lr``
    The learning rate of the first parameter group.
``val/<metric>``
    The validation metrics (``loss``, ``psnr``) at each validation step.
``val/images``
    A grid of the first ``max_images`` validation pairs at each validation step: one row
    per image, columns input | prediction | target (clipped to ``[0, data_range]``).

Watching the *terms* rather than the total is the point: a total that falls while one
term rises, or a term that stops moving, is how a badly balanced combined loss shows
itself (Chapter 12). Open the curves with ``tensorboard --logdir runs/tb`` in a terminal,
or in Colab / Jupyter with ``%load_ext tensorboard`` then ``%tensorboard --logdir
runs/tb``; :func:`read_scalars` reads them back into Python (the chapter plots them
inline so the HTML book shows them too).

References
----------
TensorBoard, https://www.tensorflow.org/tensorboard, used through
``torch.utils.tensorboard.SummaryWriter``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["Monitor", "read_scalars", "image_grid", "TENSORBOARD_HINT"]

TENSORBOARD_HINT = (
    "TensorBoard logging (log_dir=...) needs the `tensorboard` package, which is not "
    "installed. Install it with `pip install tensorboard` (on Colab it is already there), "
    "or call fit without log_dir."
)


def _summary_writer():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as err:  # torch raises ImportError when tensorboard is missing
        raise ImportError(TENSORBOARD_HINT) from err
    return SummaryWriter


def image_grid(rows: list[torch.Tensor], data_range: float = 1.0, pad: int = 2) -> torch.Tensor:
    """Tile image batches into one ``(C, H', W')`` picture in ``[0, 1]``.

    Parameters
    ----------
    rows : list of torch.Tensor
        Batches ``(N, C, H, W)`` of the same shape, one per *column* (e.g. inputs,
        predictions, targets); image ``i`` of every batch makes row ``i``. One-channel
        images stay one-channel.
    data_range : float
        Values are clipped to ``[0, data_range]`` and divided by it.
    pad : int
        White pixels between tiles.
    """
    if not rows:
        raise ValueError("image_grid needs at least one batch of images.")
    shape = rows[0].shape
    for r in rows:
        if r.ndim != 4 or r.shape != shape:
            raise ValueError(
                f"image_grid takes batches of the same shape (N, C, H, W); got "
                f"{[tuple(b.shape) for b in rows]}."
            )
    n, c, h, w = shape
    cols = len(rows)
    grid = torch.ones(c, n * (h + pad) + pad, cols * (w + pad) + pad)
    for j, batch in enumerate(rows):
        batch = (batch.detach().float().cpu() / data_range).clamp(0, 1)
        for i in range(n):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[:, top:top + h, left:left + w] = batch[i]
    return grid


class Monitor:
    """TensorBoard logging for :func:`lossbook.train.fit` (a no-op without ``log_dir``).

    Parameters
    ----------
    log_dir : path or None
        Directory for the event files (created). ``None`` (or ``enabled=False``, as on
        every process but rank 0) turns every method into a no-op.
    enabled : bool
        Log only when true.
    start_step : int
        The step a resumed run starts after: events the previous attempt wrote past it
        are purged, so a resumed run's curves have no doubled stretch.
    max_images : int
        Validation images shown in ``val/images``.
    data_range : float
        Value range of the images, for the grid.

    Raises
    ------
    ImportError
        If ``tensorboard`` is not installed (the message says how to install it).
    """

    def __init__(self, log_dir: str | os.PathLike | None, *, enabled: bool = True,
                 start_step: int = 0, max_images: int = 4, data_range: float = 1.0) -> None:
        self.writer = None
        self.max_images = int(max_images)
        self.data_range = float(data_range)
        if log_dir is None or not enabled:
            return
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                f"log_dir must be a path (str or pathlib.Path), e.g. 'runs/tb/mse'; got "
                f"{type(log_dir).__name__}."
            )
        writer_cls = _summary_writer()
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self.writer = writer_cls(log_dir=str(log_dir),
                                 purge_step=start_step + 1 if start_step else None)

    @property
    def active(self) -> bool:
        """True when events are being written."""
        return self.writer is not None

    def log_train(self, step: int, loss: float, components: dict[str, float],
                  optimizer: torch.optim.Optimizer | None = None) -> None:
        """The logged training loss, each component and the learning rate at ``step``."""
        if self.writer is None:
            return
        self.writer.add_scalar("train/loss", loss, step)
        for name, value in components.items():
            self.writer.add_scalar(f"train/{name}", value, step)
        if optimizer is not None and optimizer.param_groups:
            self.writer.add_scalar("train/lr", float(optimizer.param_groups[0]["lr"]), step)

    @torch.no_grad()
    def log_validation(self, step: int, metrics: dict[str, float], model: nn.Module | None = None,
                       val_data=None, device: str | torch.device | None = None) -> None:
        """The validation metrics at ``step`` and, given the model and the validation pairs
        (``(inputs, targets)`` or a callable returning them), the ``val/images`` grid."""
        if self.writer is None:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(f"val/{name}", value, step)
        if model is None or val_data is None or self.max_images < 1:
            return
        inputs, targets = val_data() if callable(val_data) else val_data
        inputs, targets = inputs[: self.max_images], targets[: self.max_images]
        if device is None:
            p = next(model.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
        was_training = model.training
        model.eval()
        pred = model(inputs.to(device)).float()
        model.train(was_training)
        if inputs.shape == pred.shape:
            rows = [inputs, pred, targets]
        else:  # e.g. super-resolution: the input is smaller; show prediction | target
            rows = [pred, targets]
        self.writer.add_image("val/images", image_grid(rows, self.data_range), step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        """Write everything out and close the event file."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def read_scalars(log_dir: str | os.PathLike) -> dict[str, tuple[list[int], list[float]]]:
    """Read every scalar written under ``log_dir`` back: ``{tag: (steps, values)}``.

    Uses TensorBoard's own event reader (``EventAccumulator``), so what it returns is
    what the TensorBoard page plots. Several event files in the directory (a run that
    was resumed) are merged by TensorBoard in step order.

    Raises
    ------
    FileNotFoundError
        If ``log_dir`` holds no event file.
    """
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError as err:
        raise ImportError(TENSORBOARD_HINT) from err
    path = Path(log_dir)
    if not any(path.glob("events.out.tfevents.*")):
        raise FileNotFoundError(
            f"no TensorBoard event files in {path}; train with fit(..., log_dir="
            f"'{path}') first."
        )
    acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        out[tag] = ([e.step for e in events], [float(e.value) for e in events])
    return out
