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
import functools
import glob
import hashlib
import inspect
import io
import math
import numbers
import os
import pickle
import re
import signal
import socket
import sys
import threading
import time
import warnings
import zipfile
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
    "cpu_bf16_is_fast",
    "save_checkpoint",
    "load_checkpoint",
    "run_fingerprint",
    "check_fingerprint",
    "checkpoint_lock",
    "check_output_path",
    "clean_stale_temporaries",
    "CheckpointError",
    "CheckpointLockedError",
    "RunMismatchError",
    "check_batch",
]

Sampler = Callable[[int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]

CHECKPOINT_FORMAT = 2  # 2: payload bytes + SHA-256, run fingerprint

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
    GPUs, and off on the CPU, where bf16 pays only on some processors (see
    :func:`cpu_bf16_is_fast`). ``"bf16"`` also works on the CPU; ``"fp16"`` needs CUDA.
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


def cpu_bf16_is_fast() -> bool:
    """Whether this CPU runs bfloat16 convolutions and matrix products in hardware.

    True where PyTorch reports AMX tiles (Intel Xeon 4th generation, "Sapphire Rapids",
    and later) and oneDNN has not been capped below AMX with ``ONEDNN_MAX_CPU_ISA``.
    There, bf16 autocast made a ``denoise-losses`` DnCNN training step (7 x 32, 16
    patches of 40 x 40, two threads) about 2-3 times faster than float32
    (``benchmarks/bench_train.py``). With only AVX2, bf16 is emulated and far slower
    than float32 (measured with oneDNN capped at AVX2: ``benchmarks/README.md``); CPUs
    with AVX-512 BF16 but no AMX were not measured and count as not fast. Results change
    with the precision, so :func:`resolve_amp`'s ``"auto"`` keeps float32 on every CPU;
    an experiment that has measured bf16 on its own networks may opt in with
    ``amp="bf16" if cpu_bf16_is_fast() else "auto"``.
    """
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    if probe is None or not probe():
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    return cap in ("", "ALL", "DEFAULT") or "AMX" in cap


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


def split_loss(out: object) -> tuple[torch.Tensor, dict[str, float]]:
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
    target_range: str | tuple[float | None, float | None] | None = "data_range",
    where: str = "the first batch",
) -> None:
    """Refuse a batch that would train on garbage.

    Checks that ``inputs`` and ``targets`` are non-empty float tensors of shape
    ``(N, C, H, W)`` with the same ``N``, that every value is finite, and that the
    targets lie in ``target_range`` (with 1 % of ``data_range`` as slack). The default
    ``"data_range"`` means ``[0, data_range]``; in a pair ``(low, high)`` a ``None`` bound
    means "unbounded on that side", and ``target_range=None`` checks nothing but
    finiteness. Inputs may leave the targets' range (noise is not
    clipped) but not by more than ``data_range`` on either side of ``[0, data_range]``
    (only checked on the sides where the targets are bounded).

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
        if t.numel() == 0:
            raise ValueError(
                f"{where}: {name} is empty (shape {tuple(t.shape)}); the sampler must "
                "return at least one image with at least one pixel."
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
    lo_ok, hi_ok = _resolve_target_range(target_range, data_range)
    if lo_ok is None and hi_ok is None:
        return
    lo, hi = float(targets.min()), float(targets.max())
    slack = 0.01 * data_range
    if (lo_ok is not None and lo < lo_ok - slack) or (hi_ok is not None and hi > hi_ok + slack):
        hint = " (8-bit images? divide by 255)" if hi_ok is not None and hi > 2 * hi_ok else ""
        shown = f"[{'-inf' if lo_ok is None else lo_ok}, {'inf' if hi_ok is None else hi_ok}]"
        raise ValueError(
            f"{where}: targets span [{lo:.4g}, {hi:.4g}] but data_range is {data_range}; "
            f"expected values in {shown}{hint}. Rescale the images or pass "
            "the matching data_range (or target_range=(0, None) for data without an upper "
            "bound, such as speckled intensities)."
        )
    ilo, ihi = float(inputs.min()), float(inputs.max())
    if (lo_ok is not None and ilo < -data_range) or (hi_ok is not None
                                                      and ihi > 2 * data_range):
        raise ValueError(
            f"{where}: inputs span [{ilo:.4g}, {ihi:.4g}], far outside [0, {data_range}]; "
            "are they on another scale than the targets (e.g. 0-255 vs 0-1)?"
        )


def check_prediction(pred: torch.Tensor, targets: torch.Tensor) -> None:
    """Refuse a model output whose shape differs from the targets', saying what to check."""
    if pred.shape != targets.shape:
        raise ValueError(
            f"the model's output has shape {tuple(pred.shape)} but the targets have "
            f"{tuple(targets.shape)}; the loss compares them pixel by pixel, so they must "
            "match (check the model's padding, scale factor or channels)."
        )


