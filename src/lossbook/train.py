"""Training loop: ``fit`` a model to a loss on data sampled batch by batch.

The loop reads top to bottom: sample a batch, predict, compute the loss, check it,
step. Everything else (mixed precision, checkpoints, validation, several processes)
is a small, named helper around that loop.

Data is a *sampler*: a callable ``data(batch_size, generator) -> (inputs, targets)``
that draws a fresh batch with the given ``torch.Generator``. A run is therefore
reproducible from its seed, and a checkpoint that stores the generator's state lets
an interrupted run continue exactly where it stopped.

What a student on Colab can rely on:

* **It survives a disconnect.** With ``checkpoint=path``, :func:`fit` writes the model,
  the optimiser, the random generators, the step and the history to ``path`` every
  ``checkpoint_every`` steps, at the end, and when interrupted (``KeyboardInterrupt``:
  save, then re-raise). Each write is atomic (temporary file, then rename), so a kill
  during a save leaves the previous checkpoint intact. Calling :func:`fit` again with
  the same arguments resumes from it, and on the CPU ends with bitwise the same
  weights as a run that was never interrupted.
* **It tells you when you forgot the GPU.** When the budget is ``gpu`` (or the code
  runs on Colab) but the device is the CPU, :func:`fit` warns and says how to switch.
* **It never silently trains on garbage.** The first batch is checked (shapes, finite
  values, the targets' value range) and the loss is checked at every step; a NaN or
  infinite loss stops training with the step number and the last loss components.

Mixed precision: on CUDA, ``amp="auto"`` runs the model under ``torch.autocast`` in
bfloat16 where the GPU supports it (float16 with a gradient scaler otherwise). The
loss is always computed in float32, outside autocast, on the float32 copy of the
prediction, so loss statistics (means, variances, SSIM) keep full precision.

Several processes: under ``torchrun`` (or any launcher that initialises
``torch.distributed``), the model is wrapped in ``DistributedDataParallel``; each
rank draws its own batches (``batch_size / world_size`` images, from a generator
seeded with ``seed + rank``), gradients are averaged, and rank 0 alone shows the
progress bar and writes checkpoints.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from .budget import get_budget
from .metrics import psnr
from .monitor import Monitor

__all__ = [
    "fit",
    "History",
    "resolve_device",
    "resolve_amp",
    "save_checkpoint",
    "load_checkpoint",
    "check_batch",
]

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

CHECKPOINT_FORMAT = 1

_GPU_HINT = (
    "Training on the CPU although the budget is 'gpu' (or this is Colab): this will be "
    "slow. On Colab switch the runtime with Runtime > Change runtime type > Hardware "
    "accelerator: GPU (e.g. T4) and re-run the notebook from the top; elsewhere set "
    "LOSSBOOK_BUDGET=cpu for CPU-sized experiments."
)


@dataclass
class History:
    """What happened during :func:`fit`.

    Attributes
    ----------
    step : list of int
        The logged steps (1-based): every ``log_every`` steps and the last one.
    loss : list of float
        The total loss at each logged step, averaged over the steps since the
        previous log (so the curve is not dominated by one batch).
    components : dict of str to list of float
        Per-term values for losses that report them (``(total, {name: value})``, as
        ``CombinedLoss`` does), averaged the same way.
    val_step : list of int
        The steps at which the validation data was evaluated.
    val : dict of str to list of float
        Validation metrics at ``val_step``: ``"loss"`` (the training loss on the
        validation pairs) and ``"psnr"`` (mean of per-image PSNR, dB).
    seconds : float
        Wall-clock time spent training (accumulated over resumed runs).
    data_seconds : float
        The part of ``seconds`` spent drawing batches from the sampler.
    images_per_second : float
        Training throughput: images processed per second of ``seconds``.
    steps_done : int
        Optimiser steps completed so far.
    resumed_from : int
        The step the run was resumed from (0 for a fresh run).
    device, amp : str
        Where and in which precision the model ran (``amp`` is ``"off"``,
        ``"bf16"`` or ``"fp16"``).
    world_size : int
        Number of processes (1 without ``torch.distributed``).
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    components: dict[str, list[float]] = field(default_factory=dict)
    val_step: list[int] = field(default_factory=list)
    val: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    data_seconds: float = 0.0
    images_per_second: float = 0.0
    steps_done: int = 0
    resumed_from: int = 0
    device: str = "cpu"
    amp: str = "off"
    world_size: int = 1

    def to_dict(self) -> dict:
        """A JSON-serialisable copy."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def final_loss(self) -> float:
        """The last logged loss (``nan`` if nothing was logged)."""
        return self.loss[-1] if self.loss else math.nan


# --------------------------------------------------------------------------- helpers


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else CPU; anything else -> ``torch.device(device)``."""
    if isinstance(device, str) and device == "auto":
        if _dist_active() and torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_amp(amp: str | bool | None, device: torch.device) -> str:
    """Decide the autocast precision: ``"off"``, ``"bf16"`` or ``"fp16"``.

    ``"auto"`` (or ``True``) means bf16 on CUDA GPUs that support it, fp16 on other CUDA
    GPUs, and off on the CPU (CPU autocast is slower than float32 for small
    convolutions). ``"bf16"`` also works on the CPU; ``"fp16"`` needs CUDA.
    """
    if amp is None or amp is False or amp == "off":
        return "off"
    if amp is True or amp == "auto":
        if device.type != "cuda":
            return "off"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if amp == "bf16":
        return "bf16"
    if amp == "fp16":
        if device.type != "cuda":
            raise ValueError(
                f"amp='fp16' needs a CUDA device; got device {device}. Use amp='bf16' on "
                "the CPU, or amp='off'."
            )
        return "fp16"
    raise ValueError(
        f"amp must be 'auto', 'off', 'bf16', 'fp16', True, False or None; got {amp!r}."
    )


