"""Named, reproducible experiments: what the training chapters run, and the CLI too.

An experiment has a name, a table of sizes per compute budget (``smoke``, ``cpu``,
``gpu``; see :mod:`lossbook.budget`) and a function that trains and evaluates. Running
it writes ``OUT/<name>.json`` with the experiment, the budget, the device, the
wall-clock seconds, the package version and ``results``: one row per method with its
metrics (``psnr``, ``ssim``, ``ms_ssim``, ``mae`` by default; an experiment with other
metrics lists them under ``metrics``). Training checkpoints go under
``OUT/<name>/<budget>-<hash of the sizes>/``, so running the same command again after a
kill (or a Colab disconnect) resumes where it stopped and produces the same numbers.

The chapters call the same functions as the command line::

    python -m lossbook list
    python -m lossbook run denoise-losses --budget cpu --out runs

Experiments
-----------
``denoise-losses``
    One DnCNN (Zhang et al. 2017) trained with each of eight losses on additive
    Gaussian noise of :math:`\\sigma = 25/255`, evaluated on the held-out test images
    (full images, not patches) against the noisy input, a Gaussian filter and
    scikit-image's ``denoise_tv_chambolle`` (both tuned on the training images). The
    question of Zhao, Gallo, Frosio and Kautz (2017): does the loss matter, and does a
    network trained with L1 beat one trained with L2 even on PSNR?
``despeckle-domains``
    One DnCNN trained on single-look SAR speckle in two domains (linear intensity, and
    dB images rescaled by :func:`lossbook.sar.to_unit_db`) with three losses (MSE,
    MSE + SSIM, MSE + TV as in ID-CNN), against the Lee filter; scored on held-out test
    images with PSNR and SSIM of the intensity image, the PSNR of the dB image
    (``psnr_db``) and the ENL on flat regions (``enl``). Chapter 6's question: in which
    domain should a despeckler be trained, and with which loss?
"""

from __future__ import annotations

import functools
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

from . import __version__, sar
from . import losses as L
from .budget import get_budget
from .data import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    PatchSampler,
    add_gaussian_noise,
    gaussian_blur,
    load_images,
)
from .metrics import mae as _mae
from .metrics import ms_ssim as _ms_ssim
from .metrics import psnr as _psnr
from .metrics import ssim as _ssim
from .models import DnCNN
from .train import History, fit, resolve_device