def warn_if_gpu_forgotten(device: torch.device) -> None:
    """Warn when training on the CPU although the budget is ``gpu`` or this is Colab
    (a runtime without a GPU selected)."""
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


def autocast_for(device: torch.device, amp: str):
    """The autocast context of ``amp`` (``"off"``, ``"bf16"`` or ``"fp16"``) on ``device``:
    a null context for ``"off"``, else :func:`torch.autocast` with that dtype."""
    if amp == "off":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


# --------------------------------------------------------------------------- checkpoints
#
# The guarantees, as small public helpers (``fit`` and the adversarial trainer use them):
#
# * save_checkpoint / load_checkpoint: atomic write; a SHA-256 of the payload verified on
#   every load; ``weights_only`` unpickling; one CheckpointError naming the file for any
#   corrupt, truncated, foreign or tampered file (the file is never overwritten for it).
# * run_fingerprint / check_fingerprint: what defines a run, compared setting by setting.
# * checkpoint_lock: one writer per checkpoint path (an OS lock, released by a kill).
# * check_output_path / clean_stale_temporaries: fail before training, not after it.


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, not lossbook's, or tampered.

    The message names the file, says what is wrong and how to proceed. Subclasses
    ``ValueError``, so code that catches bad input in general catches it too.
    """


class RunMismatchError(ValueError):
    """A checkpoint written by a different run (another model, loss, optimiser, data ...).

    ``differences`` maps each setting that differs to ``(in the checkpoint, in this run)``.
    """

    def __init__(self, message: str, differences: dict[str, tuple[str, str]] | None = None):
        super().__init__(message)
        self.differences = dict(differences or {})


class CheckpointLockedError(RuntimeError):
    """Another live process is writing to the same checkpoint path."""


_HOW_TO_PROCEED = (
    "Delete it (or move it aside) to start this run over; with `python -m lossbook run` "
    "pass --restart."
)


def _tmp_name(path: Path, pid: int | None = None) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid() if pid is None else pid}")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    """Write ``state`` to ``path`` atomically, with a checksum of its contents.

    The file is a ``torch.save`` of ``{"format", "step", "sha256", "payload"}``, where
    ``payload`` is the ``torch.save`` bytes of ``state`` and ``sha256`` their SHA-256;
    :func:`load_checkpoint` verifies it. The write goes to a temporary file
    ``.NAME.tmp-PID`` in the same directory, is flushed to disk, then renamed over
    ``path`` (atomic on POSIX and Windows): a crash or kill while writing leaves the
    previous checkpoint intact, and a temporary file that a kill left behind is removed
    by :func:`clean_stale_temporaries` (which :func:`fit` calls).

    Parameters
    ----------
    path : path
        Destination (its directory is created).
    state : dict
        Tensors, numbers, strings, ``None`` and containers of them (what
        ``torch.load(weights_only=True)`` can rebuild); ``state["step"]``, if present,
        is copied into the header so that tools can read it without the payload.

    Returns
    -------
    Path
    """
    if not isinstance(state, dict):
        raise TypeError(f"state must be a dict; got {type(state).__name__}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _plain(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    envelope = {"format": CHECKPOINT_FORMAT, "step": state.get("step"),
                "sha256": hashlib.sha256(payload).hexdigest(), "payload": payload}
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(envelope, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _plain(obj: object) -> object:
    """Numpy scalars (an optimiser's ``lr`` may be one) as Python numbers, so that the
    file loads with ``weights_only=True``; containers are copied, tensors kept."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_plain(v) for v in obj)
    np = sys.modules.get("numpy")  # no numpy loaded: no numpy scalars to convert
    if np is not None and isinstance(obj, np.generic):
        return obj.item()
    return obj


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    fingerprint: dict[str, str] | None = None,
) -> dict:
    """Read and verify a checkpoint written by :func:`save_checkpoint` (or :func:`fit`).

    The file is read with ``torch.load(..., weights_only=True)``: only tensors, numbers,
    strings and containers of them are rebuilt, so a crafted file cannot run code (a full
    unpickle would execute whatever the file asks for). The payload's SHA-256 must match
    the one stored with it, so a file with flipped or missing bytes is refused instead of
    resuming from garbage.

    Parameters
    ----------
    path : path
        The checkpoint.
    map_location : str or torch.device
        Where to put the tensors (default ``"cpu"``).
    fingerprint : dict, optional
        This run's :func:`run_fingerprint`; if given, it is compared with the one stored
        in the checkpoint (``state["fingerprint"]``) by :func:`check_fingerprint`.

    Returns
    -------
    dict
        The ``state`` that was saved.

    Raises
    ------
    FileNotFoundError
        If there is no file at ``path``.
    CheckpointError
        (a ``ValueError``) if the file is unreadable, truncated, corrupt, fails its
        checksum, or is not a lossbook checkpoint; the message names the file.
    RunMismatchError
        (a ``ValueError``) if ``fingerprint`` differs from the stored one.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}.")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path {path} is not a file (a directory?). "
                              "Pass the path of a .pt file.")

    def bad(what: str, err: BaseException | None = None) -> CheckpointError:
        cause = f" ({type(err).__name__}: {err})" if err is not None else ""
        return CheckpointError(f"cannot resume from checkpoint {path}: {what}{cause}. "
                               f"{_HOW_TO_PROCEED}")

    try:
        envelope = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise bad("it holds objects other than tensors and numbers, so it was not written "
                  "by lossbook (it was not unpickled: loading it could run code)", err) from err
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError, TypeError,
            AttributeError, UnicodeDecodeError, zipfile.BadZipFile) as err:
        raise bad("the file is truncated or corrupt (an interrupted copy or a full disk?)",
                  err) from err
    if not isinstance(envelope, dict) or "sha256" not in envelope:
        raise bad(f"it is not a lossbook training checkpoint (format {CHECKPOINT_FORMAT}, "
                  "with a checksum); it may come from another program or an older lossbook")
    if envelope.get("format") != CHECKPOINT_FORMAT:
        raise bad(f"it is not a lossbook training checkpoint of format {CHECKPOINT_FORMAT} "
                  f"(format {envelope.get('format')!r})")
    payload = envelope.get("payload")
    if not isinstance(payload, bytes) or hashlib.sha256(payload).hexdigest() != envelope["sha256"]:
        raise bad("its checksum does not match its contents (the file was damaged or "
                  "edited after it was written)")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as err:  # the checksum matched, so this is not damage: say what it was
        raise bad("its contents cannot be read back", err) from err
    if not isinstance(state, dict):
        raise bad("its contents are not a dict of training state")
    if fingerprint is not None:
        check_fingerprint(state.get("fingerprint"), fingerprint, path=path)
    return state


# ----------------------------------------------------------------- run fingerprints

_FP_DEPTH = 6
_FP_MAX_ITEMS = 64


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _describe_tensor(t: torch.Tensor) -> str:
    t = t.detach()
    head = f"tensor{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"
    if t.is_floating_point() or t.is_complex() or t.dtype in (torch.bool, torch.uint8,
                                                             torch.int8, torch.int16,
                                                             torch.int32, torch.int64):
        flat = t.reshape(-1)
        if flat.numel() > 2**24:  # huge: a strided sample of 2**20 values stands for it
            flat = flat[:: flat.numel() // 2**20 + 1]
        try:
            return f"{head} #{_digest(flat.cpu().contiguous().numpy().tobytes())}"
        except (TypeError, RuntimeError):  # bfloat16 and friends have no numpy dtype
            return f"{head} #{_digest(flat.float().cpu().numpy().tobytes())}"
    return head


def _describe_module(m: nn.Module, depth: int) -> str:
    shapes = ", ".join(f"{k}:{tuple(v.shape)}" for k, v in m.state_dict().items())
    public = {k: v for k, v in vars(m).items() if not k.startswith("_") and k != "training"
              and not isinstance(v, (nn.Module, torch.Tensor))}
    extra = _describe(public, depth + 1) if public else ""
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", " ".join(repr(m).split()))  # no addresses
    return f"{text} [{shapes}] {extra}".strip()


def _describe(obj: object, depth: int = 0) -> str:
    """A stable text that changes when anything that defines ``obj``'s behaviour changes.

    Device placement and memory addresses are left out (resuming on another device is
    the same run); parameter *values* of modules are left out (they are what training
    changes); tensors held by data or losses are summarised by a hash of their values.
    """
    if depth > _FP_DEPTH:
        return "..."
    if obj is None or isinstance(obj, (bool, str)):
        return repr(obj)
    if isinstance(obj, numbers.Integral):  # numpy integers too: the value, not the type
        return repr(int(obj))
    if isinstance(obj, numbers.Real):
        return repr(float(obj))
    if isinstance(obj, torch.device):
        return "device"
    if isinstance(obj, torch.dtype):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return _describe_tensor(obj)
    if isinstance(obj, nn.Module):
        return _describe_module(obj, depth)
    if isinstance(obj, (list, tuple)):
        items = [_describe(v, depth + 1) for v in list(obj)[:_FP_MAX_ITEMS]]
        more = f", +{len(obj) - _FP_MAX_ITEMS}" if len(obj) > _FP_MAX_ITEMS else ""
        return f"{type(obj).__name__}[{', '.join(items)}{more}]"
    if isinstance(obj, dict):
        keys = sorted(obj, key=str)[:_FP_MAX_ITEMS]
        return "{" + ", ".join(f"{k}: {_describe(obj[k], depth + 1)}" for k in keys) + "}"
    if isinstance(obj, functools.partial):
        return (f"partial({_describe(obj.func, depth + 1)}, {_describe(obj.args, depth + 1)}, "
                f"{_describe(obj.keywords, depth + 1)})")
    if inspect.ismethod(obj):
        return f"{_describe(obj.__self__, depth + 1)}.{obj.__func__.__name__}"
    if inspect.isfunction(obj):
        return _describe_function(obj, depth)
    if inspect.isclass(obj) or inspect.isbuiltin(obj) or inspect.ismodule(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', obj)}"
    if hasattr(obj, "__array__") and hasattr(obj, "shape"):
        with contextlib.suppress(Exception):
            return _describe_tensor(torch.as_tensor(obj))
    name = f"{type(obj).__module__}.{type(obj).__qualname__}"
    state = getattr(obj, "__dict__", None)
    if state is None and hasattr(type(obj), "__slots__"):
        state = {k: getattr(obj, k) for k in type(obj).__slots__ if hasattr(obj, k)}
    if state is None:
        return name
    return f"{name}{_describe(dict(state), depth + 1)}"


def _describe_function(fn, depth: int) -> str:
    code = fn.__code__
    parts = [f"{fn.__module__}.{fn.__qualname__}"]
    if fn.__defaults__:
        parts.append(f"defaults={_describe(fn.__defaults__, depth + 1)}")
    if fn.__kwdefaults__:
        parts.append(f"kwdefaults={_describe(fn.__kwdefaults__, depth + 1)}")
    if fn.__closure__:
        cells = []
        for name, cell in zip(code.co_freevars, fn.__closure__, strict=False):
            try:
                cells.append(f"{name}={_describe(cell.cell_contents, depth + 1)}")
            except ValueError:  # an empty cell
                cells.append(f"{name}=<empty>")
        parts.append(f"closure({', '.join(cells)})")
    consts = [c for c in code.co_consts if isinstance(c, (int, float, str, bool))
              and c != fn.__doc__]
    if consts:
        parts.append(f"consts={consts!r}")
    numbers = {n: fn.__globals__[n] for n in code.co_names
               if isinstance(fn.__globals__.get(n), (int, float))}
    if numbers:
        parts.append(f"globals={_describe(numbers, depth + 1)}")
    return " ".join(parts)


def run_fingerprint(**settings: object) -> dict[str, str]:
    """Describe what defines a run, one entry per setting, to store with its checkpoints.

    Each keyword becomes one entry: a stable text for numbers and strings; for a module,
    its ``repr``, the names and shapes of its parameters and buffers (not their values:
    a resumed run restores them), and its public attributes; for a function, its name,
    defaults, closure values, constants and the numeric globals it reads; for any other
    object (a sampler, say), its class and attributes; tensors are summarised by shape,
    dtype and a hash of their values. Devices are left out, so a run may resume on
    another device. Compare two fingerprints with :func:`check_fingerprint`.

    Parameters
    ----------
    **settings
        E.g. ``model=model, loss=loss_fn, optimizer=opt, data=sampler, seed=0``.

    Returns
    -------
    dict of str to str

    Examples
    --------
    >>> a = run_fingerprint(lr=1e-3, loss=torch.nn.L1Loss())
    >>> b = run_fingerprint(lr=1e-3, loss=torch.nn.MSELoss())
    >>> a["lr"] == b["lr"], a["loss"] == b["loss"]
    (True, False)
    """
    return {key: _describe(value) for key, value in settings.items()}


def optimizer_settings(opt: torch.optim.Optimizer) -> dict:
    """The optimiser's class and per-group hyper-parameters (initial learning rate, not
    the scheduled one), as stored in a checkpoint's run fingerprint."""
    groups = []
    for g in opt.param_groups:
        hyper = {k: v for k, v in g.items() if k not in ("params", "lr", "initial_lr")}
        hyper["lr"] = g.get("initial_lr", g["lr"])
        groups.append(hyper)
    return {"class": type(opt).__qualname__, "groups": groups}


