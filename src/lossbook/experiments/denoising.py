"""Experiment ``denoise-losses`` (Chapter 7): one DnCNN, eight losses, Gaussian noise.

One DnCNN (Zhang et al. 2017) trained with each of eight losses on additive Gaussian
noise of :math:`\\sigma = 25/255`, evaluated on the held-out test images (full images,
not patches) against the noisy input, a Gaussian filter and scikit-image's
``denoise_tv_chambolle`` (both tuned on the training images). The question of Zhao,
Gallo, Frosio and Kautz (2017): does the loss matter, and does a network trained with
L1 beat one trained with L2 even on PSNR?

Seeds. Each learned method is trained ``seeds`` times (one at the ``smoke`` and ``cpu``
budgets, three at ``gpu``); seed ``s`` sets the initial weights
(:func:`make_denoiser`) and the training batches (``fit(seed=s)``), and is the same for
every loss, so seed ``s`` of L1 and seed ``s`` of L2 start alike and see the same
batches. A learned method's row reports the **mean over seeds** of each metric (its
``psnr_per_image`` and ``ssim_per_image``, used by the paired bootstrap, are the
per-image scores averaged over seeds); with more than one seed it also holds the
per-seed values (``psnr_per_seed`` ...), their standard deviation (``psnr_seed_sd`` ...)
and the per-image scores of every seed (``psnr_per_image_per_seed`` ...);
``final_loss``, ``train_seconds`` and ``images_per_second`` are means over the seeds'
training runs too. A training ``callback`` is called with the method's name for every
seed (its step count restarts at each seed). Seed 0 is the single-seed run exactly,
with the same checkpoint names (``l1.pt``); seeds 1, 2 add ``_seed1``, ``_seed2``.
Figures, curves, ``RunResult.models`` and ``RunResult.outputs`` are those of seed 0.

    python -m lossbook run denoise-losses --budget cpu --out runs
"""

from __future__ import annotations

import concurrent.futures
import functools
import multiprocessing
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import losses as L
from ..budget import get_budget
from ..data import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    PatchSampler,
    add_gaussian_noise,
    gaussian_blur,
    load_images,
)
from ..metrics import psnr as _psnr
from ..models import DnCNN
from ..stats import compare_methods
from ..train import cpu_bf16_is_fast, fit, resolve_amp
from .core import (
    METRICS,
    Experiment,
    RunResult,
    evaluate,
    mix_l1_sigma,
    ms_ssim_train_kwargs,
    register,
    slug,
)