__all__ = [
    "Experiment",
    "RunResult",
    "EXPERIMENTS",
    "list_experiments",
    "get_experiment",
    "run_experiment",
    "load_results",
    "evaluate",
    "format_table",
    "DENOISE_SIZES",
    "DENOISE_METHODS",
    "denoise_sizes",
    "denoise_findings",
    "denoise_curves_figure",
    "denoise_crops_figure",
    "make_denoiser",
    "mix_l1_sigma",
    "denoise_loss",
    "available_denoise_losses",
    "denoise_test_pairs",
    "tune_gaussian_filter",
    "tune_tv_chambolle",
    "tv_chambolle",
    "DESPECKLE_SIZES",
    "DESPECKLE_METHODS",
    "despeckle_sizes",
    "despeckle_loss",
    "make_despeckler",
    "despeckle",
    "despeckle_test_pairs",
    "despeckle_scores",
    "despeckle_best",
    "despeckle_findings",
    "despeckle_crops_figure",
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

    For every pair ``(degraded_i, clean_i)`` the output :math:`\hat x_i` is computed on the
    whole image (not on patches), clipped to ``[0, data_range]`` when ``clip``, and scored
    with PSNR, SSIM (Wang et al.'s 11x11 Gaussian window), MS-SSIM (five scales by
    default: sides must exceed 160 px) and MAE. The table values are the **means of the
    per-image values**; for PSNR that is :math:`\frac1N\sum_i 10\log_{10}(L^2/\mathrm{MSE}_i)`,
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
    degraded, clean = pairs
    if degraded.shape[0] != clean.shape[0]:
        raise ValueError(
            f"pairs must hold as many degraded as clean images; got {degraded.shape[0]} and "
            f"{clean.shape[0]}."
        )
    if isinstance(model_or_fn, nn.Module):
        model_or_fn.eval()
        if device is None:
            p = next(model_or_fn.parameters(), None)
            device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device or "cpu")
    per: dict[str, list[float]] = {m: [] for m in METRICS}
    outputs = []
    for i in range(degraded.shape[0]):
        y = model_or_fn(degraded[i:i + 1].to(device)).float().cpu()
        x = clean[i:i + 1].float().cpu()
        if clip:
            y = y.clamp(0.0, data_range)
        per["psnr"].append(float(_psnr(y, x, data_range=data_range)))
        per["ssim"].append(float(_ssim(y, x, data_range=data_range)))
        per["ms_ssim"].append(float(_ms_ssim(y, x, data_range=data_range,
                                             **(ms_ssim_kwargs or {}))))
        per["mae"].append(float(_mae(y, x)))
        if return_outputs:
            outputs.append(y)
    out: dict = {m: float(np.mean(v)) for m, v in per.items()}
    out["per_image"] = per
    if return_outputs:
        out["outputs"] = torch.cat(outputs)
    return out


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
    checkpoints in ``workdir``) and evaluates.
    """

    name: str
    title: str
    sizes: dict[str, dict]
    run: Callable[..., RunResult]
    chapter: str = ""

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
    return json.loads(path.read_text())


def _save_figures(exp: Experiment, result: RunResult, out: Path) -> list[str]:
    figure_fns = FIGURES.get(exp.name, {})
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


# ------------------------------------------------------------------------- denoise-losses

DENOISE_METHODS: tuple[str, ...] = (
    "L2", "L1", "Charbonnier", "SSIM", "MS-SSIM", "Mix", "MSE+SSIM", "L2+TV",
)
"""The eight training losses of ``denoise-losses``, in table order."""

DENOISE_BASELINES: tuple[str, ...] = ("noisy input", "Gaussian filter", "TV (Chambolle)")

DENOISE_SIZES: dict[str, dict] = {
    # smoke: only shows that the code runs. Test images are 176 px so that the MS-SSIM
    # metric keeps its standard 5 scales and 11-tap window (sides must exceed 160).
    "smoke": dict(sigma=25.0, train_size=96, patch_size=32, batch_size=8, steps=16,
                  depth=4, width=16, batch_norm=False, lr=1e-3, test_size=176, n_test=2, n_tune=2,
                  tune_points=3, val_crop=48, log_every=4, ms_ssim_train_win=7,
                  ms_ssim_train_scales=3),
    "cpu": dict(sigma=25.0, train_size=256, patch_size=40, batch_size=16, steps=1000,
                depth=7, width=32, batch_norm=False, lr=2e-3, test_size=256, n_test=4, n_tune=4,
                tune_points=7, val_crop=64, log_every=10, ms_ssim_train_win=7,
                ms_ssim_train_scales=3),
    # gpu: not yet timed on a GPU; about 0.3 TFLOP per step (DnCNN-17, 32 x 48^2), so
    # 2000 steps x 8 losses should take roughly ten to twenty minutes on a Colab T4.
    "gpu": dict(sigma=25.0, train_size=300, patch_size=48, batch_size=32, steps=2000,
                depth=17, width=64, batch_norm=False, lr=1e-3, test_size=300, n_test=4, n_tune=6,
                tune_points=11, val_crop=128, log_every=25, ms_ssim_train_win=11,
                ms_ssim_train_scales=3),
}
"""Sizes of ``denoise-losses`` per budget: ``steps`` optimiser steps of Adam (learning
rate ``lr``, cosine decay) on ``batch_size`` random ``patch_size`` patches of the
training images (resized to ``train_size``); a DnCNN of ``depth`` x ``width``, without
BatchNorm (in a 150-step CPU test with the L2 loss, the BatchNorm version, the paper's
choice, was 1.8 dB worse on the test images: it pays off only with long training). The
MS-SSIM *training* loss uses ``ms_ssim_train_scales`` scales (weights
``MS_SSIM_WEIGHTS[:scales]``, renormalised to sum to 1) and a ``ms_ssim_train_win``
window, because patches are far smaller than the 161 px that five scales need.
Evaluation always uses the standard 5-scale MS-SSIM."""

# Weights of the combined losses (fixed, stated here and in Chapter 7).
MIX_ALPHA = 0.84  # Zhao et al. 2017's alpha: 0.84 (1 - MS-SSIM) + 0.16 G*L1
SSIM_WEIGHT = 0.01  # MSE + 0.01 (1 - SSIM): the two terms are of similar size near the optimum
TV_WEIGHT = 0.002  # L2 + 0.002 TV(prediction): ID-CNN's weight (Wang, Zhang, Patel 2017)


def denoise_sizes(budget: str | None = None) -> dict:
    """The ``denoise-losses`` sizes for ``budget`` (default: the current budget)."""
    return dict(DENOISE_SIZES[get_budget(budget).name])


def _ms_ssim_train_kwargs(sizes: dict) -> dict:
    w = L.MS_SSIM_WEIGHTS[: sizes["ms_ssim_train_scales"]]
    return {"win_size": sizes["ms_ssim_train_win"],
            "weights": tuple(float(v) / sum(w) for v in w)}


def mix_l1_sigma(sizes: dict) -> float:
    """Width (pixels) of the Gaussian that weights the L1 term of the Mix loss.

    Zhao et al. weight L1 with the Gaussian of MS-SSIM's coarsest scale. Our training
    MS-SSIM's coarsest scale sees the 1.5-pixel window through ``2 ** (scales - 1)``
    decimations, i.e. a Gaussian of ``1.5 * 2 ** (scales - 1)`` pixels (6 for 3 scales);
    it is capped so that its ``2 ceil(3 sigma) + 1`` window fits in a training patch.
    """
    natural = 1.5 * 2 ** (sizes["ms_ssim_train_scales"] - 1)
    return min(natural, ((sizes["patch_size"] - 1) // 2) / 3)


def denoise_loss(method: str, sizes: dict) -> nn.Module:
    """The training loss of ``method`` (one of :data:`DENOISE_METHODS`).

    Raises
    ------
    ValueError
        For an unknown method.
    ImportError
        If ``lossbook.losses`` does not provide the pieces this loss needs yet.
    """
    ms = _ms_ssim_train_kwargs(sizes)

    def need(*names: str) -> list:
        missing = [n for n in names if not hasattr(L, n)]
        if missing:
            raise ImportError(
                f"loss {method!r} needs lossbook.losses.{', '.join(missing)}, which this "
                "version of lossbook does not have."
            )
        return [getattr(L, n) for n in names]

    if method == "L2":
        return L.MSELoss()
    if method == "L1":
        return L.L1Loss()
    if method == "Charbonnier":
        return L.CharbonnierLoss(eps=1e-3)
    if method == "SSIM":
        (cls,) = need("SSIMLoss")
        return cls()
    if method == "MS-SSIM":
        (cls,) = need("MSSSIMLoss")
        return cls(**ms)
    if method == "Mix":
        (cls,) = need("MixLoss")
        return cls(alpha=MIX_ALPHA, l1_sigma=mix_l1_sigma(sizes), **ms)
    if method == "MSE+SSIM":
        comb, ssim_loss = need("CombinedLoss", "SSIMLoss")
        return comb({"mse": (1.0, L.MSELoss()), "ssim": (SSIM_WEIGHT, ssim_loss())})
    if method == "L2+TV":
        comb, tv = need("CombinedLoss", "TVLoss")
        return comb({"mse": (1.0, L.MSELoss()), "tv": (TV_WEIGHT, tv())})
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(DENOISE_METHODS)}.")


def available_denoise_losses(sizes: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """``(available methods, {missing method: reason})`` for this version of lossbook."""
    sizes = sizes or DENOISE_SIZES["smoke"]
    ok, missing = [], {}
    for m in DENOISE_METHODS:
        try:
            denoise_loss(m, sizes)
            ok.append(m)
        except ImportError as err:
            missing[m] = str(err)
    return ok, missing


def _noisy(x: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    return add_gaussian_noise(x, sigma, generator=torch.Generator().manual_seed(seed))


def denoise_test_pairs(sizes: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test pairs ``(noisy, clean)``: the first ``n_test`` test images at
    ``test_size``, with a fixed noise draw (seed 2017)."""
    clean = load_images(list(TEST_IMAGES[: sizes["n_test"]]), sizes["test_size"])
    return _noisy(clean, sizes["sigma"], 2017), clean


