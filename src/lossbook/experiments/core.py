"""Shared machinery of the named experiments: the registry, running, evaluating, JSON.

An experiment has a name, a table of sizes per compute budget (``smoke``, ``cpu``,
``gpu``; see :mod:`lossbook.budget`) and a function that trains and evaluates. Running
it writes ``OUT/<name>.json`` with the experiment, the budget, the device, the
wall-clock seconds, the package version and ``results``: one row per method with its
metrics (``psnr``, ``ssim``, ``ms_ssim``, ``mae`` by default; an experiment with other
metrics lists them under ``metrics``). Training checkpoints go under
``OUT/<name>/<budget>-<hash of the sizes>/``, so running the same command again after a
kill (or a Colab disconnect) resumes where it stopped and produces the same numbers.

Each experiment lives in its own module of :mod:`lossbook.experiments` and registers
itself with :func:`register`; experiment modules import this module, never each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from .. import losses as L
from ..budget import get_budget
from ..metrics import mae as _mae
from ..metrics import ms_ssim as _ms_ssim
from ..metrics import psnr as _psnr
from ..metrics import ssim as _ssim
from ..train import History, resolve_device

__all__ = [
    "Experiment",
    "RunResult",
    "EXPERIMENTS",
    "METRICS",
    "register",
    "list_experiments",
    "get_experiment",
    "run_experiment",
    "load_results",
    "evaluate",
    "format_table",
    "slug",
    "ms_ssim_train_kwargs",
    "mix_l1_sigma",
    "score_pairs",
]

METRICS = ("psnr", "ssim", "ms_ssim", "mae")


# ------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(
    model_or_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    pairs: tuple[torch.Tensor, torch.Tensor],
    *,
    data_range: float = 1.0,
    clip: bool = True,
    device: str | torch.device | None = None,
    ms_ssim_kwargs: dict | None = None,
    return_outputs: bool = False,
) -> dict:
    r"""Score a model (or any image-to-image function) on full test images, one by one.

    For every pair ``(degraded_i, clean_i)`` the output :math:`x_i` is computed on the
    whole image (not on patches), clipped to ``[0, data_range]`` when ``clip``, and scored
    with PSNR, SSIM (Wang et al.'s 11x11 Gaussian window), MS-SSIM (five scales by
    default: sides must exceed 160 px) and MAE. The table values are the **means of the
    per-image values**; for PSNR that is :math:`\frac1N\sum_i 10\log_{10}(R^2/\mathrm{MSE}_i)`,
    not the PSNR of the pooled MSE.

    Parameters
    ----------
    model_or_fn : nn.Module or callable
        ``f(degraded) -> estimate`` on ``(1, C, H, W)`` tensors. A module is put in
        ``eval()`` mode and run on ``device`` (default: where its parameters are).
    pairs : (tensor, tensor)
        ``(degraded, clean)``, both ``(N, C, H, W)``.
    data_range : float
        Value range of the clean images. Default 1.0.
    clip : bool
        Clip outputs to ``[0, data_range]`` before scoring (default True, as images are
        stored that way).
    device : str or torch.device, optional
        Where to run a module.
    ms_ssim_kwargs : dict, optional
        Keywords for :func:`lossbook.metrics.ms_ssim` (e.g. ``weights=MS_SSIM_WEIGHTS[:3]``
        for small images).
    return_outputs : bool
        Also return the outputs, ``(N, C, H, W)`` on the CPU, under ``"outputs"``.

    Returns
    -------
    dict
        ``{"psnr": mean, "ssim": mean, "ms_ssim": mean, "mae": mean, "per_image":
        {metric: [values]}}`` (plus ``"outputs"``).
    """
    scorers = {
        "psnr": lambda x, y: _psnr(x, y, data_range=data_range),
        "ssim": lambda x, y: _ssim(x, y, data_range=data_range),
        "ms_ssim": lambda x, y: _ms_ssim(x, y, data_range=data_range, **(ms_ssim_kwargs or {})),
        "mae": _mae,
    }
    return score_pairs(model_or_fn, pairs, scorers, clip=(0.0, data_range) if clip else None,
                       device=device, return_outputs=return_outputs)


@torch.no_grad()
def score_pairs(
    model_or_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    pairs: tuple[torch.Tensor, torch.Tensor],
    scorers: dict[str, Callable[[torch.Tensor, torch.Tensor], object]],
    *,
    clip: tuple[float, float] | None = (0.0, 1.0),
    device: str | torch.device | None = None,
    return_outputs: bool = False,
) -> dict:
    """Run ``model_or_fn`` on each input of ``pairs`` alone and score it with every scorer.

    The loop that :func:`evaluate` and the experiments' own evaluations share: a module is
    put in eval mode and run on its parameters' device (or ``device``); each output
    ``(1, C, H, W)`` comes back to the CPU as float32, is clipped to ``clip`` (``None``:
    not clipped) and scored as ``scorer(output, target)`` (CPU tensors; a scorer returns a
    number or a one-element tensor).

    Returns
    -------
    dict
        ``{name: mean over images, ..., "per_image": {name: [values]}}`` (plus
        ``"outputs"``, ``(N, C, H, W)`` on the CPU, with ``return_outputs``).
    """
    inputs, targets = pairs
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"pairs must hold as many degraded inputs as clean targets; got "
            f"{inputs.shape[0]} and {targets.shape[0]}."
        )
    if isinstance(model_or_fn, nn.Module):
        model_or_fn.eval()
        if device is None:
            p = next(model_or_fn.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device or "cpu")
    per: dict[str, list[float]] = {m: [] for m in scorers}
    outputs = []
    for i in range(inputs.shape[0]):
        out = model_or_fn(inputs[i:i + 1].to(device)).float().cpu()
        target = targets[i:i + 1].float().cpu()
        if clip is not None:
            out = out.clamp(*clip)
        for name, fn in scorers.items():
            per[name].append(float(fn(out, target)))
        if return_outputs:
            outputs.append(out)
    result: dict = {m: float(np.mean(v)) for m, v in per.items()}
    result["per_image"] = per
    if return_outputs:
        result["outputs"] = torch.cat(outputs)
    return result


def format_table(rows: Sequence[dict], columns: Sequence[str] = ("method",) + METRICS,
                 *, digits: int = 4) -> str:
    """A plain-text table of result rows (the same the CLI prints)."""
    cells = [[str(c) for c in columns]]
    for r in rows:
        cells.append([f"{r[c]:.{digits}f}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                      for c in columns])
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Experiment:
    """A named experiment: sizes per budget and the function that runs it.

    ``run(sizes, workdir, device, progress, callback) -> RunResult`` trains (resuming from
    checkpoints in ``workdir``) and evaluates. ``figures`` maps a name to
    ``fn(result) -> Figure`` (saved as ``OUT/<name>_<key>.png``); ``findings`` turns a
    result into the sentences the CLI and the chapter print.
    """

    name: str
    title: str
    sizes: dict[str, dict]
    run: Callable[..., RunResult]
    chapter: str = ""
    figures: dict[str, Callable] = field(default_factory=dict)
    findings: Callable[[RunResult | dict], list[str]] | None = None

    def sizes_for(self, budget: str | None = None) -> dict:
        """The sizes for ``budget`` (default: the current :func:`get_budget`)."""
        return dict(self.sizes[get_budget(budget).name])


@dataclass
class RunResult:
    """What an experiment run returns: the JSON payload plus what the chapter plots.

    Attributes
    ----------
    payload : dict
        Exactly what is written to ``OUT/<name>.json``.
    outputs : dict of str to tensor
        Each method's outputs on the test images, ``(N, C, H, W)``, CPU.
    histories : dict of str to History
        Training histories of the learned methods.
    models : dict of str to nn.Module
        The trained models.
    pairs : (tensor, tensor)
        The test pairs ``(degraded, clean)``.
    path : Path or None
        Where the JSON was written.
    """

    payload: dict
    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    histories: dict[str, History] = field(default_factory=dict)
    models: dict[str, nn.Module] = field(default_factory=dict)
    pairs: tuple[torch.Tensor, torch.Tensor] | None = None
    path: Path | None = None

    @property
    def rows(self) -> list[dict]:
        """The result rows (one per method)."""
        return self.payload["results"]

    def row(self, method: str) -> dict:
        """The result row of ``method``."""
        for r in self.rows:
            if r["method"] == method:
                return r
        raise KeyError(f"no method {method!r}; have {[r['method'] for r in self.rows]}.")

    def table(self, columns: Sequence[str] | None = None) -> str:
        """The results as a plain-text table (default: the method and the experiment's
        metrics, ``payload["metrics"]``, else those of :func:`evaluate`)."""
        if columns is None:
            columns = ("method",) + tuple(self.payload.get("metrics", METRICS))
        return format_table(self.rows, columns)


def _sizes_hash(sizes: dict) -> str:
    return hashlib.sha256(json.dumps(sizes, sort_keys=True).encode()).hexdigest()[:8]


def _write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)


def run_experiment(
    name: str,
    *,
    budget: str | None = None,
    out: str | os.PathLike = "runs",
    device: str | torch.device = "auto",
    progress: bool = True,
    callback: Callable | None = None,
    figures: bool = True,
    write: bool = True,
    methods: Sequence[str] | None = None,
) -> RunResult:
    """Run the experiment ``name`` at ``budget`` and write ``OUT/<name>.json``.

    Checkpoints are kept under ``OUT/<name>/<budget>-<sizes hash>/``; if a previous run of
    the same command was interrupted, this one resumes from them and ends with the same
    numbers (CPU; on a GPU up to float rounding).

    Parameters
    ----------
    name : str
        One of :func:`list_experiments`.
    budget : str, optional
        ``"smoke"``, ``"cpu"`` or ``"gpu"``; default: ``LOSSBOOK_BUDGET`` (see
        :func:`lossbook.get_budget`).
    out : path
        Output directory (created). Default ``runs``.
    device : str or torch.device
        ``"auto"`` picks CUDA when available.
    progress : bool
        Progress bars.
    callback : callable, optional
        ``callback(method, step, model, history)`` after every training step.
    figures : bool
        Also save the experiment's figures as PNG next to the JSON.
    write : bool
        Write the JSON (and figures); ``False`` only returns the result.
    methods : sequence of str, optional
        Run only these methods (default: all that this version of lossbook provides).

    Returns
    -------
    RunResult
    """
    exp = get_experiment(name)
    b = get_budget(budget)
    sizes = exp.sizes_for(b.name)
    out = Path(out)
    workdir = out / exp.name / f"{b.name}-{_sizes_hash(sizes)}"
    dev = resolve_device(device)
    start = time.perf_counter()
    result = exp.run(sizes, workdir=workdir, device=dev, progress=progress, callback=callback,
                     methods=methods)
    payload = {
        "experiment": exp.name,
        "title": exp.title,
        "budget": b.name,
        "device": str(dev) if dev.type != "cuda" else f"cuda ({torch.cuda.get_device_name(dev)})",
        "seconds": time.perf_counter() - start,
        "lossbook_version": __version__,
        "torch_version": torch.__version__,
        "sizes": sizes,
        **result.payload,
    }
    result.payload = payload
    if write:
        if figures:
            payload["figures"] = _save_figures(exp, result, out)
        result.path = out / f"{exp.name}.json"
        _write_json(result.path, payload)
    return result


def load_results(name: str, out: str | os.PathLike = "runs") -> dict:
    """Read ``OUT/<name>.json`` written by :func:`run_experiment`."""
    path = Path(out) / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no results at {path}; run `python -m lossbook run {name} --out {out}` first."
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"the results file {path} is damaged ({err}); it was left as it is. Delete it "
            f"and run `python -m lossbook run {name} --out {out}` again (the checkpoints "
            "make the rerun quick)."
        ) from None


def _save_figures(exp: Experiment, result: RunResult, out: Path) -> list[str]:
    figure_fns = exp.figures
    if not figure_fns:
        return []
    import matplotlib.pyplot as plt

    paths = []
    for key, fn in figure_fns.items():
        fig = fn(result)
        path = out / f"{exp.name}_{key}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path.name)
    return paths


def ms_ssim_train_kwargs(sizes: dict) -> dict:
    """Keywords of the *training* MS-SSIM for patches smaller than five scales need: the
    first ``ms_ssim_train_scales`` weights renormalised to sum to 1, and a
    ``ms_ssim_train_win``-tap window (used by every experiment that trains with MS-SSIM)."""
    w = L.MS_SSIM_WEIGHTS[: sizes["ms_ssim_train_scales"]]
    return {"win_size": sizes["ms_ssim_train_win"],
            "weights": tuple(float(v) / sum(w) for v in w)}


def mix_l1_sigma(sizes: dict) -> float:
    """Width (pixels) of the Gaussian that weights the L1 term of an experiment's Mix loss.

    :func:`lossbook.losses.mix_l1_sigma` of the *training* MS-SSIM's
    ``ms_ssim_train_scales`` scales (the width of its coarsest scale: 6 pixels for 3
    scales), capped so that its ``2 ceil(3 sigma) + 1`` window fits in a training patch
    (the cap binds only at the ``smoke`` budget's small patches).
    """
    natural = L.mix_l1_sigma(sizes["ms_ssim_train_scales"])
    return min(natural, ((sizes["patch_size"] - 1) // 2) / 3)


def slug(method: str) -> str:
    """A file-name-safe version of a method name (checkpoint names)."""
    return "".join(ch if ch.isalnum() else "_" for ch in method.lower())


EXPERIMENTS: dict[str, Experiment] = {}
"""Every registered experiment by name (filled as :mod:`lossbook.experiments` imports
its modules)."""


def register(exp: Experiment) -> Experiment:
    """Add ``exp`` to :data:`EXPERIMENTS` (a name may be registered once)."""
    if exp.name in EXPERIMENTS and EXPERIMENTS[exp.name] is not exp:
        raise ValueError(f"an experiment called {exp.name!r} is already registered.")
    EXPERIMENTS[exp.name] = exp
    return exp


def list_experiments() -> list[Experiment]:
    """All named experiments, in order."""
    return list(EXPERIMENTS.values())


def get_experiment(name: str) -> Experiment:
    """The experiment called ``name``; the error lists the valid names."""
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; available: {', '.join(EXPERIMENTS)}. "
            "`python -m lossbook list` shows them."
        )
    return EXPERIMENTS[name]