__all__ = [
    "DENOISE_SIZES",
    "DENOISE_METHODS",
    "DENOISE_BASELINES",
    "MIX_ALPHA",
    "SSIM_WEIGHT",
    "TV_WEIGHT",
    "denoise_sizes",
    "denoise_findings",
    "denoise_curves_figure",
    "denoise_crops_figure",
    "make_denoiser",
    "denoise_seeds",
    "denoise_amp",
    "denoise_checkpoint_name",
    "denoise_loss",
    "available_denoise_losses",
    "denoise_test_pairs",
    "tune_gaussian_filter",
    "tune_tv_chambolle",
    "tv_chambolle",
]

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
                  ms_ssim_train_scales=3, seeds=1),
    # cpu: 2000 steps of 4 patches, not 1000 of 16 (see the note below the dict).
    "cpu": dict(sigma=25.0, train_size=256, patch_size=40, batch_size=4, steps=2000,
                depth=7, width=32, batch_norm=False, lr=2e-3, test_size=256, n_test=4, n_tune=4,
                tune_points=7, val_crop=64, log_every=25, ms_ssim_train_win=7,
                ms_ssim_train_scales=3, seeds=1, workers=2),
    # gpu: not yet timed on a GPU; about 0.3 TFLOP per step (DnCNN-17, 32 x 48^2), so
    # 2000 steps x 8 losses should take roughly ten to twenty minutes on a Colab T4 per
    # seed, so about three times that for the three seeds.
    "gpu": dict(sigma=25.0, train_size=300, patch_size=48, batch_size=32, steps=2000,
                depth=17, width=64, batch_norm=False, lr=1e-3, test_size=300, n_test=4, n_tune=6,
                tune_points=11, val_crop=128, log_every=25, ms_ssim_train_win=11,
                ms_ssim_train_scales=3, seeds=3),
}
"""Sizes of ``denoise-losses`` per budget: ``steps`` optimiser steps of Adam (learning
rate ``lr``, cosine decay) on ``batch_size`` random ``patch_size`` patches of the
training images (resized to ``train_size``); a DnCNN of ``depth`` x ``width``, without
BatchNorm (in a 150-step CPU test with the L2 loss, the BatchNorm version, the paper's
choice, was 1.8 dB worse on the test images: it pays off only with long training). The
MS-SSIM *training* loss uses ``ms_ssim_train_scales`` scales (weights
``MS_SSIM_WEIGHTS[:scales]``, renormalised to sum to 1) and a ``ms_ssim_train_win``
window, because patches are far smaller than the 161 px that five scales need.
Evaluation always uses the standard 5-scale MS-SSIM. Each learned method is trained
``seeds`` times (seeds ``0 .. seeds - 1``: initial weights and batches; 1 at ``smoke``
and ``cpu``, 3 at ``gpu``) and its row is the mean over seeds; seed 0 alone is the
single-seed run. A sizes dict without ``seeds`` means one seed. ``workers``: networks
trained at once on the CPU (:func:`denoise_workers`; 1 if absent).

Why 2000 steps of 4 patches at ``cpu``: a step's cost is nearly proportional to its
patches (on 2 AVX2 cores a patch cost 7-13 % more in batches of 4 than of 16), and this
short training is limited by the number of updates more than by the noise of each. With
the L2 loss, on the test images, against tuned TV-Chambolle (seeds 0 and 1): 1000 x 16
patches +1.03 / +1.01 dB; 1500 x 8, +1.04 / +1.05; 2000 x 4 (half the patches),
+1.06 / +1.10 (``benchmarks/README.md``, Chapter 7)."""

# Weights of the combined losses (fixed, stated here and in Chapter 7).
MIX_ALPHA = 0.84  # Zhao et al. 2017's alpha: 0.84 (1 - MS-SSIM) + 0.16 G*L1
SSIM_WEIGHT = 0.01  # MSE + 0.01 (1 - SSIM): the two terms are of similar size near the optimum
TV_WEIGHT = 0.002  # L2 + 0.002 TV(prediction), our pixel-averaged TV: a light term. ID-CNN's
# 0.002 (Wang, Zhang, Patel 2017) multiplies a TV summed over the pixels, HW times stronger
# (see despeckling.despeckle_tv_weight and Chapter 6).


def denoise_sizes(budget: str | None = None) -> dict:
    """The ``denoise-losses`` sizes for ``budget`` (default: the current budget)."""
    return dict(DENOISE_SIZES[get_budget(budget).name])


def denoise_loss(method: str, sizes: dict) -> nn.Module:
    """The training loss of ``method`` (one of :data:`DENOISE_METHODS`).

    Raises
    ------
    ValueError
        For an unknown method.
    ImportError
        If ``lossbook.losses`` does not provide the pieces this loss needs yet.
    """
    ms = ms_ssim_train_kwargs(sizes)

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


def denoise_amp(device: str | torch.device) -> str:
    """The training precision of ``denoise-losses`` on ``device``, for ``fit(amp=...)``.

    ``"bf16"`` on a CPU with bfloat16 matrix units (:func:`lossbook.train.cpu_bf16_is_fast`:
    AMX). There, at the ``cpu`` budget (then 1000 steps of 16 patches), it made the
    experiment 2.4 times faster than float32 (193 s against 466 s), moved the test PSNR
    of the eight losses by -0.10 to +0.04 dB, and kept the best learned method 1.04 dB
    above tuned TV-Chambolle (``benchmarks/README.md``). ``"auto"`` otherwise: float32 on
    every other CPU, bf16 (or fp16) autocast on a GPU. Evaluation is always in float32.
    """
    cpu = torch.device(device).type == "cpu"
    return "bf16" if cpu and cpu_bf16_is_fast() else "auto"