def _dist_active() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _maybe_init_distributed() -> None:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment), join the process group.

    The backend is NCCL when CUDA is available, else gloo. Does nothing when the group
    is already initialised or when running as a single process.
    """
    if _dist_active() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def _split_loss(out: object) -> tuple[torch.Tensor, dict[str, float]]:
    """Accept ``loss`` or ``(loss, {name: value})`` from a loss function."""
    if isinstance(out, tuple):
        total, parts = out
        return total, {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v)
                       for k, v in parts.items()}
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise TypeError(
            "loss_fn must return a scalar tensor or (total, {name: value}); got "
            + (f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor)
               else f"{type(out).__name__}")
            + ". Use reduction='mean' (the default) in the loss."
        )
    return out, {}


def check_batch(
    inputs: object,
    targets: object,
    *,
    data_range: float = 1.0,
    where: str = "the first batch",
) -> None:
    """Refuse a batch that would train on garbage.

    Checks that ``inputs`` and ``targets`` are float tensors of shape ``(N, C, H, W)``
    with the same ``N``, that every value is finite, and that the targets lie in
    ``[0, data_range]`` (with 1 % slack). Inputs may leave that range (noise is not
    clipped) but not by more than ``data_range`` on either side.

    Raises
    ------
    TypeError, ValueError
        Saying what was found and how to fix it.
    """
    for name, t in (("inputs", inputs), ("targets", targets)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(
                f"{where}: the sampler must return (inputs, targets) tensors; {name} is a "
                f"{type(t).__name__}."
            )
        if t.ndim != 4:
            raise ValueError(
                f"{where}: {name} must have shape (N, C, H, W); got {tuple(t.shape)}. A "
                "sampler returns a batch of images, e.g. with torch.stack(...)."
            )
        if not torch.is_floating_point(t):
            raise TypeError(
                f"{where}: {name} must be floating point; got {t.dtype}. Convert with "
                ".float() (and divide 8-bit images by 255)."
            )
        if not bool(torch.isfinite(t).all()):
            raise ValueError(
                f"{where}: {name} holds {int((~torch.isfinite(t)).sum())} NaN/inf values; "
                "every value must be finite. Check the images and the degradation."
            )
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{where}: inputs and targets must hold the same number of images; got "
            f"{inputs.shape[0]} and {targets.shape[0]}."
        )
    lo, hi = float(targets.min()), float(targets.max())
    slack = 0.01 * data_range
    if lo < -slack or hi > data_range + slack:
        hint = " (8-bit images? divide by 255)" if hi > 2 * data_range else ""
        raise ValueError(
            f"{where}: targets span [{lo:.4g}, {hi:.4g}] but data_range is {data_range}; "
            f"expected values in [0, {data_range}]{hint}. Rescale the images or pass "
            "the matching data_range."
        )
    ilo, ihi = float(inputs.min()), float(inputs.max())
    if ilo < -data_range or ihi > 2 * data_range:
        raise ValueError(
            f"{where}: inputs span [{ilo:.4g}, {ihi:.4g}], far outside [0, {data_range}]; "
            "are they on another scale than the targets (e.g. 0-255 vs 0-1)?"
        )


def _check_prediction(pred: torch.Tensor, targets: torch.Tensor) -> None:
    if pred.shape != targets.shape:
        raise ValueError(
            f"the model's output has shape {tuple(pred.shape)} but the targets have "
            f"{tuple(targets.shape)}; the loss compares them pixel by pixel, so they must "
            "match (check the model's padding, scale factor or channels)."
        )


def _warn_if_gpu_forgotten(device: torch.device) -> None:
    if device.type == "cuda":
        return
    try:
        budget_name = get_budget().name
    except ValueError:
        budget_name = "?"
    if budget_name == "gpu" or "google.colab" in sys.modules:
        warnings.warn(_GPU_HINT, RuntimeWarning, stacklevel=3)


def _cosine(step: int, steps: int) -> float:
    return max(0.01, 0.5 * (1.0 + math.cos(math.pi * (step - 1) / steps)))


def _resolve_schedule(schedule):
    if schedule is None or callable(schedule):
        return schedule
    if schedule == "cosine":
        return _cosine
    raise ValueError(
        f"lr_schedule must be None, 'cosine' or a callable factor(step, steps); got "
        f"{schedule!r}."
    )


def _autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` with ``torch.save`` atomically: to a temporary file, then rename.

    A crash or kill while writing leaves the previous checkpoint at ``path`` intact (the
    rename is atomic on POSIX and Windows). Returns the path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint written by :func:`fit` (or :func:`save_checkpoint`).

    The file is read with ``torch.load(..., weights_only=True)``: only tensors, numbers,
    strings and containers of them are rebuilt, so a crafted checkpoint cannot run code
    (a full unpickle would execute whatever the file asks for). lossbook's own
    checkpoints hold nothing else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    state = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(
            f"{path} is not a lossbook training checkpoint (format {CHECKPOINT_FORMAT}); "
            "delete it to start over."
        )
    return state


def _step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the batch (and of dropout) at ``step`` on ``rank``.

    Reseeding every step makes each batch a pure function of ``(seed, rank, step)``: a
    resumed run draws exactly the batches the uninterrupted one would have drawn,
    without any process having to gather the others' generator states.
    """
    return ((seed * 1_000_003 + rank) * 1_000_033 + step) % (2**63 - 1)