def _clip(text: str, at: int, width: int = 160) -> str:
    lo = max(0, at - width // 2)
    return ("..." if lo else "") + text[lo:lo + width] + ("..." if lo + width < len(text) else "")


def check_fingerprint(saved: dict | None, current: dict[str, str], *,
                      path: str | os.PathLike | None = None) -> None:
    """Refuse to resume a different run: compare two :func:`run_fingerprint` results.

    Raises
    ------
    RunMismatchError
        (a ``ValueError``) naming every setting that differs, with the checkpoint's and
        this run's value around the first difference, and how to proceed.
    CheckpointError
        If ``saved`` is missing (a checkpoint written without a fingerprint).
    """
    where = f"checkpoint {path}" if path is not None else "the checkpoint"
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where} holds no run fingerprint, so it cannot be checked "
                              f"to belong to this run. {_HOW_TO_PROCEED}")
    diffs = {}
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<not set>"), current.get(key, "<not set>")
        if a != b:
            diffs[key] = (a, b)
    if not diffs:
        return
    lines = []
    for key, (a, b) in diffs.items():
        at = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                  min(len(a), len(b)))
        lines.append(f"  {key}: checkpoint has {_clip(a, at)}\n"
                     f"  {' ' * len(key)}  this run has {_clip(b, at)}")
    raise RunMismatchError(
        f"{where} was written by a different run: {', '.join(diffs)} "
        f"{'differs' if len(diffs) == 1 else 'differ'}.\n" + "\n".join(lines) + "\n"
        "A resumed run must use the same settings. Change them back to continue it, or "
        f"use another checkpoint path for the new run. {_HOW_TO_PROCEED}",
        diffs,
    )