def denoise_workers(sizes: dict, device: str | torch.device, callback: Callable | None,
                    n_jobs: int) -> int:
    """How many networks ``denoise-losses`` trains at once: ``sizes["workers"]`` (2 at
    ``cpu``, else 1) processes on the CPU, each with an equal share of PyTorch's threads.

    On 2 cores, two one-thread processes trained 15-21 % more steps per second than one
    two-thread process (side by side, against one process: steps of 16 patches 106
    against 63-66 ms, of 4 patches 27-28 against 16-17 ms; small convolutions do not
    split well over threads). One (the caller's process, as before) on a GPU, with a
    ``callback`` (it must see every step), with a single thread (``OMP_NUM_THREADS=1``:
    the machine is shared) or a single job.
    """
    if torch.device(device).type != "cpu" or callback is not None:
        return 1
    return max(1, min(int(sizes.get("workers", 1)), n_jobs, torch.get_num_threads()))


def _new_model(sizes: dict, seed: int, device: str | torch.device) -> DnCNN:
    model = make_denoiser(sizes, seed=seed)
    if torch.device(device).type == "cpu":
        # same weights and arithmetic, channels-last memory: PyTorch's CPU (oneDNN)
        # convolutions are 15-20 % faster per training step in that layout
        model = model.to(memory_format=torch.channels_last)
    return model


def _fit_kwargs(sizes: dict) -> dict:
    return dict(steps=sizes["steps"], batch_size=sizes["batch_size"], lr=sizes["lr"],
                lr_schedule="cosine", log_every=sizes["log_every"])


def _sampler(sizes: dict, device: str | torch.device) -> PatchSampler:
    train = load_images("train", sizes["train_size"])
    return PatchSampler(train, functools.partial(add_gaussian_noise, sigma=sizes["sigma"]),
                        sizes["patch_size"], device=device)


def _fit_job(job: tuple) -> tuple:
    """Train one ``(method, seed)`` network on the CPU in a worker process (see
    :func:`_fit_in_processes`); returns ``(method, seed, state_dict, history)``."""
    method, seed, sizes, amp, val, checkpoint, threads = job
    torch.set_num_threads(threads)
    model = _new_model(sizes, seed, "cpu")
    h = fit(model, denoise_loss(method, sizes), _sampler(sizes, "cpu"), device="cpu",
            amp=amp, val_data=val, checkpoint=checkpoint, seed=seed, progress=False,
            **_fit_kwargs(sizes))
    return method, seed, model.state_dict(), h


def _fit_in_processes(jobs: list[tuple[str, int]], sizes: dict, amp: str, val: tuple,
                      workdir: Path, workers: int, progress: bool) -> dict:
    """Train ``jobs`` (``(method, seed)``) in ``workers`` spawned processes at once.

    Each job is the same training as in the caller's process (same seed, batches and
    checkpoint), with ``torch.get_num_threads() // workers`` threads. Returns
    ``{(method, seed): (state_dict, history)}``.
    """
    threads = max(1, torch.get_num_threads() // workers)
    ctx = multiprocessing.get_context("spawn")  # fork is unsafe once PyTorch has threads
    out = {}
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(_fit_job, (method, seed, sizes, amp, val,
                                          workdir / denoise_checkpoint_name(method, seed),
                                          threads))
                   for method, seed in jobs]
        if progress:
            print(f"training {len(jobs)} networks, {workers} at a time "
                  f"({threads} thread(s) each)", flush=True)
        for future in concurrent.futures.as_completed(futures):
            method, seed, state, h = future.result()
            out[method, seed] = (state, h)
            if progress:
                print(f"  trained {method} (seed {seed}) in {h.seconds:.0f} s", flush=True)
    return out


def denoise_seeds(sizes: dict) -> int:
    """How many seeds each learned method is trained with (``sizes["seeds"]``, default 1)."""
    n = int(sizes.get("seeds", 1))
    if n < 1:
        raise ValueError(f"sizes['seeds'] must be at least 1; got {n}.")
    return n


def denoise_checkpoint_name(method: str, seed: int = 0) -> str:
    """The checkpoint file of ``method`` trained with ``seed``: ``l1.pt`` for seed 0 (the
    name a single-seed run has always used), ``l1_seed1.pt`` for seed 1, ..."""
    return f"{slug(method)}.pt" if seed == 0 else f"{slug(method)}_seed{seed}.pt"