def _tune_pairs(sizes: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy training images (never test images) for tuning the classical baselines."""
    clean = load_images(list(TRAIN_IMAGES[: sizes["n_tune"]]), sizes["test_size"])
    return _noisy(clean, sizes["sigma"], 1), clean


def tv_chambolle(x: torch.Tensor, weight: float) -> torch.Tensor:
    """scikit-image's ``denoise_tv_chambolle`` (Chambolle 2004) on each image of a batch.

    ``weight`` is the TV weight (:math:`1/\\lambda` of the ROF model): larger is smoother.
    """
    from skimage.restoration import denoise_tv_chambolle

    arr = x.detach().cpu().double().numpy()
    out = np.stack([np.stack([denoise_tv_chambolle(ch, weight=weight) for ch in img])
                    for img in arr])
    return torch.from_numpy(out).to(x.dtype)


def _tune(fn: Callable[[torch.Tensor, float], torch.Tensor], grid: np.ndarray,
          pairs: tuple[torch.Tensor, torch.Tensor]) -> tuple[float, list[float]]:
    """The grid value with the highest mean per-image PSNR on ``pairs``."""
    noisy, clean = pairs
    scores = [float(_psnr(fn(noisy, float(v)).clamp(0, 1), clean)) for v in grid]
    return float(grid[int(np.argmax(scores))]), scores


def tune_gaussian_filter(sizes: dict) -> tuple[float, dict]:
    """The Gaussian filter's sigma (pixels) that maximises PSNR on noisy training images."""
    grid = np.geomspace(0.5, 3.0, sizes["tune_points"])
    best, scores = _tune(lambda x, s: gaussian_blur(x, s), grid, _tune_pairs(sizes))
    return best, {"grid": grid.tolist(), "psnr": scores}


def tune_tv_chambolle(sizes: dict) -> tuple[float, dict]:
    """``denoise_tv_chambolle``'s weight that maximises PSNR on noisy training images."""
    grid = np.geomspace(0.03, 0.3, sizes["tune_points"])
    best, scores = _tune(tv_chambolle, grid, _tune_pairs(sizes))
    return best, {"grid": grid.tolist(), "psnr": scores}


def make_denoiser(sizes: dict, seed: int = 0) -> DnCNN:
    """The DnCNN every loss starts from: the same initial weights for every method."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DnCNN(channels=1, depth=sizes["depth"], width=sizes["width"],
                     batch_norm=sizes["batch_norm"])


def _run_denoise_losses(sizes: dict, *, workdir: Path, device: torch.device,
                        progress: bool = True, callback: Callable | None = None,
                        methods: Sequence[str] | None = None) -> RunResult:
    methods_ok, missing = available_denoise_losses(sizes)
    if methods is not None:
        methods_ok = [m for m in methods_ok if m in methods]
    pairs = denoise_test_pairs(sizes)
    c = sizes["val_crop"]
    n, cl = pairs
    top = (n.shape[-1] - c) // 2
    val = (n[..., top:top + c, top:top + c], cl[..., top:top + c, top:top + c])
    train = load_images("train", sizes["train_size"])
    sampler = PatchSampler(train, functools.partial(add_gaussian_noise, sigma=sizes["sigma"]),
                           sizes["patch_size"], device=device)

    rows, outputs, histories, models, curves = [], {}, {}, {}, {}

    def add_row(method: str, kind: str, ev: dict, **extra) -> None:
        outputs[method] = ev.pop("outputs")
        rows.append({"method": method, "kind": kind,
                     **{m: ev[m] for m in METRICS},
                     "psnr_per_image": ev["per_image"]["psnr"], **extra})

    add_row("noisy input", "baseline", evaluate(lambda x: x, pairs, return_outputs=True))
    g_sigma, g_tune = tune_gaussian_filter(sizes)
    add_row("Gaussian filter", "baseline",
            evaluate(lambda x: gaussian_blur(x, g_sigma), pairs, return_outputs=True),
            parameter=g_sigma)
    tv_w, tv_tune = tune_tv_chambolle(sizes)
    add_row("TV (Chambolle)", "baseline",
            evaluate(lambda x: tv_chambolle(x, tv_w), pairs, return_outputs=True),
            parameter=tv_w)

    for method in methods_ok:
        model = make_denoiser(sizes)
        cb = None if callback is None else functools.partial(callback, method)
        h = fit(model, denoise_loss(method, sizes), sampler, steps=sizes["steps"],
                batch_size=sizes["batch_size"], lr=sizes["lr"], lr_schedule="cosine",
                device=device,
                val_data=val, log_every=sizes["log_every"],
                checkpoint=workdir / f"{_slug(method)}.pt", seed=0, callback=cb,
                progress=progress)
        histories[method], models[method] = h, model
        add_row(method, "learned", evaluate(model, pairs, device=device, return_outputs=True),
                final_loss=h.final_loss, train_seconds=h.seconds,
                images_per_second=h.images_per_second)
        curves[method] = {"step": h.step, "loss": h.loss, "components": h.components,
                          "val_step": h.val_step, "val_psnr": h.val.get("psnr", [])}

    payload = {
        "methods": list(methods_ok),
        "missing_losses": missing,
        "test_images": list(TEST_IMAGES[: sizes["n_test"]]),
        "tuning": {"gaussian_sigma": g_sigma, "gaussian": g_tune,
                   "tv_weight": tv_w, "tv": tv_tune},
        "loss_weights": {"mix_alpha": MIX_ALPHA, "mse+ssim": SSIM_WEIGHT, "l2+tv": TV_WEIGHT},
        "notes": (f"Metrics on {sizes['n_test']} full {sizes['test_size']}x"
                  f"{sizes['test_size']} test images, outputs clipped to [0, 1]; each value is "
                  "the mean over images of the per-image metric (PSNR: mean of per-image "
                  "PSNR). MS-SSIM: 5 scales, 11x11 Gaussian window. Validation curves: "
                  f"PSNR on {c}x{c} centre crops of the noisy test images."),
        "results": rows,
        "curves": curves,
    }
    return RunResult(payload=payload, outputs=outputs, histories=histories, models=models,
                     pairs=pairs)


def _slug(method: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in method.lower())


def denoise_findings(result: RunResult | dict) -> list[str]:
    """The chapter's conclusions, computed from the numbers of a ``denoise-losses`` run.

    Each sentence states a comparison and its sign as measured (never assumed): the best
    learned method against tuned TV-Chambolle (the +1 dB target), L1 against L2 on PSNR
    (with the number of test images on which it holds), and which loss is best on SSIM
    and MS-SSIM (is it the Mix of Zhao et al. 2017?).
    """
    p = result.payload if isinstance(result, RunResult) else result
    rows = {r["method"]: r for r in p["results"]}
    learned = [m for m in p["methods"] if m in rows]
    out = []
    if p.get("budget") == "smoke":
        out.append("Smoke budget: the networks barely trained, so the comparisons below only "
                   "show that the code runs; they are not results.")
    if not learned:
        return out + ["No learned method ran."]
    tv = rows["TV (Chambolle)"]["psnr"]
    best = max(learned, key=lambda m: rows[m]["psnr"])
    d = rows[best]["psnr"] - tv
    out.append(
        f"Best learned denoiser on PSNR: {best} ({rows[best]['psnr']:.2f} dB), "
        f"{abs(d):.2f} dB {'above' if d >= 0 else 'below'} tuned TV-Chambolle ({tv:.2f} dB); "
        f"the target of at least +1 dB is {'met' if d >= 1 else 'not met'} at this budget.")
    if "L1" in rows and "L2" in rows:
        diff = rows["L1"]["psnr"] - rows["L2"]["psnr"]
        per = np.array(rows["L1"]["psnr_per_image"]) - np.array(rows["L2"]["psnr_per_image"])
        out.append(
            f"L1 vs L2 on PSNR: the L1-trained net is {abs(diff):.2f} dB "
            f"{'better' if diff > 0 else 'worse'} than the L2-trained one on average "
            f"(better on {int((per > 0).sum())} of {per.size} test images), although PSNR "
            "is exactly what L2 optimises.")
    for metric, label in (("ssim", "SSIM"), ("ms_ssim", "MS-SSIM")):
        ranked = sorted(learned, key=lambda m: rows[m][metric], reverse=True)
        sentence = (f"Best learned on {label}: {ranked[0]} ({rows[ranked[0]][metric]:.4f})")
        if "Mix" in learned:
            sentence += ("; the Mix loss is the best" if ranked[0] == "Mix" else
                         f"; the Mix loss ranks {ranked.index('Mix') + 1} of {len(ranked)}")
        out.append(sentence + ".")
    return out


# ------------------------------------------------------------------------- despeckle-domains

DESPECKLE_LOSSES: tuple[str, ...] = ("MSE", "MSE+SSIM", "MSE+TV")
"""The three training losses of ``despeckle-domains``, on the output in its domain."""

DESPECKLE_DOMAINS: tuple[str, ...] = ("linear", "dB")
"""Where the network works: intensities, or dB images scaled by :func:`sar.to_unit_db`."""

DESPECKLE_METHODS: tuple[str, ...] = tuple(
    f"{loss} ({domain})" for domain in DESPECKLE_DOMAINS for loss in DESPECKLE_LOSSES)
"""The six learned methods of ``despeckle-domains``, in table order."""

DESPECKLE_SIZES: dict[str, dict] = {
    "smoke": dict(looks=1, floor_db=-30.0, steps=10, batch_size=8, patch_size=32, depth=3,
                  width=16, batch_norm=True, lr=1e-3, train_size=96, test_size=64, n_test=2,
                  lee_size=7),
    "cpu": dict(looks=1, floor_db=-30.0, steps=500, batch_size=16, patch_size=32, depth=5,
                width=24, batch_norm=True, lr=1e-3, train_size=128, test_size=128, n_test=3,
                lee_size=7),
    "gpu": dict(looks=1, floor_db=-30.0, steps=3000, batch_size=64, patch_size=64, depth=17,
                width=64, batch_norm=True, lr=1e-3, train_size=256, test_size=256, n_test=4,
                lee_size=7),
}
"""Sizes of ``despeckle-domains`` per budget: ``steps`` steps of Adam (constant learning
rate ``lr``) on ``batch_size`` random ``patch_size`` patches of the training images
(resized to ``train_size``) with ``looks``-look speckle; a DnCNN of ``depth`` x ``width``
(with BatchNorm); ``n_test`` test images of ``test_size`` pixels (the budget's
``image_size``); dB images floored at ``floor_db``; a ``lee_size`` Lee filter."""

DESPECKLE_SSIM_WEIGHT = 0.01  # MSE + 0.01 (1 - SSIM)
# MSE + 0.002 TV: ID-CNN's weight (TV_WEIGHT above), isotropic TV averaged over pixels


def despeckle_sizes(budget: str | None = None) -> dict:
    """The ``despeckle-domains`` sizes for ``budget`` (default: the current budget)."""
    return dict(DESPECKLE_SIZES[get_budget(budget).name])


def despeckle_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss ``name`` of ``despeckle-domains`` (one of ``DESPECKLE_LOSSES``):
    ``"MSE"``; ``"MSE+SSIM"``, MSE + 0.01 (1 - SSIM); ``"MSE+TV"``, MSE + 0.002 TV
    (isotropic TV with eps 1e-3, averaged over pixels: ID-CNN's recipe, Wang, Zhang and
    Patel 2017). Each is applied to the network's output in the domain it works in."""

    def mse_ssim(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return L.mse(p, t) + DESPECKLE_SSIM_WEIGHT * (1 - L.ssim(p, t))

    def mse_tv(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return L.mse(p, t) + TV_WEIGHT * L.total_variation(p, "isotropic", eps=1e-3)

    losses = {"MSE": L.mse, "MSE+SSIM": mse_ssim, "MSE+TV": mse_tv}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(losses)}.")
    return losses[name]


def make_despeckler(sizes: dict, seed: int = 0) -> DnCNN:
    """The DnCNN every method starts from: the same initial weights for every run."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DnCNN(1, depth=sizes["depth"], width=sizes["width"],
                     batch_norm=sizes["batch_norm"])


@dataclass(frozen=True)
class _UnitDbSampler:
    """A linear-domain sampler's pairs, both mapped by :func:`sar.to_unit_db`."""

    linear: Callable
    floor_db: float

    def __call__(self, n: int, generator: torch.Generator):
        noisy, target = self.linear(n, generator)
        return sar.to_unit_db(noisy, self.floor_db), sar.to_unit_db(target, self.floor_db)


@torch.no_grad()
def despeckle(model: nn.Module, domain: str, y: torch.Tensor, *, floor_db: float = -30.0,
              device: str | torch.device | None = None) -> torch.Tensor:
    """Intensities ``y`` despeckled by ``model`` trained in ``domain`` (CPU result).

    ``"linear"``: ``model(y)``; ``"dB"``: ``from_unit_db(model(to_unit_db(y)))``.
    """
    if domain not in DESPECKLE_DOMAINS:
        raise ValueError(f"domain must be one of {DESPECKLE_DOMAINS}; got {domain!r}.")
    model.eval()
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    y = y.to(device)
    if domain == "linear":
        out = model(y)
    else:
        out = sar.from_unit_db(model(sar.to_unit_db(y, floor_db)), floor_db)
    return out.cpu()


def despeckle_test_pairs(sizes: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test pairs ``(speckled, clean)``: the first ``n_test`` test images at
    ``test_size``, with a fixed speckle draw (seed 2017)."""
    clean = load_images(list(TEST_IMAGES[: sizes["n_test"]]), sizes["test_size"])
    return sar.add_speckle(clean, sizes["looks"], torch.Generator().manual_seed(2017)), clean


def _flat_mask(clean: torch.Tensor) -> torch.Tensor:
    """Pixels where the clean image is flat (local sigma/mu < 2 %) and not dark."""
    return sar.homogeneous_mask(clean, max_cv=0.02, size=7) & (clean > 0.05)


def despeckle_scores(output: torch.Tensor, clean: torch.Tensor, *,
                     floor_db: float = -30.0) -> dict:
    r"""PSNR, SSIM, PSNR of the dB image and ENL of despeckled intensities ``output``.

    ``psnr``, ``ssim``: of the intensity image clipped to ``[0, 1]``, means of the
    per-image values; ``psnr_db``: PSNR of the clipped image on the
    :func:`sar.to_unit_db` scale (0 to 1 for ``floor_db`` to 0 dB); ``enl``: ENL of the
    ratio :math:`\hat x / x` of the raw output (negative values set to 0) over the flat
    pixels of all test images pooled (see ``_flat_mask``): about :math:`L` for the
    speckled input, higher as speckle is removed (and as the output gets smoother).
    """
    shown = output.clamp(0, 1)  # images are stored in [0, 1]; the ENL uses the raw output
    side = clean.shape[-1]
    pooled = _flat_mask(clean).reshape(1, 1, -1, side)  # flat pixels of all images together
    per_image = _psnr(shown, clean, reduction="none")
    return {
        "psnr": float(_psnr(shown, clean)),
        "ssim": float(_ssim(shown, clean)),
        "psnr_db": float(_psnr(sar.to_unit_db(shown, floor_db).clamp(0, 1),
                               sar.to_unit_db(clean, floor_db))),
        "enl": float(sar.enl((output.clamp_min(0) / clean).reshape(1, 1, -1, side), pooled)),
        "psnr_per_image": [float(v) for v in per_image],
    }


def _run_despeckle_domains(sizes: dict, *, workdir: Path, device: torch.device,
                           progress: bool = True, callback: Callable | None = None,
                           methods: Sequence[str] | None = None) -> RunResult:
    looks, floor_db = sizes["looks"], sizes["floor_db"]
    pairs = despeckle_test_pairs(sizes)
    noisy, clean = pairs
    lee_name = f"Lee {sizes['lee_size']}x{sizes['lee_size']}"
    outputs = {"noisy input": noisy, lee_name: sar.lee_filter(noisy, sizes["lee_size"], looks)}
    kinds = {"noisy input": "baseline", lee_name: "baseline"}

    train = load_images("train", sizes["train_size"])
    linear = PatchSampler(train, functools.partial(sar.add_speckle, looks=looks),
                          sizes["patch_size"], device=device)  # patches made on the device
    samplers = {"linear": linear, "dB": _UnitDbSampler(linear, floor_db)}
    histories, models, curves, extra = {}, {}, {}, {}
    for domain in DESPECKLE_DOMAINS:
        for loss in DESPECKLE_LOSSES:
            method = f"{loss} ({domain})"
            if methods is not None and method not in methods:
                continue
            model = make_despeckler(sizes)
            cb = None if callback is None else functools.partial(callback, method)
            # speckled intensities have a long tail: linear inputs may reach ~4
            h = fit(model, despeckle_loss(loss), samplers[domain], steps=sizes["steps"],
                    batch_size=sizes["batch_size"], lr=sizes["lr"], device=device,
                    data_range=4.0 if domain == "linear" else 1.0,
                    checkpoint=workdir / f"{_slug(method)}.pt", seed=0, callback=cb,
                    progress=progress)
            histories[method], models[method] = h, model
            outputs[method] = despeckle(model, domain, noisy, floor_db=floor_db, device=device)
            kinds[method] = "learned"
            extra[method] = {"domain": domain, "loss": loss, "final_loss": h.final_loss,
                             "train_seconds": h.seconds}
            curves[method] = {"step": h.step, "loss": h.loss}

    rows = [{"method": m, "kind": kinds[m], **extra.get(m, {}),
             **despeckle_scores(out, clean, floor_db=floor_db)} for m, out in outputs.items()]
    flat = _flat_mask(clean).flatten(1).sum(1).tolist()
    learned = [m for m in outputs if kinds[m] == "learned"]
    payload = {
        "methods": learned,
        "metrics": ["psnr", "ssim", "psnr_db", "enl"],
        "test_images": list(TEST_IMAGES[: sizes["n_test"]]),
        "flat_pixels": flat,
        "loss_weights": {"mse+ssim": DESPECKLE_SSIM_WEIGHT, "mse+tv": TV_WEIGHT},
        "notes": (f"{sizes['n_test']} test images of {sizes['test_size']}x{sizes['test_size']}"
                  f" with {looks}-look speckle. PSNR, SSIM: means of the per-image values "
                  "of the output clipped to [0, 1]; psnr_db: the same on the dB scale "
                  f"({floor_db:g} to 0 dB mapped to [0, 1]); ENL: of output/clean over the "
                  f"flat pixels of all test images together ({sum(flat)} pixels)."),
        "results": rows,
        "curves": curves,
    }
    return RunResult(payload=payload, outputs=outputs, histories=histories, models=models,
                     pairs=pairs)


def _domain_rows(p: dict, domain: str) -> list[dict]:
    return [r for r in p["results"] if r.get("domain") == domain]


def despeckle_best(result: RunResult | dict, metric: str = "ssim") -> dict[str, str]:
    """``{domain: method}``: each domain's best network on ``metric`` (default SSIM)."""
    p = result.payload if isinstance(result, RunResult) else result
    return {d: max(rows, key=lambda r: r[metric])["method"]
            for d in DESPECKLE_DOMAINS if (rows := _domain_rows(p, d))}


def despeckle_findings(result: RunResult | dict) -> list[str]:
    """The chapter's comparisons, computed from a ``despeckle-domains`` run.

    For PSNR, the PSNR of the dB image and SSIM: the best linear-domain network, the best
    dB-domain network and the Lee filter, which domain wins, and whether Lee beats both.
    """
    p = result.payload if isinstance(result, RunResult) else result
    out = []
    if p.get("budget") == "smoke":
        out.append("Smoke budget: the networks barely trained, so the comparisons below only "
                   "show that the code runs; they are not results.")
    lee = next((r for r in p["results"] if r["method"].startswith("Lee")), None)
    lin, db = _domain_rows(p, "linear"), _domain_rows(p, "dB")
    if not (lin and db and lee):
        return out + ["Both domains and the Lee filter are needed for the comparison."]
    for col in ("psnr", "psnr_db", "ssim"):
        a, b = max(r[col] for r in lin), max(r[col] for r in db)
        out.append(f"{col:>7}: best linear-domain net {a:.3f}, best dB-domain net {b:.3f}, "
                   f"Lee {lee[col]:.3f} -> {'dB' if b > a else 'linear'} domain wins"
                   f"{'' if max(a, b) > lee[col] else ', but Lee beats both'}")
    return out


def despeckle_crops_figure(result: RunResult, image: int = 0, scale: str = "linear"):
    """Zoomed crops of one test image: clean, speckled, Lee and each domain's best network
    by SSIM; ``scale="dB"`` shows them on the :func:`sar.to_unit_db` scale."""
    from .viz import show_images

    noisy, clean = result.pairs
    side = clean.shape[-1]
    lee = next(r["method"] for r in result.rows if r["method"].startswith("Lee"))
    best = despeckle_best(result)
    names = ["noisy input", lee] + [best[d] for d in DESPECKLE_DOMAINS if d in best]
    panels = [clean[image:image + 1]] + [result.outputs[k][image:image + 1].clamp(0, 1)
                                         for k in names]
    zoom = (slice(side // 5, side // 5 + side // 3), slice(side // 3, side // 3 + side // 3))
    looks = result.payload["sizes"]["looks"]
    if scale == "dB":
        floor_db = result.payload["sizes"]["floor_db"]
        panels = [sar.to_unit_db(x, floor_db) for x in panels]
        title = f"The same crops on the dB scale ({floor_db:g} to 0 dB)"
    elif scale == "linear":
        title = f"Despeckling (L = {looks:g}), zoomed crop, linear display"
    else:
        raise ValueError(f"scale must be 'linear' or 'dB'; got {scale!r}.")
    return show_images(panels, ["clean"] + names, crop=zoom, vmin=0, vmax=1, suptitle=title)


# ------------------------------------------------------------------------- figures


def denoise_curves_figure(result: RunResult):
    """Validation PSNR of every loss against the step, and each training loss."""
    import matplotlib.pyplot as plt

    from .viz import plot_curves

    curves = result.payload["curves"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_curves({m: (c["val_step"], c["val_psnr"]) for m, c in curves.items()},
                xlabel="training step", ylabel="PSNR (dB)", ax=axes[0],
                title="Validation PSNR (centre crops of the test images)")
    if result.pairs is not None and "TV (Chambolle)" in result.outputs:
        # the TV baseline scored on the same centre crops, as a reference line
        c = result.payload["sizes"]["val_crop"]
        clean = result.pairs[1]
        top = (clean.shape[-1] - c) // 2
        crop = (..., slice(top, top + c), slice(top, top + c))
        ref = float(_psnr(result.outputs["TV (Chambolle)"][crop], clean[crop]))
        axes[0].axhline(ref, color="k", ls="--", lw=1, label="TV (Chambolle)")
        axes[0].legend(fontsize=8)
    plot_curves({m: (c["step"], np.array(c["loss"]) / c["loss"][0]) for m, c in curves.items()},
                xlabel="training step", ylabel="loss / first logged loss", logy=True,
                ax=axes[1], title="Training loss, each relative to its start")
    fig.tight_layout()
    return fig


def denoise_crops_figure(result: RunResult, image: int = 0, methods: Sequence[str] | None = None,
                         crop: tuple[slice, slice] | None = None):
    """Zoomed crops of one test image: clean, noisy, baselines and each learned method."""
    from .viz import show_images

    noisy, clean = result.pairs
    methods = list(methods or [r["method"] for r in result.rows if r["method"] != "noisy input"])
    side = clean.shape[-1]
    if crop is None:
        k = max(24, side // 4)
        crop = (slice(side // 2 - k // 2, side // 2 + k // 2),
                slice(side // 2 - k // 2, side // 2 + k // 2))
    images = [clean[image], noisy[image].clamp(0, 1)] + [result.outputs[m][image]
                                                         for m in methods]
    titles = ["clean", f"noisy\n{result.row('noisy input')['psnr_per_image'][image]:.2f} dB"]
    titles += [f"{m}\n{result.row(m)['psnr_per_image'][image]:.2f} dB" for m in methods]
    name = result.payload.get("test_images", ["?"] * (image + 1))[image]
    return show_images(images, titles, crop=crop, ncols=min(6, len(images)), size=2.0,
                       suptitle=f"Zoomed crop of test image '{name}' (PSNR of the full image)")


FIGURES: dict[str, dict[str, Callable]] = {
    "denoise-losses": {"curves": denoise_curves_figure, "crops": denoise_crops_figure},
    "despeckle-domains": {
        "crops": despeckle_crops_figure,
        "crops_db": functools.partial(despeckle_crops_figure, scale="dB"),
    },
}

EXPERIMENTS: dict[str, Experiment] = {
    "denoise-losses": Experiment(
        name="denoise-losses",
        title="One DnCNN, eight losses: Gaussian denoising (sigma 25/255)",
        sizes=DENOISE_SIZES,
        run=_run_denoise_losses,
        chapter="notebooks/07_denoising_losses",
    ),
    "despeckle-domains": Experiment(
        name="despeckle-domains",
        title="Despeckling (L = 1) in the linear and the dB domain, three losses, vs Lee",
        sizes=DESPECKLE_SIZES,
        run=_run_despeckle_domains,
        chapter="notebooks/06_sar_speckle_db",
    ),
}


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