# ----------------------------------------------------------------- locks and paths


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else
    return True


def clean_stale_temporaries(path: str | os.PathLike, *, all_pids: bool = False) -> list[Path]:
    """Remove ``.NAME.tmp-PID`` files that an interrupted write of ``path`` left behind.

    Only files of processes that no longer run on this machine are removed (or every
    one but this process's with ``all_pids=True``, which :func:`fit` uses while it holds
    :func:`checkpoint_lock`). Returns the removed paths.
    """
    path = Path(path)
    removed = []
    if not path.parent.is_dir():
        return removed
    prefix = f".{path.name}.tmp-"
    for p in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid_text = p.name[len(prefix):]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if all_pids or not _pid_alive(int(pid_text)):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


def check_output_path(path: str | os.PathLike, *, kind: str = "file") -> Path:
    """Check, before any work, that ``path`` can be written; create its directory.

    ``kind="file"``: ``path`` must not be a directory and its parent must be (or become)
    a writable directory. ``kind="dir"``: ``path`` must be (or become) a writable
    directory. Writability is tested by creating and removing a small file, so read-only
    mounts and permission problems show up now rather than after minutes of training.

    Raises
    ------
    ValueError
        If a file stands where a directory is needed or a directory where a file is.
    PermissionError
        If the directory cannot be written; the message names it.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir'; got {kind!r}.")
    path = Path(path)
    directory = path if kind == "dir" else path.parent
    if kind == "file" and path.is_dir():
        raise ValueError(f"{path} is a directory, but a file is to be written there; "
                         "remove the directory or choose another path.")
    for parent in [directory, *directory.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{parent} is a file, but it must be a directory to hold "
                                 f"{path}; remove it or choose another path.")
            break
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".lossbook-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise PermissionError(
            f"cannot write to {directory} ({err.strerror or err}); choose a writable "
            "directory (e.g. --out under your home) or fix its permissions."
        ) from err
    return path


@contextlib.contextmanager
def checkpoint_lock(path: str | os.PathLike):
    """Hold ``PATH.lock`` while a run writes the checkpoint ``path``: one run per path.

    The lock is an operating-system lock (``fcntl.flock``; ``msvcrt`` on Windows) on the
    file ``PATH.lock``, which also records the holder's host, pid and start time. The
    system releases it when the holder exits or is killed, so a lock file left behind by
    a killed run is stale and is simply taken over. While held, temporary files of
    interrupted writes of ``path`` are removed (:func:`clean_stale_temporaries`).

    Raises
    ------
    CheckpointLockedError
        If another live process holds the lock; the message names it and the file.
    """
    path = Path(path)
    check_output_path(path)
    lock_path = path.with_name(path.name + ".lock")
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _os_lock(fd)
        except OSError:
            try:
                holder = os.read(fd, 512).decode(errors="replace").strip() or "unknown"
            finally:
                os.close(fd)
            raise CheckpointLockedError(
                f"checkpoint {path} is in use by another run ({holder}; lock file "
                f"{lock_path}). Two runs writing one checkpoint would mix their weights: "
                "wait for the other run to finish, stop it, or use another checkpoint "
                "path (e.g. another --out)."
            ) from None
        try:  # the holder may have removed the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}").encode())
        clean_stale_temporaries(path, all_pids=True)
        yield lock_path
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)  # closing releases the lock


def _os_lock(fd: int) -> None:
    """Take an exclusive, non-blocking lock on ``fd`` (raise ``OSError`` if held)."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def step_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the batch (and of dropout) at ``step`` on ``rank``.

    Reseeding every step makes each batch a pure function of ``(seed, rank, step)``: a
    resumed run draws exactly the batches the uninterrupted one would have drawn,
    without any process having to gather the others' generator states.
    """
    return ((seed * 1_000_003 + rank) * 1_000_033 + step) % (2**63 - 1)


class DeferInterrupt:
    """Hold a Ctrl-C (SIGINT) until the current training step has finished.

    The first Ctrl-C sets a flag that the loop checks between steps, so a checkpoint is
    never written from a half-updated model; a second Ctrl-C interrupts at once. Only
    active in the main thread (signal handlers cannot be installed elsewhere).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous = None

    def __enter__(self) -> DeferInterrupt:
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
def validate_model(model, loss_fn, val_data, device, amp, data_range, chunk=8) -> dict[str, float]:
    """Loss and PSNR of ``model`` on ``val_data`` (a pair, or a callable returning one),
    ``chunk`` images at a time in eval mode, the training mode restored after."""
    inputs, targets = val_data() if callable(val_data) else val_data
    losses, psnrs = [], []
    was_training = model.training
    model.eval()
    for i in range(0, inputs.shape[0], chunk):
        x = inputs[i:i + chunk].to(device)
        y = targets[i:i + chunk].to(device)
        with autocast_for(device, amp):
            pred = model(x)
        pred = pred.float()
        total, _ = split_loss(loss_fn(pred, y.float()))
        losses.append(float(total) * x.shape[0])
        psnrs.append(psnr(pred.clamp(0, data_range), y.float(), data_range=data_range,
                          reduction="none").cpu())
    model.train(was_training)
    n = inputs.shape[0]
    return {"loss": sum(losses) / n, "psnr": float(torch.cat(psnrs).mean())}