def _mean_over_seeds(evals: list[dict]) -> dict:
    """One :func:`evaluate` result from one per seed: means over seeds of every metric and
    of every per-image value; the outputs are seed 0's. With one seed: that seed's."""
    if len(evals) == 1:
        return evals[0]
    out: dict = {m: float(np.mean([e[m] for e in evals])) for m in METRICS}
    out["per_image"] = {m: np.mean([e["per_image"][m] for e in evals], axis=0).tolist()
                        for m in METRICS}
    out["outputs"] = evals[0]["outputs"]
    return out


def _seed_spread(evals: list[dict]) -> dict:
    """Per-seed values, their sample standard deviation (``ddof=1``) and per-seed per-image
    scores, for a method trained with more than one seed (nothing for one seed)."""
    if len(evals) < 2:
        return {}
    out: dict = {}
    for m in METRICS:
        values = [float(e[m]) for e in evals]
        out[f"{m}_per_seed"] = values
        out[f"{m}_seed_sd"] = float(np.std(values, ddof=1))
    for m in ("psnr", "ssim"):
        out[f"{m}_per_image_per_seed"] = [list(e["per_image"][m]) for e in evals]
    return out


def _seeds_note(n: int) -> str:
    if n == 1:
        return "Learned methods: one training run each (seed 0)."
    return (f"Learned methods: the mean over {n} training seeds (0 to {n - 1}; a seed sets "
            "the initial weights and the training batches); per-seed values in "
            "*_per_seed, their standard deviation in *_seed_sd. Per-image values are "
            "averaged over the seeds; crops and curves show seed 0.")


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
    sampler = _sampler(sizes, device)

    rows, outputs, histories, models, curves = [], {}, {}, {}, {}

    def add_row(method: str, kind: str, ev: dict, **extra) -> None:
        outputs[method] = ev.pop("outputs")
        rows.append({"method": method, "kind": kind,
                     **{m: ev[m] for m in METRICS},
                     "psnr_per_image": ev["per_image"]["psnr"],
                     "ssim_per_image": ev["per_image"]["ssim"], **extra})

    add_row("noisy input", "baseline", evaluate(lambda x: x, pairs, return_outputs=True))
    g_sigma, g_tune = tune_gaussian_filter(sizes)
    add_row("Gaussian filter", "baseline",
            evaluate(lambda x: gaussian_blur(x, g_sigma), pairs, return_outputs=True),
            parameter=g_sigma)
    tv_w, tv_tune = tune_tv_chambolle(sizes)
    add_row("TV (Chambolle)", "baseline",
            evaluate(lambda x: tv_chambolle(x, tv_w), pairs, return_outputs=True),
            parameter=tv_w)

    n_seeds = denoise_seeds(sizes)
    amp = denoise_amp(device)
    precision = resolve_amp(amp, torch.device(device))  # what fit will train in
    jobs = [(method, seed) for method in methods_ok for seed in range(n_seeds)]
    workers = denoise_workers(sizes, device, callback, len(jobs))
    trained = (_fit_in_processes(jobs, sizes, amp, val, workdir, workers, progress)
               if workers > 1 else {})
    for method in methods_ok:
        evals, hists = [], []
        for seed in range(n_seeds):
            model = _new_model(sizes, seed, device)
            if (method, seed) in trained:
                state, h = trained[method, seed]
                model.load_state_dict(state)
            else:
                cb = None if callback is None else functools.partial(callback, method)
                h = fit(model, denoise_loss(method, sizes), sampler, device=device, amp=amp,
                        val_data=val,
                        checkpoint=workdir / denoise_checkpoint_name(method, seed),
                        seed=seed, callback=cb, progress=progress, **_fit_kwargs(sizes))
            evals.append(evaluate(model, pairs, device=device, return_outputs=True))
            hists.append(h)
            if seed == 0:  # models, histories, outputs, curves and figures: seed 0's
                histories[method], models[method] = h, model
                curves[method] = {"step": h.step, "loss": h.loss, "components": h.components,
                                  "val_step": h.val_step, "val_psnr": h.val.get("psnr", [])}
        add_row(method, "learned", _mean_over_seeds(evals),
                final_loss=float(np.mean([h.final_loss for h in hists])),
                train_seconds=float(np.mean([h.seconds for h in hists])),
                images_per_second=float(np.mean([h.images_per_second for h in hists])),
                **_seed_spread(evals))

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
                  f"PSNR on {c}x{c} centre crops of the noisy test images. "
                  + _seeds_note(n_seeds)),
        "seeds": n_seeds,
        "precision": "float32" if precision == "off" else f"{precision} autocast",
        "training_processes": workers,
        "results": rows,
        "curves": curves,
    }
    return RunResult(payload=payload, outputs=outputs, histories=histories, models=models,
                     pairs=pairs)


