"""Experiment ``sr-losses`` (Chapter 9): one EDSR-style network, every loss of the book.

One small EDSR (Lim et al. 2017) learns bicubic super-resolution (x2 at the ``cpu``
budget, x4 at ``gpu``) with each of the book's losses -- L1, L2, Charbonnier, Mix
(L1 + MS-SSIM), L1 + perceptual, content + style, and L1 + perceptual + adversarial
(SRGAN-style) -- and is evaluated on the held-out test images (full images) against
bicubic and Lanczos interpolation. Metrics follow the SR literature's conventions,
stated in every result: PSNR and SSIM on the BT.601 luma (Y) with ``scale`` border
pixels shaved, MS-SSIM where the image allows five scales, the high-frequency
sharpness ratio of Chapter 12's :mod:`lossbook.spectral` and a feature distance.

The feature-based methods start from the L1 network and are fine-tuned (as SRGAN
starts from SRResNet and ESRGAN from its PSNR-oriented model), so they get
``finetune_steps`` more steps than the pixel losses; the notes of every result say so.

    python -m lossbook run sr-losses --budget cpu --out runs
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import losses as L
from ..data import (
    TEST_IMAGES,
    TRAIN_IMAGES,
    SRPatchSampler,
    bicubic_downsample,
    bicubic_upsample,
    lanczos_upsample,
    load_images,
    sr_pairs,
)
from ..metrics import sr_ms_ssim, sr_psnr, sr_ssim, sr_view
from ..models import EDSR
from ..train import fit, load_checkpoint
from .core import (
    Experiment,
    RunResult,
    mix_l1_sigma,
    ms_ssim_train_kwargs,
    register,
    score_pairs,
    slug,
)

__all__ = [
    "SR_SIZES",
    "SR_METHODS",
    "SR_PIXEL_METHODS",
    "SR_FEATURE_METHODS",
    "SR_CONTROL",
    "SR_BASELINES",
    "SR_METRICS",
    "SR_MIX_ALPHA",
    "sr_sizes",
    "sr_loss",
    "available_sr_losses",
    "make_sr_net",
    "make_sr_discriminator",
    "sr_test_pairs",
    "evaluate_sr",
    "sr_findings",
    "sr_conventions_table",
    "sr_curves_figure",
    "sr_crops_figure",
    "sr_plane_figure",
    "sr_difference_figure",
    "pixel_shuffle_figure",
    "ill_posed_demo",
    "ill_posed_figure",
]

SR_PIXEL_METHODS: tuple[str, ...] = ("L1", "L2", "Charbonnier", "Mix")
"""Losses trained from scratch (pixel and structural)."""

SR_FEATURE_METHODS: tuple[str, ...] = (
    "L1+perceptual", "content+style", "L1+perceptual+adversarial",
)
"""Losses fine-tuned from the L1 network (feature, texture and adversarial terms)."""

SR_CONTROL = "L1 (continued)"
"""The fair reference of the fine-tuned methods: the L1 network trained ``finetune_steps``
more steps with L1 alone, at the same learning rate, so that a feature method's gain or
loss is not just the effect of more training."""

SR_METHODS: tuple[str, ...] = SR_PIXEL_METHODS + (SR_CONTROL,) + SR_FEATURE_METHODS
"""Every training loss of ``sr-losses``, in table order."""

SR_BASELINES: tuple[str, ...] = ("bicubic", "Lanczos")

SR_METRICS: tuple[str, ...] = ("psnr_y", "ssim_y", "ms_ssim_y", "psnr_rgb", "sharpness",
                               "feature_distance")
"""Columns of the results table (see :func:`evaluate_sr`)."""

SR_MIX_ALPHA = 0.84  # Zhao et al. 2017: 0.84 (1 - MS-SSIM) + 0.16 G*L1

SR_SIZES: dict[str, dict] = {
    # smoke: only shows that the code runs. HR test images of 168 px keep 164 px after
    # shaving 2, so the MS-SSIM metric keeps its five scales (sides must exceed 160).
    "smoke": dict(scale=2, color=True, train_size=96, patch_size=32, batch_size=4, steps=6,
                  finetune_steps=4, features=8, blocks=1, res_scale=0.1, bicubic_skip=True,
                  lr=1e-3, finetune_lr=1e-4, test_size=168, n_test=2, val_crop=48,
                  log_every=2, ms_ssim_train_win=7, ms_ssim_train_scales=3,
                  perceptual_weight=0.1, style_weight=10.0, adversarial_weight=1e-3,
                  feature_net="offline", d_lr=1e-4, d_base=8, d_layers=2),
    "cpu": dict(scale=2, color=True, train_size=256, patch_size=48, batch_size=16, steps=400,
                finetune_steps=150, features=32, blocks=4, res_scale=0.1, bicubic_skip=True,
                lr=2e-3, finetune_lr=1e-4, test_size=256, n_test=4, val_crop=96,
                log_every=10, ms_ssim_train_win=7, ms_ssim_train_scales=3,
                perceptual_weight=0.1, style_weight=10.0, adversarial_weight=1e-3,
                feature_net="offline", d_lr=1e-4, d_base=32, d_layers=3),
    # gpu: x4 with an EDSR of 16 blocks x 64 (EDSR-baseline's size); not yet timed on a GPU.
    "gpu": dict(scale=4, color=True, train_size=300, patch_size=96, batch_size=16,
                steps=3000, finetune_steps=1000, features=64, blocks=16, res_scale=0.1,
                bicubic_skip=True, lr=5e-4, finetune_lr=1e-4, test_size=300, n_test=4,
                val_crop=128, log_every=25, ms_ssim_train_win=11, ms_ssim_train_scales=3,
                perceptual_weight=0.1, style_weight=10.0, adversarial_weight=1e-3,
                feature_net="auto", d_lr=1e-4, d_base=64, d_layers=3),
}
"""Sizes of ``sr-losses`` per budget: ``steps`` Adam steps (learning rate ``lr``, cosine
decay) on ``batch_size`` random ``patch_size`` HR patches of the training images (RGB,
resized to ``train_size``) and their bicubic (antialiased) LR versions at ``scale``; the
feature-based methods then fine-tune the L1 network for ``finetune_steps`` steps at the
constant ``finetune_lr`` (the adversarial one against a PatchGAN of ``d_base`` channels
and ``d_layers`` stride-2 layers, learning rate ``d_lr``). EDSR of ``blocks`` x
``features`` with ``res_scale``; with ``bicubic_skip`` it adds the bicubic enlargement
of its input (it learns the missing detail, which converges far faster in short runs).
Test: the first ``n_test`` test images at ``test_size``. Loss weights:
``perceptual_weight`` (feature term next to L1), ``style_weight`` (Gram term of content
+ style), ``adversarial_weight`` (SRGAN's 1e-3). ``feature_net`` is passed to
:func:`lossbook.models.load_feature_net`: the ``smoke`` and ``cpu`` budgets use the
offline network (VGG16 layout at 1/4 width, random weights: no 528 MB download, and fast
enough for a CPU), ``gpu`` ImageNet VGG16 where it can be fetched."""


def sr_sizes(budget: str | None = None) -> dict:
    """The ``sr-losses`` sizes for ``budget`` (default: the current budget)."""
    from ..budget import get_budget

    return dict(SR_SIZES[get_budget(budget).name])


@functools.cache
def _feature_net(kind: str):
    from ..models import load_feature_net

    return load_feature_net(kind)


def _need(method: str, *names: str) -> list:
    missing = [n for n in names if not hasattr(L, n)]
    if missing:
        raise ImportError(f"loss {method!r} needs lossbook.losses.{', '.join(missing)}, which "
                          "this version of lossbook does not have.")
    return [getattr(L, n) for n in names]


def sr_loss(method: str, sizes: dict) -> nn.Module:
    """The training loss of ``method`` (one of :data:`SR_METHODS`; for the adversarial
    method, the generator's *content* part: L1 + perceptual).

    Raises
    ------
    ValueError
        For an unknown method.
    ImportError
        If ``lossbook.losses`` lacks the pieces this loss needs.
    """
    if method in ("L1", SR_CONTROL):
        return L.L1Loss()
    if method == "L2":
        return L.MSELoss()
    if method == "Charbonnier":
        return L.CharbonnierLoss(eps=1e-3)
    if method == "Mix":
        (cls,) = _need(method, "MixLoss")
        return cls(alpha=SR_MIX_ALPHA, l1_sigma=mix_l1_sigma(sizes),
                   **ms_ssim_train_kwargs(sizes))
    if method in ("L1+perceptual", "L1+perceptual+adversarial"):
        comb, perc = _need(method, "CombinedLoss", "PerceptualLoss")
        return comb({"l1": (1.0, L.L1Loss()),
                     "perceptual": (sizes["perceptual_weight"],
                                    perc(_feature_net(sizes["feature_net"])))})
    if method == "content+style":
        (cls,) = _need(method, "ContentStyleLoss")
        return cls(_feature_net(sizes["feature_net"]), pixel_weight=1.0,
                   content_weight=sizes["perceptual_weight"],
                   style_weight=sizes["style_weight"], pixel="l1")
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(SR_METHODS)}.")


def available_sr_losses(sizes: dict | None = None) -> tuple[list[str], dict[str, str]]:
    """``(available methods, {missing method: reason})`` for this version of lossbook."""
    sizes = sizes or SR_SIZES["smoke"]
    ok, missing = [], {}
    for m in SR_METHODS:
        try:
            if m in SR_FEATURE_METHODS:
                _need(m, "PerceptualLoss", "ContentStyleLoss", "CombinedLoss")
            if m == "L1+perceptual+adversarial":
                _need(m, "generator_loss", "discriminator_loss")
                try:
                    from ..train_adversarial import fit_adversarial  # noqa: F401
                except ImportError as err:
                    raise ImportError("the adversarial method needs "
                                      "lossbook.train_adversarial.fit_adversarial.") from err
            elif m in SR_PIXEL_METHODS:
                sr_loss(m, sizes)
            ok.append(m)
        except ImportError as err:
            missing[m] = str(err)
    return ok, missing


def make_sr_net(sizes: dict, seed: int = 0) -> EDSR:
    """The EDSR every loss starts from: the same initial weights for every method."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return EDSR(scale=sizes["scale"], channels=3 if sizes["color"] else 1,
                    features=sizes["features"], blocks=sizes["blocks"],
                    res_scale=sizes["res_scale"], bicubic_skip=sizes["bicubic_skip"])


def sr_test_pairs(sizes: dict, *, antialias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out test pairs ``(lr, hr)``: the first ``n_test`` test images at
    ``test_size`` (HR) and their bicubic reductions by ``scale``."""
    return sr_pairs(TEST_IMAGES[: sizes["n_test"]], sizes["test_size"], sizes["scale"],
                    color=sizes["color"], antialias=antialias)


# ------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_sr(
    model_or_fn: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    pairs: tuple[torch.Tensor, torch.Tensor],
    scale: int,
    *,
    device: str | torch.device | None = None,
    feature_net: nn.Module | None = None,
    return_outputs: bool = False,
) -> dict:
    r"""Score a super-resolution model (or function) on full test images, one by one.

    Every output is computed on the whole LR image, clipped to ``[0, 1]`` and scored
    under the SR convention (BT.601 luma, ``scale`` pixels shaved from each border; see
    :func:`lossbook.metrics.sr_psnr`):

    - ``psnr_y``, ``ssim_y``: PSNR and SSIM (11x11 Gaussian window) on Y, shaved;
    - ``ms_ssim_y``: 5-scale MS-SSIM on Y, shaved, if both sides then exceed 160 px
      (else NaN);
    - ``psnr_rgb``: PSNR on all channels, nothing shaved (what a plain PSNR gives);
    - ``sharpness``: :func:`lossbook.spectral.sharpness_ratio` of the Y channels with the
      cutoff at the LR image's Nyquist frequency, ``0.5 / scale`` cycles per HR pixel:
      the share of power above what the LR image can hold, relative to the HR image's
      (1 = as much fine detail as the truth, < 1 blurrier, > 1 more);
    - ``feature_distance``: :func:`lossbook.losses.feature_loss` at ``relu2_2`` of
      ``feature_net`` (NaN without one): a distance in the feature space the perceptual
      losses use (lower = closer).

    Table values are the means of the per-image values (PSNR: mean of per-image PSNR).

    Returns
    -------
    dict
        ``{metric: mean, ..., "per_image": {metric: [values]}}`` (plus ``"outputs"``,
        ``(N, C, H, W)`` on the CPU).
    """
    from ..spectral import sharpness_ratio

    lr, hr = pairs
    side = min(hr.shape[-2:]) - 2 * scale
    conv = dict(channel="y", shave=scale)
    if isinstance(model_or_fn, nn.Module) and device is None:
        p = next(model_or_fn.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device or "cpu")

    def features(y: torch.Tensor, x: torch.Tensor) -> float:
        if feature_net is None:
            return float("nan")
        return float(L.feature_loss(y.to(device), x.to(device), feature_net, layers=("relu2_2",)))

    scorers = {
        "psnr_y": lambda y, x: sr_psnr(y, x, **conv),
        "ssim_y": lambda y, x: sr_ssim(y, x, **conv),
        "ms_ssim_y": lambda y, x: sr_ms_ssim(y, x, **conv) if side > 160 else float("nan"),
        "psnr_rgb": lambda y, x: sr_psnr(y, x, channel="rgb", shave=0),
        "sharpness": lambda y, x: sharpness_ratio(sr_view(y, **conv), sr_view(x, **conv),
                                                  cutoff=0.5 / scale)[0],
        "feature_distance": features,
    }
    return score_pairs(model_or_fn, (lr, hr), scorers, clip=(0.0, 1.0), device=device,
                       return_outputs=return_outputs)


def _val_pairs(pairs: tuple[torch.Tensor, torch.Tensor], scale: int, crop: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre crops of the test pairs, aligned (``crop`` HR pixels, ``crop // scale`` LR)."""
    lr, hr = pairs
    c = crop - crop % scale
    top = ((hr.shape[-1] - c) // 2) // scale * scale
    t = top // scale
    return (lr[..., t:t + c // scale, t:t + c // scale], hr[..., top:top + c, top:top + c])


# ------------------------------------------------------------------------- the run


def _run_sr_losses(sizes: dict, *, workdir: Path, device: torch.device,
                   progress: bool = True, callback: Callable | None = None,
                   methods: Sequence[str] | None = None) -> RunResult:
    scale = sizes["scale"]
    methods_ok, missing = available_sr_losses(sizes)
    if methods is not None:
        methods_ok = [m for m in methods_ok if m in methods]
    tuned = SR_FEATURE_METHODS + (SR_CONTROL,)
    if any(m in tuned for m in methods_ok) and "L1" not in methods_ok:
        methods_ok = ["L1"] + methods_ok  # the feature methods start from the L1 net
    pairs = sr_test_pairs(sizes)
    val = _val_pairs(pairs, scale, sizes["val_crop"])
    train = load_images(list(TRAIN_IMAGES), sizes["train_size"], color=sizes["color"])
    sampler = SRPatchSampler(train, scale, sizes["patch_size"], device)
    fnet = None
    if hasattr(L, "feature_loss"):
        fnet = _feature_net(sizes["feature_net"]).to(device)

    rows, outputs, histories, models, curves = [], {}, {}, {}, {}

    def add_row(method: str, kind: str, ev: dict, **extra) -> None:
        outputs[method] = ev.pop("outputs")
        rows.append({"method": method, "kind": kind, **{m: ev[m] for m in SR_METRICS},
                     "per_image": ev["per_image"], **extra})

    ev = functools.partial(evaluate_sr, pairs=pairs, scale=scale, feature_net=fnet,
                           return_outputs=True)
    add_row("bicubic", "baseline", ev(lambda x: bicubic_upsample(x, scale), device="cpu"))
    add_row("Lanczos", "baseline", ev(lambda x: lanczos_upsample(x, scale), device="cpu"))

    def record(method: str, h, model: nn.Module, **extra) -> None:
        histories[method], models[method] = h, model
        add_row(method, "learned", ev(model, device=device), final_loss=h.final_loss,
                train_seconds=h.seconds, images_per_second=h.images_per_second, **extra)
        curves[method] = {"step": h.step, "loss": h.loss, "components": h.components,
                          "val_step": h.val_step, "val_psnr": h.val.get("psnr", [])}

    common = dict(batch_size=sizes["batch_size"], lr_schedule="cosine", device=device,
                  val_data=val, log_every=sizes["log_every"], seed=0, progress=progress)
    for method in [m for m in methods_ok if m in SR_PIXEL_METHODS]:
        model = make_sr_net(sizes)
        cb = None if callback is None else functools.partial(callback, method)
        h = fit(model, sr_loss(method, sizes), sampler, steps=sizes["steps"], lr=sizes["lr"],
                checkpoint=workdir / f"{slug(method)}.pt", callback=cb, **common)
        record(method, h, model, steps=sizes["steps"])

    for method in [m for m in methods_ok if m in tuned]:
        model = make_sr_net(sizes)
        model.load_state_dict(load_checkpoint(workdir / "l1.pt")["model"])
        cb = None if callback is None else functools.partial(callback, method)
        if method == "L1+perceptual+adversarial":
            h = _fit_adversarial(model, sizes, sampler, workdir, cb, common)
        else:
            h = fit(model, sr_loss(method, sizes), sampler, steps=sizes["finetune_steps"],
                    lr=sizes["finetune_lr"], checkpoint=workdir / f"{slug(method)}.pt",
                    callback=cb, **{**common, "lr_schedule": None})
        record(method, h, model, steps=sizes["steps"] + sizes["finetune_steps"],
               finetuned_from="L1")

    payload = {
        "methods": list(methods_ok),
        "missing_losses": missing,
        "metrics": list(SR_METRICS),
        "scale": scale,
        "test_images": list(TEST_IMAGES[: sizes["n_test"]]),
        "loss_weights": {"mix_alpha": SR_MIX_ALPHA, "perceptual": sizes["perceptual_weight"],
                         "style": sizes["style_weight"],
                         "adversarial": sizes["adversarial_weight"]},
        "feature_net": None if fnet is None else getattr(fnet, "source", str(type(fnet))),
        "notes": (f"x{scale} bicubic SR (LR made with antialiasing). Metrics on "
                  f"{sizes['n_test']} full {sizes['test_size']}x{sizes['test_size']} test "
                  "images, outputs clipped to [0, 1]; each value is the mean over images of "
                  f"the per-image metric. psnr_y/ssim_y/ms_ssim_y: BT.601 luma, {scale} px "
                  "shaved per border; psnr_rgb: all channels, nothing shaved. Sharpness: "
                  f"high-frequency share above {0.5 / scale:g} cycles/px relative to the HR "
                  "image's. Feature distance: relu2_2 feature loss. The feature-based methods "
                  f"fine-tune the L1 network for {sizes['finetune_steps']} more steps."),
        "results": rows,
        "curves": curves,
    }
    return RunResult(payload=payload, outputs=outputs, histories=histories, models=models,
                     pairs=pairs)


def make_sr_discriminator(sizes: dict, seed: int = 1) -> nn.Module:
    """The PatchGAN discriminator of the adversarial method (Isola et al. 2017): ``d_base``
    channels, ``d_layers`` stride-2 layers, instance normalisation (batch statistics of a
    small batch would couple real and fake images), seeded."""
    from ..models import PatchGANDiscriminator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PatchGANDiscriminator(3 if sizes["color"] else 1, base=sizes["d_base"],
                                     n_layers=sizes["d_layers"], norm="instance")


def _fit_adversarial(model, sizes, sampler, workdir, cb, common):
    """SRGAN-style fine-tuning: L1 + perceptual content loss + ``adversarial_weight`` x the
    non-saturating GAN loss against a PatchGAN (:func:`lossbook.train_adversarial.
    fit_adversarial`, alternating one D and one G step)."""
    from ..train_adversarial import fit_adversarial

    kw = {k: v for k, v in common.items() if k != "lr_schedule"}
    return fit_adversarial(model, make_sr_discriminator(sizes),
                           sr_loss("L1+perceptual+adversarial", sizes), sampler,
                           steps=sizes["finetune_steps"], adv_weight=sizes["adversarial_weight"],
                           gan_kind="nonsaturating", lr_g=sizes["finetune_lr"],
                           lr_d=sizes["d_lr"],
                           checkpoint=workdir / f"{slug('L1+perceptual+adversarial')}.pt",
                           callback=cb, **kw)


# ------------------------------------------------------------------------- findings


def _rows(result: RunResult | dict) -> tuple[dict, dict]:
    p = result.payload if isinstance(result, RunResult) else result
    return p, {r["method"]: r for r in p["results"]}


def _paired(rows: dict, a: str, b: str, metric: str = "psnr_y") -> dict:
    from ..stats import paired_bootstrap

    return paired_bootstrap(rows[a]["per_image"][metric], rows[b]["per_image"][metric], seed=0)


def _diff_sentence(d: dict, unit: str, digits: int = 2) -> str:
    """'+0.84 dB [0.51, 1.20]; the interval excludes zero' (or does not)."""
    verdict = ("the 95 % interval excludes zero" if d["low"] > 0 or d["high"] < 0 else
               "the 95 % interval includes zero, so the test images do not settle it")
    return (f"{d['mean']:+.{digits}f}{unit} (paired bootstrap over test images, 95 % interval "
            f"[{d['low']:+.{digits}f}, {d['high']:+.{digits}f}]{unit}; {verdict})")


def sr_findings(result: RunResult | dict) -> list[str]:
    """The chapter's conclusions, computed from the numbers of an ``sr-losses`` run.

    Every comparison carries a paired bootstrap interval over the test images
    (:func:`lossbook.stats.paired_bootstrap`) and is called a difference only where the
    interval excludes zero: the best pixel-loss network against bicubic (the +1 dB
    target), which loss wins PSNR, which output is sharpest, what the feature and
    adversarial terms cost in PSNR and buy in sharpness and feature distance, and
    whether content + style helps over the plain perceptual loss.
    """
    p, rows = _rows(result)
    learned = [m for m in p["methods"] if m in rows]
    out = []
    if p.get("budget") == "smoke":
        out.append("Smoke budget: the networks barely trained, so the comparisons below only "
                   "show that the code runs; they are not results.")
    if not learned:
        return out + ["No learned method ran."]
    scale = p.get("scale", 2)
    out.append(f"Scores: PSNR and SSIM on the BT.601 luma (Y) with {scale} px shaved per "
               "border, mean over the test images.")
    pixel = [m for m in learned if m in SR_PIXEL_METHODS]
    if pixel:
        best = max(pixel, key=lambda m: rows[m]["psnr_y"])
        d = _paired(rows, best, "bicubic")
        out.append(
            f"Best pixel-loss network on PSNR: {best} ({rows[best]['psnr_y']:.2f} dB) vs "
            f"bicubic ({rows['bicubic']['psnr_y']:.2f} dB): {_diff_sentence(d, ' dB')}. The "
            f"target of at least +1 dB is {'met' if d['mean'] >= 1 else 'not met'} at this "
            "budget.")
    ranked = sorted(learned, key=lambda m: rows[m]["psnr_y"], reverse=True)
    if len(ranked) > 1:
        d = _paired(rows, ranked[0], ranked[1])
        out.append(f"Highest PSNR of all: {ranked[0]}; its lead over the runner-up "
                   f"({ranked[1]}) is {_diff_sentence(d, ' dB')}.")
    sharp = max(learned, key=lambda m: rows[m]["sharpness"])
    out.append(
        "High-frequency detail (sharpness ratio, 1 = as much as the true HR image): "
        + ", ".join(f"{m} {rows[m]['sharpness']:.2f}" for m in ["bicubic", *learned])
        + f". The sharpest learned output is {sharp}'s.")
    ref = SR_CONTROL if SR_CONTROL in rows else "L1"
    if ref in rows:
        if ref == SR_CONTROL:
            d = _paired(rows, SR_CONTROL, "L1")
            out.append(f"The control, L1 trained for the fine-tuning steps too, vs L1: PSNR "
                       f"{_diff_sentence(d, ' dB')}. The fine-tuned methods are compared with "
                       "this control, so extra training alone does not count as their gain.")
        for m in [m for m in learned if m in SR_FEATURE_METHODS]:
            dp = _paired(rows, m, ref)
            ds = _paired(rows, m, ref, "sharpness")
            sentence = (f"{m} vs {ref}: PSNR {_diff_sentence(dp, ' dB')}; sharpness ratio "
                        f"{_diff_sentence(ds, '')}")
            if not np.isnan(rows[m]["feature_distance"]):
                df = _paired(rows, m, ref, "feature_distance")
                sentence += f"; feature distance {_diff_sentence(df, '', 4)}"
            out.append(sentence + ".")
    if "content+style" in rows and "L1+perceptual" in rows:
        ds = _paired(rows, "content+style", "L1+perceptual", "sharpness")
        dp = _paired(rows, "content+style", "L1+perceptual")
        out.append("Content + style vs L1 + perceptual (the Gram term added): sharpness ratio "
                   f"{_diff_sentence(ds, '')}; PSNR {_diff_sentence(dp, ' dB')}.")
    return out


def sr_conventions_table(result: RunResult, methods: Sequence[str] | None = None,
                         antialias_method: str | None = None) -> dict[str, list[dict]]:
    """The same outputs scored three ways, and what antialiasing the LR input changes.

    ``"scoring"``: for each method (default: bicubic and every learned one), the mean
    PSNR of the stored outputs on RGB with nothing shaved, on Y with nothing shaved, and
    on Y with ``scale`` pixels shaved (the SR convention), plus the spread between the
    highest and lowest of the three.

    ``"antialias"``: bicubic enlargement and the network of ``antialias_method``
    (default: the best pixel-loss one, if its model is in ``result.models``) scored
    (Y, shaved) on LR images made with and without antialiasing. The network was trained
    on antialiased LR images, so the second row shows what a mismatch between the
    training and test degradation costs.
    """
    lr_aa, hr = result.pairs
    scale = result.payload["scale"]
    rows = {r["method"]: r for r in result.rows}
    methods = list(methods or ["bicubic", *[m for m in result.payload["methods"]
                                            if m in rows]])
    scoring = []
    for m in methods:
        out = result.outputs[m]
        vals = {"method": m,
                "rgb, no shave": float(sr_psnr(out, hr, channel="rgb", shave=0)),
                "Y, no shave": float(sr_psnr(out, hr, channel="y", shave=0)),
                f"Y, shave {scale}": float(sr_psnr(out, hr, channel="y", shave=scale))}
        nums = [v for k, v in vals.items() if k != "method"]
        vals["spread"] = max(nums) - min(nums)
        scoring.append(vals)
    lr_al = bicubic_downsample(hr, scale, antialias=False)
    conv = dict(channel="y", shave=scale)
    fns: dict[str, Callable] = {"bicubic": lambda x: bicubic_upsample(x, scale)}
    pixel = [m for m in SR_PIXEL_METHODS if m in result.models]
    if antialias_method is None and pixel:
        antialias_method = max(pixel, key=lambda m: rows[m]["psnr_y"])
    if antialias_method is not None:
        model = result.models[antialias_method]
        dev = next(model.parameters()).device

        def net(x: torch.Tensor, model: nn.Module = model) -> torch.Tensor:
            with torch.no_grad():
                return model.eval()(x.to(dev)).cpu()
        fns[antialias_method] = net
    aa = []
    for name, fn in fns.items():
        a = float(sr_psnr(fn(lr_aa).clamp(0, 1), hr, **conv))
        b = float(sr_psnr(fn(lr_al).clamp(0, 1), hr, **conv))
        aa.append({"method": name, "LR antialiased": a, "LR without antialiasing": b,
                   "change": b - a})
    return {"scoring": scoring, "antialias": aa}


# ------------------------------------------------------------------------- figures


def sr_curves_figure(result: RunResult):
    """Validation PSNR (RGB, centre crops) against the step, and each training loss.

    The fine-tuned methods are drawn from the step at which they left the L1 network."""
    import matplotlib.pyplot as plt

    from ..viz import plot_curves

    curves = result.payload["curves"]
    steps = result.payload["sizes"]["steps"]
    shift = {m: (steps if m in SR_FEATURE_METHODS + (SR_CONTROL,) else 0) for m in curves}
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_curves({m: (np.array(c["val_step"]) + shift[m], c["val_psnr"])
                 for m, c in curves.items()},
                xlabel="training step", ylabel="PSNR (dB, RGB)", ax=axes[0],
                title="Validation PSNR (centre crops of the test images)")
    if result.pairs is not None and "bicubic" in result.outputs:
        lr, hr = _val_pairs(result.pairs, result.payload["scale"],
                            result.payload["sizes"]["val_crop"])
        ref = float(sr_psnr(bicubic_upsample(lr, result.payload["scale"]).clamp(0, 1), hr,
                            channel="rgb", shave=0))
        axes[0].axhline(ref, color="k", ls="--", lw=1, label="bicubic")
        axes[0].legend(fontsize=8)
    plot_curves({m: (np.array(c["step"]) + shift[m], np.array(c["loss"]) / c["loss"][0])
                 for m, c in curves.items()},
                xlabel="training step", ylabel="loss / first logged loss", logy=True,
                ax=axes[1], title="Training loss, each relative to its start")
    fig.tight_layout()
    return fig


def _default_crop(side: int) -> tuple[slice, slice]:
    k = max(24, side // 5)
    return (slice(side // 2 - k // 2, side // 2 + k // 2),
            slice(side // 2 - k // 2, side // 2 + k // 2))


def sr_crops_figure(result: RunResult, image: int | None = None,
                    methods: Sequence[str] | None = None,
                    crop: tuple[slice, slice] | None = None):
    """Zoomed crops of one test image: HR, the baselines and every learned method, with
    each method's PSNR (Y, shaved) on the full image. Default image: the last one."""
    from ..viz import show_images

    lr, hr = result.pairs
    image = hr.shape[0] - 1 if image is None else image
    methods = list(methods or [r["method"] for r in result.rows])
    crop = crop or _default_crop(hr.shape[-1])
    images = [hr[image]] + [result.outputs[m][image] for m in methods]
    titles = ["HR (truth)"] + [f"{m}\n{result.row(m)['per_image']['psnr_y'][image]:.2f} dB"
                               for m in methods]
    name = result.payload.get("test_images", ["?"] * (image + 1))[image]
    return show_images(images, titles, crop=crop, ncols=min(5, len(images)), size=2.2,
                       suptitle=f"x{result.payload['scale']} super-resolution, zoomed crop of "
                                f"'{name}' (PSNR on Y, shaved, of the full image)")


def sr_plane_figure(result: RunResult | dict):
    """The perception-distortion plane: every method by PSNR (distortion) against the
    sharpness ratio and against the feature distance (Blau & Michaeli 2018)."""
    import matplotlib.pyplot as plt

    p, rows = _rows(result)
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.2))
    markers = "sDo^vP*Xhp<>"
    for ax, metric, label in (
            (axes[0], "sharpness", "sharpness ratio (1 = as much fine detail as the truth)"),
            (axes[1], "feature_distance", "feature distance (relu2_2; lower = closer)")):
        for k, (m, r) in enumerate(rows.items()):
            if np.isnan(r[metric]):
                continue
            ax.scatter(r[metric], r["psnr_y"], marker=markers[k % len(markers)], s=45,
                       label=m, alpha=0.85)
        if metric == "sharpness":
            ax.axvline(1.0, color="k", lw=0.8, ls=":")
        ax.set_xlabel(label)
        ax.set_ylabel("PSNR (dB, Y, shaved)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Distortion vs sharpness")
    axes[1].set_title("Distortion vs feature distance")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(f"Perception-distortion plane, x{p.get('scale', 2)} ({p.get('budget', '?')} "
                 "budget)")
    fig.tight_layout()
    return fig


def sr_difference_figure(result: RunResult, image: int | None = None,
                         methods: Sequence[str] | None = None,
                         crop: tuple[slice, slice] | None = None, vmax: float = 0.15):
    """Where each method errs: ``|output - HR|`` on Y for each method (top row), and what
    each changes relative to the L1 network, ``output - L1`` (bottom row; mid-gray = no
    change): the detail a feature or adversarial term adds, right or wrong."""
    import matplotlib.pyplot as plt

    lr, hr = result.pairs
    image = hr.shape[0] - 1 if image is None else image
    methods = list(methods or [m for m in result.payload["methods"] if m in result.outputs])
    crop = crop or _default_crop(hr.shape[-1])
    y = functools.partial(sr_view, channel="y", shave=0)
    truth = y(hr[image:image + 1])[0, 0]
    base = y(result.outputs["L1"][image:image + 1])[0, 0] if "L1" in result.outputs else None
    fig, axes = plt.subplots(2, len(methods), figsize=(2.3 * len(methods), 5.8),
                             squeeze=False)
    for j, m in enumerate(methods):
        out = y(result.outputs[m][image:image + 1])[0, 0]
        axes[0, j].imshow((out - truth).abs()[crop].numpy(), cmap="gray", vmin=0, vmax=vmax)
        axes[0, j].set_title(f"|{m} - HR|".replace("+", "+\n", 1) if len(m) > 14
                             else f"|{m} - HR|", fontsize=8)
        if base is not None and m != "L1":
            axes[1, j].imshow((out - base)[crop].numpy(), cmap="gray", vmin=-vmax / 2,
                              vmax=vmax / 2)
            axes[1, j].set_title(f"{m} - L1".replace("+", "+\n", 1) if len(m) > 14
                                 else f"{m} - L1", fontsize=8)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(f"Errors (top, 0 to {vmax:g}) and changes relative to L1 (bottom, "
                 f"+-{vmax / 2:g}) on Y, zoomed")
    fig.tight_layout()
    return fig


def pixel_shuffle_figure(scale: int = 2, side: int = 3):
    """How a pixel shuffle (sub-pixel convolution's last step) builds an HR image.

    A tensor of ``scale**2`` channels at ``side x side`` (each channel a different gray
    level, each pixel numbered) becomes one channel at ``scale * side``: channel
    ``k = scale * i + j`` fills the sub-pixel ``(i, j)`` of every ``scale x scale`` block
    (``torch.nn.PixelShuffle``)."""
    import matplotlib.pyplot as plt

    r2 = scale * scale
    levels = torch.linspace(0.15, 0.85, r2)
    t = levels.view(1, r2, 1, 1).expand(1, r2, side, side).clone()
    out = torch.nn.functional.pixel_shuffle(t, scale)[0, 0]
    fig, axes = plt.subplots(1, r2 + 1, figsize=(2.0 * r2 + 3.2, 3.0),
                             gridspec_kw={"width_ratios": [1] * r2 + [scale]})
    for k in range(r2):
        ax = axes[k]
        ax.imshow(t[0, k].numpy(), cmap="gray", vmin=0, vmax=1)
        for a in range(side):
            for b in range(side):
                ax.text(b, a, f"{k}:{a * side + b}", ha="center", va="center", fontsize=7,
                        color="w" if levels[k] < 0.5 else "k")
        ax.set_title(f"channel {k}\n(LR {side}x{side})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    ax = axes[-1]
    ax.imshow(out.numpy(), cmap="gray", vmin=0, vmax=1)
    for a in range(side * scale):
        for b in range(side * scale):
            k = scale * (a % scale) + (b % scale)
            ax.text(b, a, f"{k}:{(a // scale) * side + b // scale}", ha="center",
                    va="center", fontsize=7, color="w" if levels[k] < 0.5 else "k")
    ax.set_title(f"pixel shuffle: 1 channel, {side * scale}x{side * scale}", fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.suptitle(f"Pixel shuffle x{scale}: label 'channel:LR pixel'")
    fig.tight_layout()
    return fig


def ill_posed_demo(size: int = 96, scale: int = 2, n: int = 8, frequency: float = 0.4,
                   amplitude: float = 0.12, image: str = "camera") -> dict:
    r"""Many HR images, (almost) one LR image: why the MSE-optimal answer is blurry.

    ``n`` HR candidates are a smooth image (``image`` at ``size``, blurred) plus a fine
    stripe texture of ``frequency`` cycles per pixel at ``n`` phases. The frequency lies
    above the LR image's Nyquist limit ``0.5 / scale``, so the antialiased reduction
    removes it and all candidates give (almost) the same LR image. Given that LR image
    the phase is unknown; the estimate with the least expected squared error is the
    candidates' *mean*, which has no texture at all -- it is blurry. As in Chapter 1's
    edge experiment, the mean beats every sharp guess on MSE.

    Returns
    -------
    dict
        ``candidates`` ``(n, 1, size, size)``, ``lr`` ``(n, 1, size/scale, size/scale)``,
        ``mean`` ``(1, 1, size, size)``; ``hr_rms`` (RMS difference between candidates,
        over pairs), ``lr_rms`` (the same for their LR images), ``psnr_mean`` (expected
        PSNR of the mean against a random candidate) and ``psnr_sharp`` (of a random
        other candidate, i.e. a sharp guess with the wrong phase).
    """
    from ..data import gaussian_blur, load_image
    from ..metrics import psnr as _psnr

    base = gaussian_blur(load_image(image, size), 1.5 * scale)
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32),
                            torch.arange(size, dtype=torch.float32), indexing="ij")
    phases = torch.arange(n) * 2 * torch.pi / n
    u = (xx + 0.5 * yy) / np.hypot(1.0, 0.5)
    tex = torch.stack([amplitude * torch.cos(2 * torch.pi * frequency * u + ph)
                       for ph in phases])[:, None]
    cands = base + tex
    lr = bicubic_downsample(cands, scale)
    mean = cands.mean(0, keepdim=True)
    i, j = torch.triu_indices(n, n, 1)
    hr_rms = float((cands[i] - cands[j]).pow(2).mean((1, 2, 3)).sqrt().mean())
    lr_rms = float((lr[i] - lr[j]).pow(2).mean((1, 2, 3)).sqrt().mean())
    psnr_mean = float(_psnr(mean.expand_as(cands), cands))
    psnr_sharp = float(_psnr(cands[i], cands[j]))
    return {"candidates": cands, "lr": lr, "mean": mean, "hr_rms": hr_rms, "lr_rms": lr_rms,
            "psnr_mean": psnr_mean, "psnr_sharp": psnr_sharp, "scale": scale,
            "frequency": frequency}


def ill_posed_figure(demo: dict | None = None):
    """Two HR candidates, their LR images (indistinguishable) and the MSE-optimal mean."""
    from ..viz import show_images

    d = demo or ill_posed_demo()
    c, lr, n = d["candidates"], d["lr"], d["candidates"].shape[0]
    k = n // 2
    return show_images(
        [c[0], c[k], lr[0], lr[k], d["mean"][0]],
        ["HR candidate A", "HR candidate B\n(texture shifted)", "LR of A", "LR of B",
         f"mean of all {n}\n(MSE-optimal)"],
        size=2.3,
        suptitle=(f"x{d['scale']}: HR candidates differ by RMS {d['hr_rms']:.3f}, their LR "
                  f"images by {d['lr_rms']:.4f}"))


EXPERIMENT = register(Experiment(
    name="sr-losses",
    title="One EDSR, every loss: bicubic super-resolution",
    sizes=SR_SIZES,
    run=_run_sr_losses,
    chapter="notebooks/09_super_resolution",
    figures={"curves": sr_curves_figure, "crops": sr_crops_figure,
             "plane": sr_plane_figure},
    findings=sr_findings,
))