# --------------------------------------------------------------------------- the loop


class LossWindow:
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
    restart: bool = False,
    target_range: str | tuple[float | None, float | None] | None = "data_range",
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
        ``KeyboardInterrupt``; if the file exists, **resume** from it. The file is
        verified (checksum, run fingerprint) and locked for the run's duration; see
        "Checkpoints" below.
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
        Clip the gradients' global norm to this value (positive and finite).
    callback : callable, optional
        ``callback(step, model, history)`` after every step (e.g. to plot live).
    progress : bool
        Show a progress bar (``tqdm.auto``) with the running loss.
    log_dir : path, optional
        Write TensorBoard events here (every loss term, the learning rate, the
        validation metrics and an image grid of the validation batch); see
        :mod:`lossbook.monitor`. Needs the ``tensorboard`` package.
    restart : bool
        Ignore an existing ``checkpoint`` and train from scratch, replacing it at the
        first save. Default ``False``: resume from it (after checking it).
    target_range : "data_range", (low, high) or None
        The range the first batch's targets must lie in (1 % slack): the default
        ``"data_range"`` is ``[0, data_range]``; either bound may be ``None`` for data
        that is legitimately unbounded on that side (speckled SAR intensities:
        ``(0, None)``); ``None`` checks only that values are finite.

    Returns
    -------
    History

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN or infinite; the message gives the step and the loss
        components of that step and of the last logged step.
    ValueError, TypeError
        For invalid arguments (each named), a sampler that does not return a pair of
        tensors, a first batch that fails :func:`check_batch`, or a model output whose
        shape differs from the targets'.
    CheckpointError
        (a ``ValueError``) for a checkpoint that is corrupt, truncated, tampered with or
        not lossbook's; it is left untouched.
    RunMismatchError
        (a ``ValueError``) for a checkpoint written by a different run: another model,
        loss, optimiser or its hyper-parameters, data, batch size, seed, schedule,
        ``grad_clip`` or ``data_range`` (see :func:`run_fingerprint`); the message says
        which setting differs.
    CheckpointLockedError
        If another live process is training on the same checkpoint path.

    Notes
    -----
    Checkpoints: written atomically by :func:`save_checkpoint` with a SHA-256 of their
    contents and the run's :func:`run_fingerprint`; read by :func:`load_checkpoint`
    (``weights_only``: a crafted file cannot run code), which refuses damaged files and
    names them; while training, :func:`checkpoint_lock` keeps a second run off the same
    path, and temporary files of interrupted writes are removed. The directory is checked
    to be writable before training starts.

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
    _check_fit_arguments(model, loss_fn, data, steps=steps, batch_size=batch_size, lr=lr,
                         optimizer=optimizer, val_every=val_every, log_every=log_every,
                         checkpoint_every=checkpoint_every, seed=seed, data_range=data_range,
                         grad_clip=grad_clip, callback=callback, restart=restart,
                         val_data=val_data)
    _resolve_target_range(target_range, data_range)  # fail now, not at the first batch
    # numpy integers are accepted above; Python ints keep the seed arithmetic exact
    steps, batch_size, log_every, seed = int(steps), int(batch_size), int(log_every), int(seed)
    val_every = None if val_every is None else int(val_every)
    checkpoint_every = None if checkpoint_every is None else int(checkpoint_every)

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
    if checkpoint is not None:
        check_output_path(checkpoint)  # before any work: a read-only directory fails now
    if rank == 0:
        warn_if_gpu_forgotten(device)
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
    fingerprint = run_fingerprint(
        model=model, loss=loss_fn, optimizer=optimizer_settings(opt), data=data,
        lr_schedule=lr_schedule,
        # a schedule is a function of (step, steps): with one, more steps is another run
        schedule_steps=steps if lr_schedule is not None else None,
        batch_size=batch_size, seed=seed, world_size=world, grad_clip=grad_clip,
        data_range=data_range,
    )

    with contextlib.ExitStack() as held:
        if checkpoint is not None and rank == 0:
            held.enter_context(checkpoint_lock(checkpoint))  # one run per checkpoint
        history = History(device=str(device), amp=amp, world_size=world)
        window = LossWindow()
        if checkpoint is not None and Path(checkpoint).exists() and not restart:
            state = load_checkpoint(checkpoint, map_location=device)
            for key, value in config.items():  # the clearest message for the usual ones
                if state.get("config", {}).get(key) != value:
                    raise RunMismatchError(
                        f"checkpoint {checkpoint} was written with {key}="
                        f"{state.get('config', {}).get(key)!r} but this run asks for "
                        f"{key}={value!r}; a resumed run must use the same settings. "
                        f"{_HOW_TO_PROCEED}",
                        {key: (repr(state.get("config", {}).get(key)), repr(value))},
                    )
            check_fingerprint(state.get("fingerprint"), fingerprint, path=checkpoint)
            try:
                model.load_state_dict(state["model"])
                opt.load_state_dict(state["optimizer"])
                scaler.load_state_dict(state["scaler"])
                history = History.from_dict(state["history"])
                step_saved = int(state["step"])
                window = LossWindow(**state["window"])
            except (KeyError, TypeError, ValueError, RuntimeError) as err:
                raise CheckpointError(
                    f"cannot resume from checkpoint {checkpoint}: its training state is "
                    f"incomplete ({type(err).__name__}: {err}). {_HOW_TO_PROCEED}"
                ) from err
            history.resumed_from = step_saved
            history.device, history.amp, history.world_size = str(device), amp, world
            if step_saved > steps:
                warnings.warn(f"checkpoint {checkpoint} is at step {step_saved}, past the "
                              f"requested {steps} steps; returning it as is.", stacklevel=2)
        start_step = history.steps_done
        monitor = Monitor(log_dir, enabled=rank == 0, start_step=start_step,
                          data_range=data_range)
        net = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)

        clock = {"t0": time.perf_counter(), "seconds": history.seconds,
                 "data": history.data_seconds, "val": 0.0}

        def update_clock() -> None:
            history.seconds = (clock["seconds"] + time.perf_counter() - clock["t0"]
                               - clock["val"])
            history.data_seconds = clock["data"]
            history.images_per_second = (history.steps_done * batch_size
                                         / max(history.seconds, 1e-9))

        def snapshot() -> None:
            update_clock()
            if rank != 0 or checkpoint is None:
                return
            save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "step": history.steps_done, "config": config,
                "fingerprint": fingerprint,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(), "generator": gen.get_state(),
                "window": window.state(), "history": history.to_dict(),
            })

        def validate(step: int) -> None:
            if val_data is None or rank != 0:
                return
            tv = time.perf_counter()
            for k, v in validate_model(model, loss_fn, val_data, device, amp, data_range).items():
                history.val.setdefault(k, []).append(v)
            history.val_step.append(step)
            monitor.log_validation(step, {k: v[-1] for k, v in history.val.items()}, model,
                                   val_data, device)
            clock["val"] += time.perf_counter() - tv

        def reseed(step: int) -> None:
            s = step_seed(seed, rank, step)
            gen.manual_seed(s)
            torch.default_generator.manual_seed(s)
            if device.type == "cuda":
                torch.cuda.default_generators[device.index or 0].manual_seed(s)

        # --- the loop --------------------------------------------------------------------
        bar = None
        if progress and rank == 0 and start_step < steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, initial=start_step, desc="training", leave=False)
        last_logged: tuple[int, dict] = (start_step, {})
        forked = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=forked), DeferInterrupt() as interrupt:
            net.train()
            try:
                for step in range(start_step + 1, steps + 1):
                    reseed(step)
                    if schedule is not None:
                        for group in opt.param_groups:
                            group["lr"] = group["initial_lr"] * schedule(step, steps)
                    td = time.perf_counter()
                    inputs, targets = _draw(data, local_batch, gen, step)
                    inputs, targets = inputs.to(device), targets.to(device)
                    clock["data"] += time.perf_counter() - td
                    if step == start_step + 1:
                        check_batch(inputs, targets, data_range=data_range,
                                    target_range=target_range,
                                    where=f"the batch of step {step}")
                    with autocast_for(device, amp):
                        pred = net(inputs)
                    if step == start_step + 1:
                        check_prediction(pred, targets)
                    loss, parts = split_loss(loss_fn(pred.float(), targets.float()))
                    if not bool(torch.isfinite(loss)):
                        raise FloatingPointError(
                            f"the loss became {float(loss.detach())} at step {step} "
                            f"(components at that step: {parts}; last logged, at step "
                            f"{last_logged[0]}: {last_logged[1]}). Training stopped. Lower "
                            "the learning rate, pass grad_clip=1.0, or check the data and "
                            "the loss for a division by zero."
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
                    print(f"Interrupted: saved step {history.steps_done} to {checkpoint}; "
                          "call fit again with the same arguments to resume.",
                          file=sys.stderr)
                raise
            finally:
                if bar is not None:
                    bar.close()
                monitor.close()
        update_clock()
    model.eval()
    return history


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_fit_arguments(model, loss_fn, data, **kw) -> None:
    """Each of :func:`fit`'s arguments, checked before any work, naming the argument."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}. Wrap "
                        "a function in a Module, or pass the network itself.")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable loss_fn(prediction, target); got "
                        f"{type(loss_fn).__name__}.")
    if not callable(data):
        raise TypeError(
            f"data must be a callable data(batch_size, generator) -> (inputs, targets); got "
            f"{type(data).__name__}. Wrap tensors in a function or use a PatchSampler."
        )
    for name in ("steps", "batch_size", "log_every"):
        v = kw[name]
        if not _is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}.")
    for name in ("val_every", "checkpoint_every"):
        v = kw[name]
        if v is not None and (not _is_int(v) or v < 1):
            raise ValueError(f"{name} must be a positive int or None (the default); got "
                             f"{v!r}.")
    if not _is_int(kw["seed"]):
        raise TypeError(f"seed must be an int; got {type(kw['seed']).__name__} "
                        f"{kw['seed']!r}.")
    if kw["optimizer"] is None:
        _positive_finite("lr", kw["lr"])
    elif not isinstance(kw["optimizer"], torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer or None; got "
                        f"{type(kw['optimizer']).__name__}.")
    _positive_finite("data_range", kw["data_range"])
    if kw["grad_clip"] is not None:
        _positive_finite("grad_clip", kw["grad_clip"],
                         hint=" It is the largest allowed global gradient norm (e.g. 1.0); "
                              "pass None for no clipping.")
    if kw["callback"] is not None and not callable(kw["callback"]):
        raise TypeError(f"callback must be callable callback(step, model, history) or "
                        f"None; got {type(kw['callback']).__name__}.")
    if not isinstance(kw["restart"], bool):
        raise TypeError(f"restart must be True or False; got {kw['restart']!r}.")
    val = kw["val_data"]
    if val is not None and not callable(val):
        ok = (isinstance(val, (tuple, list)) and len(val) == 2
              and all(isinstance(t, torch.Tensor) and t.ndim == 4 for t in val)
              and val[0].shape[0] == val[1].shape[0] and val[0].shape[0] > 0)
        if not ok:
            raise TypeError(
                "val_data must be a pair (inputs, targets) of (N, C, H, W) tensors with the "
                "same N >= 1, or a callable returning one; got "
                + (f"a {type(val).__name__} of {len(val)}" if isinstance(val, (tuple, list))
                   else f"a {type(val).__name__}") + "."
            )


def _positive_finite(name: str, v: object, hint: str = "") -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a number; got {type(v).__name__} {v!r}.{hint}")
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be positive and finite; got {v!r}.{hint}")
    return float(v)


def _resolve_target_range(target_range, data_range) -> tuple[float | None, float | None]:
    if isinstance(target_range, str) and target_range == "data_range":
        return 0.0, float(data_range)
    if target_range is None:
        return None, None
    if (isinstance(target_range, (tuple, list)) and len(target_range) == 2
            and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)
                                  and math.isfinite(v)) for v in target_range)):
        lo, hi = target_range
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"target_range must be (low, high) with low < high; got "
                             f"{target_range!r}.")
        return (None if lo is None else float(lo)), (None if hi is None else float(hi))
    raise ValueError(
        f"target_range must be 'data_range' (the default: [0, data_range]), a pair "
        f"(low, high) of finite numbers where either may be None (unbounded), or None (no "
        f"range check); got {target_range!r}."
    )


def _draw(data, n: int, gen: torch.Generator, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Call the sampler and check that it returned a pair of tensors."""
    out = data(n, gen)
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        what = (f"{len(out)} values" if isinstance(out, (tuple, list))
                else f"a {type(out).__name__}")
        raise TypeError(
            f"the sampler (data) must return a pair (inputs, targets); at step {step} it "
            f"returned {what}. For an autoencoder return (x, x)."
        )
    for name, t in zip(("inputs", "targets"), out, strict=True):
        if not isinstance(t, torch.Tensor):
            hint = (" Convert with torch.from_numpy(...).float()."
                    if hasattr(t, "__array__") else "")
            raise TypeError(f"the sampler (data) must return tensors; at step {step} its "
                            f"{name} is a {type(t).__name__}.{hint}")
    return out[0], out[1]