def denoise_findings(result: RunResult | dict) -> list[str]:
    """The chapter's conclusions, computed from the numbers of a ``denoise-losses`` run.

    Each sentence states a comparison as measured (never assumed), with a paired
    bootstrap interval over the test images (:func:`lossbook.stats.compare_methods`), and
    calls a difference only where that interval excludes zero: the best learned method
    against tuned TV-Chambolle, L1 against L2 on PSNR, and the best learned method on SSIM
    against the Mix loss of Zhao et al. 2017. Rows without per-image values (results
    written by older versions) fall back to the means.

    With several training seeds (rows with ``psnr_per_seed`` ...) the intervals are over
    test images on the seed-averaged per-image scores, and each comparison also prints
    the across-seed spread of the compared methods (range, standard deviation and the
    difference seed by seed), so that seed variation is read next to the image bootstrap;
    with one seed nothing is added.
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

    n_seeds = max((len(rows[m].get("psnr_per_seed", [0])) for m in learned), default=1)
    if n_seeds > 1:
        out.append(
            f"Each learned row is the mean over {n_seeds} training seeds (initial weights "
            "and batches). The intervals below are over test images, on per-image scores "
            "averaged over the seeds, so they do not contain the seed-to-seed variation; "
            "that is printed next to each comparison (per-seed range, standard deviation, "
            "and the difference seed by seed: seed s of both methods starts from the same "
            "weights and sees the same batches).")

    def compare(a: str, b: str, metric: str, label: str, unit: str) -> str:
        per = f"{metric}_per_image"
        if per in rows[a] and per in rows[b]:
            (c,) = compare_methods({a: rows[a][per], b: rows[b][per]}, metric=label,
                                   unit=unit, digits=2 if unit else 4)
            return c["sentence"] + seed_spread(a, b, metric, unit)
        d = rows[a][metric] - rows[b][metric]
        return (f"{a} minus {b} on {label}: {d:+.4g} on the mean (no per-image values "
                "stored, so no interval)." + seed_spread(a, b, metric, unit))

    def seed_spread(a: str, b: str, metric: str, unit: str) -> str:
        """Across-seed spread of ``a`` and ``b`` (empty unless one of them has seeds)."""
        key = f"{metric}_per_seed"
        if key not in rows[a] and key not in rows[b]:
            return ""
        digits, u = (2, f" {unit}") if unit else (4, "")
        parts = []
        for m in (a, b):
            if key in rows[m]:
                v = rows[m][key]
                sd = rows[m].get(f"{metric}_seed_sd", float(np.std(v, ddof=1)))
                parts.append(f"{m} {min(v):.{digits}f} to {max(v):.{digits}f}{u} "
                             f"(sd {sd:.{digits}f})")
            else:
                parts.append(f"{m} does not depend on the seed")
        va = rows[a].get(key, [rows[a][metric]] * n_seeds)
        vb = rows[b].get(key, [rows[b][metric]] * n_seeds)
        diffs = ", ".join(f"{x - y:+.{digits}f}" for x, y in zip(va, vb, strict=False))
        return (f" Across {n_seeds} seeds: " + "; ".join(parts)
                + f"; {a} minus {b} seed by seed: {diffs}{u}.")

    tv = rows["TV (Chambolle)"]["psnr"]
    best = max(learned, key=lambda m: rows[m]["psnr"])
    d = rows[best]["psnr"] - tv
    out.append(
        f"Best learned denoiser on PSNR: {best} ({rows[best]['psnr']:.2f} dB), "
        f"{abs(d):.2f} dB {'above' if d >= 0 else 'below'} tuned TV-Chambolle ({tv:.2f} dB). "
        + compare(best, "TV (Chambolle)", "psnr", "PSNR", "dB"))
    if "L1" in rows and "L2" in rows:
        diff = rows["L1"]["psnr"] - rows["L2"]["psnr"]
        per = np.array(rows["L1"]["psnr_per_image"]) - np.array(rows["L2"]["psnr_per_image"])
        out.append(
            f"L1 vs L2 on PSNR: the L1-trained net is {abs(diff):.2f} dB "
            f"{'better' if diff > 0 else 'worse'} than the L2-trained one on average "
            f"(better on {int((per > 0).sum())} of {per.size} test images), although PSNR "
            "is exactly what L2 optimises. " + compare("L1", "L2", "psnr", "PSNR", "dB"))
    for metric, label in (("ssim", "SSIM"), ("ms_ssim", "MS-SSIM")):
        ranked = sorted(learned, key=lambda m: rows[m][metric], reverse=True)
        sentence = (f"Best learned on {label}: {ranked[0]} ({rows[ranked[0]][metric]:.4f})")
        if "Mix" in learned:
            sentence += ("; the Mix loss is the best" if ranked[0] == "Mix" else
                         f"; the Mix loss ranks {ranked.index('Mix') + 1} of {len(ranked)}")
        sentence += "."
        if metric == "ssim" and "Mix" in learned and ranked[0] != "Mix":
            sentence += " " + compare(ranked[0], "Mix", "ssim", "SSIM", "")
        elif metric == "ssim" and len(ranked) > 1:
            sentence += " " + compare(ranked[0], ranked[1], "ssim", "SSIM", "")
        out.append(sentence)
    return out


def denoise_curves_figure(result: RunResult):
    """Validation PSNR of every loss against the step, and each training loss (of seed 0
    when the methods were trained with several seeds)."""
    import matplotlib.pyplot as plt

    from ..viz import plot_curves

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
    """Zoomed crops of one test image: clean, noisy, baselines and each learned method.

    With several training seeds the learned methods' crops (and the PSNR in their titles)
    are those of seed 0, the network in ``result.models``; the table's rows are means over
    the seeds.
    """
    from ..viz import show_images

    noisy, clean = result.pairs
    methods = list(methods or [r["method"] for r in result.rows if r["method"] != "noisy input"])
    side = clean.shape[-1]
    if crop is None:
        k = max(24, side // 4)
        crop = (slice(side // 2 - k // 2, side // 2 + k // 2),
                slice(side // 2 - k // 2, side // 2 + k // 2))
    images = [clean[image], noisy[image].clamp(0, 1)] + [result.outputs[m][image]
                                                         for m in methods]

    def seed0_psnr(m: str) -> float:  # the PSNR of the image shown: seed 0's
        r = result.row(m)
        return r.get("psnr_per_image_per_seed", [r["psnr_per_image"]])[0][image]

    titles = ["clean", f"noisy\n{seed0_psnr('noisy input'):.2f} dB"]
    titles += [f"{m}\n{seed0_psnr(m):.2f} dB" for m in methods]
    name = result.payload.get("test_images", ["?"] * (image + 1))[image]
    seeds = result.payload.get("seeds", 1)
    return show_images(images, titles, crop=crop, ncols=min(6, len(images)), size=2.0,
                       suptitle=f"Zoomed crop of test image '{name}' (PSNR of the full image"
                       + (f"; learned methods: seed 0 of {seeds})" if seeds > 1 else ")"))


EXPERIMENT = register(Experiment(
    name="denoise-losses",
    title="One DnCNN, eight losses: Gaussian denoising (sigma 25/255)",
    sizes=DENOISE_SIZES,
    run=_run_denoise_losses,
    chapter="notebooks/07_denoising_losses",
    figures={"curves": denoise_curves_figure, "crops": denoise_crops_figure},
    findings=denoise_findings,
))