class _DeferInterrupt:
    """Hold a Ctrl-C (SIGINT) until the current training step has finished.

    The first Ctrl-C sets a flag that the loop checks between steps, so a checkpoint is
    never written from a half-updated model; a second Ctrl-C interrupts at once. Only
    active in the main thread (signal handlers cannot be installed elsewhere).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> _DeferInterrupt:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --------------------------------------------------------------------------- validation


@torch.no_grad()
def _validate(model, loss_fn, val_data, device, amp, data_range, chunk=8) -> dict[str, float]:
    inputs, targets = val_data() if callable(val_data) else val_data
    losses, psnrs = [], []
    was_training = model.training
    model.eval()
    for i in range(0, inputs.shape[0], chunk):
        x = inputs[i:i + chunk].to(device)
        y = targets[i:i + chunk].to(device)
        with _autocast(device, amp):
            pred = model(x)
        pred = pred.float()
        total, _ = _split_loss(loss_fn(pred, y.float()))
        losses.append(float(total) * x.shape[0])
        psnrs.append(psnr(pred.clamp(0, data_range), y.float(), data_range=data_range,
                          reduction="none").cpu())
    model.train(was_training)
    n = inputs.shape[0]
    return {"loss": sum(losses) / n, "psnr": float(torch.cat(psnrs).mean())}


# --------------------------------------------------------------------------- the loop


class _Window:
    """Running sums of the loss and its components between two logged steps."""

    def __init__(self, total: float = 0.0, parts: dict | None = None, n: int = 0) -> None:
        self.total, self.parts, self.n = total, dict(parts or {}), n

    def add(self, loss: float, parts: dict[str, float]) -> None:
        self.total += loss
        self.n += 1
        for k, v in parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + v

    def flush(self) -> tuple[float, dict[str, float]]:
        out = self.total / self.n, {k: v / self.n for k, v in self.parts.items()}
        self.total, self.parts, self.n = 0.0, {}, 0
        return out

    def state(self) -> dict:
        return {"total": self.total, "parts": dict(self.parts), "n": self.n}


def fit(
    model: nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    data: Sampler,
    *,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    optimizer: torch.optim.Optimizer | None = None,
    lr_schedule: str | Callable[[int, int], float] | None = None,
    device: str | torch.device = "auto",
    amp: str | bool | None = "auto",
    val_data: tuple[torch.Tensor, torch.Tensor] | Callable | None = None,
    val_every: int | None = None,
    log_every: int = 10,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    data_range: float = 1.0,
    grad_clip: float | None = None,
    callback: Callable[[int, nn.Module, History], None] | None = None,
    progress: bool = True,
    log_dir: str | os.PathLike | None = None,
) -> History:
    r"""Train ``model`` for ``steps`` optimiser steps and return its :class:`History`.

    Each step draws a batch and takes one optimiser step on the loss:

    .. math:: \theta \leftarrow \mathrm{Adam}\big(\theta,\ \nabla_\theta\,
              \mathcal{L}(f_\theta(x), y)\big), \qquad (x, y) \sim \texttt{data}

    Parameters
    ----------
    model : nn.Module
        The network; moved to ``device``. Initialise (and seed) it before calling.
    loss_fn : callable
        ``loss_fn(prediction, target)`` -> scalar tensor, or ``(total, {name: value})``.
        Called in float32, outside autocast.
    data : callable
        ``data(batch_size, generator)`` -> ``(inputs, targets)``, both ``(N, C, H, W)``;
        moved to ``device`` if they are elsewhere.
    steps : int
        Total number of optimiser steps (a resumed run counts the steps already done).
    batch_size : int
        Images per step, summed over processes. Default 16.
    lr : float
        Learning rate of the default Adam optimiser. Default 1e-3.
    optimizer : torch.optim.Optimizer, optional
        Use this optimiser (built on ``model.parameters()``) instead of Adam.
    lr_schedule : {None, "cosine"} or callable, optional
        Multiply each parameter group's initial learning rate by ``factor(step, steps)``
        before every step: ``"cosine"`` is :math:`0.5 (1 + \cos(\pi (t - 1) / T))`, floored
        at 0.01; a callable gives the factor itself. Being a function of the step, it
        resumes exactly. Default ``None``: constant.
    device : str or torch.device
        ``"auto"`` (default) picks CUDA when available.
    amp : {"auto", "off", "bf16", "fp16"} or bool
        Mixed precision for the model's forward pass; see :func:`resolve_amp`.
    val_data : (inputs, targets) or callable returning them, optional
        Held-out pairs evaluated every ``val_every`` steps and at the end
        (:attr:`History.val`).
    val_every : int, optional
        Default: ``max(log_every, steps // 10)``.
    log_every : int
        Record the loss every this many steps and at the last one. Default 10.
    checkpoint : path, optional
        Save here every ``checkpoint_every`` steps, at the end and on
        ``KeyboardInterrupt``; if the file exists, **resume** from it.
    checkpoint_every : int, optional
        Default: ``max(1, steps // 10)``.
    seed : int
        The batch at step ``t`` on process ``r`` is drawn from a generator seeded with
        a function of ``(seed, r, t)``; stochastic layers (dropout) draw from a global
        generator reseeded the same way inside ``fit`` (the caller's global random
        state is restored afterwards). The model's initialisation happens before
        ``fit``: seed it there (``lossbook.setup`` or ``torch.manual_seed``).
    data_range : float
        Value range of the targets, ``[0, data_range]``: checked on the first batch and
        used for the validation PSNR. Default 1.0.
    grad_clip : float, optional
        Clip the gradients' global norm to this value.
    callback : callable, optional
        ``callback(step, model, history)`` after every step (e.g. to plot live).
    progress : bool
        Show a progress bar (``tqdm.auto``) with the running loss.
    log_dir : path, optional
        Write TensorBoard events here (every loss term, the learning rate, the
        validation metrics and an image grid of the validation batch); see
        :mod:`lossbook.monitor`. Needs the ``tensorboard`` package.

    Returns
    -------
    History

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite; the message gives the step and the loss
        components of that step and of the last logged step.
    ValueError, TypeError
        For invalid arguments, a first batch that fails :func:`check_batch`, a model
        output whose shape differs from the targets', or a checkpoint written with a
        different ``batch_size``, ``seed`` or number of processes.

    Notes
    -----
    Determinism: on the CPU, two runs with the same seed, model initialisation and
    arguments give bitwise identical weights, and so does a run that was interrupted
    and resumed from its checkpoint. On CUDA, cuDNN may add differences at the level
    of float rounding unless ``torch.backends.cudnn.deterministic = True``.

    Examples
    --------
    >>> import torch
    >>> from lossbook.models import TinyCNN
    >>> def data(n, g):
    ...     y = torch.rand(n, 1, 16, 16, generator=g)
    ...     return (y + 0.1 * torch.randn(n, 1, 16, 16, generator=g), y)
    >>> h = fit(TinyCNN(), torch.nn.MSELoss(), data, steps=5, device="cpu", progress=False)
    >>> h.steps_done
    5
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int; got {steps!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
    if isinstance(log_every, bool) or not isinstance(log_every, int) or log_every < 1:
        raise ValueError(f"log_every must be a positive int; got {log_every!r}.")
    if not callable(data):
        raise TypeError(
            f"data must be a callable data(batch_size, generator) -> (inputs, targets); got "
            f"{type(data).__name__}. Wrap tensors in a function or use a PatchSampler."
        )

    # --- where, how, and from which step ------------------------------------------------
    _maybe_init_distributed()
    world = torch.distributed.get_world_size() if _dist_active() else 1
    rank = torch.distributed.get_rank() if _dist_active() else 0
    if batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by the {world} processes; pick a "
            "multiple of the world size."
        )
    local_batch = batch_size // world
    device = resolve_device(device)
    amp = resolve_amp(amp, device)
    if rank == 0:
        _warn_if_gpu_forgotten(device)
    model.to(device)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])
    schedule = _resolve_schedule(lr_schedule)
    scaler = torch.amp.GradScaler("cuda", enabled=(amp == "fp16"))
    gen = torch.Generator(device=device)
    checkpoint_every = checkpoint_every or max(1, steps // 10)
    val_every = val_every or max(log_every, steps // 10)
    config = {"batch_size": batch_size, "seed": seed, "world_size": world}

    history = History(device=str(device), amp=amp, world_size=world)
    window = _Window()
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, map_location=device)
        for key, value in config.items():
            if state["config"][key] != value:
                raise ValueError(
                    f"checkpoint {checkpoint} was written with {key}={state['config'][key]!r}"
                    f" but this run asks for {key}={value!r}; a resumed run must use the "
                    "same settings. Delete the checkpoint to start over."
                )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        history = History.from_dict(state["history"])
        history.resumed_from = state["step"]
        history.device, history.amp, history.world_size = str(device), amp, world
        window = _Window(**state["window"])
        if state["step"] > steps:
            warnings.warn(f"checkpoint {checkpoint} is at step {state['step']}, past the "
                          f"requested {steps} steps; returning it as is.", stacklevel=2)
    start_step = history.steps_done
    monitor = Monitor(log_dir, enabled=rank == 0, start_step=start_step,
                      data_range=data_range)
    net = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    clock = {"t0": time.perf_counter(), "seconds": history.seconds, "data": history.data_seconds,
             "val": 0.0}

    def update_clock() -> None:
        history.seconds = clock["seconds"] + time.perf_counter() - clock["t0"] - clock["val"]
        history.data_seconds = clock["data"]
        history.images_per_second = history.steps_done * batch_size / max(history.seconds,
                                                                           1e-9)

    def snapshot() -> None:
        update_clock()
        if rank != 0 or checkpoint is None:
            return
        save_checkpoint(checkpoint, {
            "format": CHECKPOINT_FORMAT, "step": history.steps_done, "config": config,
            "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict(), "generator": gen.get_state(),
            "window": window.state(), "history": history.to_dict(),
        })

    def validate(step: int) -> None:
        if val_data is None or rank != 0:
            return
        tv = time.perf_counter()
        for k, v in _validate(model, loss_fn, val_data, device, amp, data_range).items():
            history.val.setdefault(k, []).append(v)
        history.val_step.append(step)
        monitor.log_validation(step, {k: v[-1] for k, v in history.val.items()}, model,
                               val_data, device)
        clock["val"] += time.perf_counter() - tv

    def reseed(step: int) -> None:
        s = _step_seed(seed, rank, step)
        gen.manual_seed(s)
        torch.default_generator.manual_seed(s)
        if device.type == "cuda":
            torch.cuda.default_generators[device.index or 0].manual_seed(s)

    # --- the loop ------------------------------------------------------------------------
    bar = None
    if progress and rank == 0 and start_step < steps:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, initial=start_step, desc="training", leave=False)
    last_logged: tuple[int, dict] = (start_step, {})
    forked = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=forked), _DeferInterrupt() as interrupt:
        net.train()
        try:
            for step in range(start_step + 1, steps + 1):
                reseed(step)
                if schedule is not None:
                    for group in opt.param_groups:
                        group["lr"] = group["initial_lr"] * schedule(step, steps)
                td = time.perf_counter()
                inputs, targets = data(local_batch, gen)
                inputs, targets = inputs.to(device), targets.to(device)
                clock["data"] += time.perf_counter() - td
                if step == start_step + 1:
                    check_batch(inputs, targets, data_range=data_range,
                                where=f"the batch of step {step}")
                with _autocast(device, amp):
                    pred = net(inputs)
                if step == start_step + 1:
                    _check_prediction(pred, targets)
                loss, parts = _split_loss(loss_fn(pred.float(), targets.float()))
                if not bool(torch.isfinite(loss)):
                    raise FloatingPointError(
                        f"the loss became {float(loss.detach())} at step {step} (components "
                        f"at that step: {parts}; last logged, at step {last_logged[0]}: "
                        f"{last_logged[1]}). Training stopped. Lower the learning rate, "
                        "pass grad_clip=1.0, or check the data and the loss for a division "
                        "by zero."
                    )
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if grad_clip is not None:
                    scaler.unscale_(opt)
                    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                scaler.step(opt)
                scaler.update()
                history.steps_done = step  # the model now holds this step's update

                window.add(float(loss.detach()), parts)
                if step % log_every == 0 or step == steps:
                    mean, mean_parts = window.flush()
                    history.step.append(step)
                    history.loss.append(mean)
                    for k, v in mean_parts.items():
                        history.components.setdefault(k, []).append(v)
                    last_logged = (step, mean_parts)
                    monitor.log_train(step, mean, mean_parts, opt)
                    if bar is not None:
                        bar.set_postfix(loss=f"{mean:.4g}")
                if step % val_every == 0 or step == steps:
                    validate(step)
                if step % checkpoint_every == 0 or step == steps:
                    snapshot()
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(step, model, history)
                if interrupt.requested:
                    raise KeyboardInterrupt
        except KeyboardInterrupt:
            snapshot()  # the last completed step; resuming continues from it exactly
            if rank == 0 and checkpoint is not None:
                print(f"Interrupted: saved step {history.steps_done} to {checkpoint}; call "
                      "fit again with the same arguments to resume.", file=sys.stderr)
            raise
        finally:
            if bar is not None:
                bar.close()
            monitor.close()
    update_clock()
    model.eval()
    return history
