"""Chapter 8: what feature, texture and adversarial losses see and do.

Three studies, all on the feature network :func:`lossbook.models.load_feature_net`
gives (ImageNet VGG16 where its weights can be fetched, the offline random-weight
network otherwise; every result records which):

* :func:`feature_inversion` -- start from noise and descend the feature loss of one layer
  (``relu1_2`` ... ``relu4_3``) towards an image: what survives at each depth.
* :func:`texture_study` -- synthesise textures by matching Gram matrices (Gatys et al.
  2015), and show that Gram statistics ignore arrangement (a patch-shuffled image).
* Experiment ``perceptual-adversarial`` -- one small residual CNN trained to deblur with
  L1, L1 + perceptual, perceptual alone, then fine-tuned with L1 + lambda x adversarial
  (PatchGAN) for a sweep of lambda (lambda = 0 is the control with the same number of
  steps); PSNR, SSIM and the sharpness ratio (:func:`lossbook.spectral.sharpness_ratio`)
  on the test images, with paired bootstrap intervals, and the perception-distortion
  plane.

    python -m lossbook run perceptual-adversarial --budget cpu --out runs
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import losses as L
from ..budget import get_budget
from ..data import (
    TEST_IMAGES,
    PatchSampler,
    add_gaussian_noise,
    gaussian_blur,
    load_image,
    load_images,
)
from ..metrics import mse as _mse
from ..metrics import psnr as _psnr
from ..metrics import ssim as _ssim
from ..models import DnCNN, PatchGANDiscriminator, load_feature_net
from ..models.vgg import VGG16Features
from ..spectral import radial_power_spectrum, sharpness_ratio
from ..stats import format_interval, paired_bootstrap
from ..train import fit
from ..train_adversarial import fit_adversarial
from .core import Experiment, RunResult, register, slug

__all__ = [
    "FEATURE_SIZES",
    "INVERSION_LAYERS",
    "TEXTURES",
    "feature_sizes",
    "chapter_feature_net",
    "invert_features",
    "feature_inversion",
    "feature_inversion_figure",
    "synthesise_texture",
    "patch_shuffle",
    "texture_study",
    "texture_figure",
    "shuffle_figure",
    "blur_and_noise",
    "restore_test_pairs",
    "restore_loss",
    "make_restorer",
    "restore_findings",
    "restore_crops_figure",
    "restore_difference_figure",
    "restore_spectrum_figure",
    "perception_distortion_figure",
    "RESTORE_METHODS",
]

INVERSION_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
TEXTURES = ("brick", "grass", "gravel")
RESTORE_METHODS = ("L1", "L1+perceptual", "perceptual")
PERCEPTUAL_LAYERS = ("relu2_2", "relu3_3")

FEATURE_SIZES: dict[str, dict] = {
    "smoke": dict(image_size=32, invert_steps=8, texture_size=32, texture_exemplar=48,
                  texture_steps=8, shuffle_patch=8, pixel_lr=0.05,
                  blur=1.0, noise=2.0, patch_size=32, batch_size=4, steps=8, gan_steps=6,
                  adv_weights=(0.0, 0.03), depth=4, width=12, lr=2e-3, gan_lr=2e-4,
                  d_base=8, perceptual_weight=0.1, n_test=2, test_size=64,
                  train_size=96, log_every=4),
    "cpu": dict(image_size=80, invert_steps=100, texture_size=80, texture_exemplar=128,
                texture_steps=100, shuffle_patch=16, pixel_lr=0.05,
                blur=1.0, noise=2.0, patch_size=40, batch_size=8, steps=250, gan_steps=120,
                adv_weights=(0.0, 0.03, 0.1), depth=5, width=24, lr=2e-3, gan_lr=2e-4,
                d_base=16, perceptual_weight=0.1, n_test=4, test_size=128,
                train_size=192, log_every=10),
    "gpu": dict(image_size=192, invert_steps=500, texture_size=192, texture_exemplar=256,
                texture_steps=500, shuffle_patch=32, pixel_lr=0.05,
                blur=1.0, noise=2.0, patch_size=64, batch_size=32, steps=2000, gan_steps=1000,
                adv_weights=(0.0, 0.003, 0.01, 0.03), depth=10, width=64, lr=1e-3,
                gan_lr=1e-4, d_base=32, perceptual_weight=0.1, n_test=4, test_size=256,
                train_size=256, log_every=25),
}
"""Sizes per budget. ``blur``: Gaussian blur sigma (pixels) and ``noise``: Gaussian noise
sigma (0-255 scale) of the restoration task; ``adv_weights``: the lambda sweep (0 is the
control); ``perceptual_weight``: weight of the feature term in L1 + perceptual."""


def feature_sizes(budget: str | None = None) -> dict:
    """The chapter's sizes for ``budget`` (default: the current budget)."""
    return dict(FEATURE_SIZES[get_budget(budget).name])


def chapter_feature_net(device: str | torch.device | None = None,
                        weights: str = "auto") -> VGG16Features:
    """The feature network of the chapter: :func:`load_feature_net` (``"auto"`` prints
    which network it uses and why)."""
    return load_feature_net(weights, device=device)


# ------------------------------------------------------------------ optimising pixels


def _descend(loss_fn: Callable[[torch.Tensor], torch.Tensor], shape, *, steps: int, lr: float,
             seed: int, device) -> tuple[torch.Tensor, list[float]]:
    """Adam on the pixels of an image that starts as uniform noise; kept in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    trace = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        trace.append(float(loss.detach()))
    return x.detach(), trace


def invert_features(image: torch.Tensor, net: VGG16Features, layer: str, *, steps: int,
                    lr: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """An image whose ``layer`` features match ``image``'s, found from noise.

    Minimises :func:`lossbook.losses.feature_loss` (L2, one layer) over the pixels with
    Adam, starting from uniform noise (seed ``seed``), clipping to [0, 1] after each step.
    Returns the image and the loss after every step.
    """
    target = image.detach()
    return _descend(lambda x: L.feature_loss(x, target, net, layers=(layer,)), image.shape,
                    steps=steps, lr=lr, seed=seed, device=image.device)


def feature_inversion(sizes: dict | None = None, net: VGG16Features | None = None, *,
                      image: str = "camera", layers: Sequence[str] = INVERSION_LAYERS,
                      device: str | torch.device = "cpu") -> dict:
    """Invert each of ``layers`` for one corpus image; PSNR and SSIM to the original."""
    sizes = sizes or feature_sizes()
    net = net if net is not None else chapter_feature_net(device)
    x = load_image(image, sizes["image_size"]).to(device)
    out = {"image": x.cpu(), "name": image, "net": net.source, "layers": list(layers),
           "results": {}, "psnr": {}, "ssim": {}, "trace": {}}
    for layer in layers:
        rec, trace = invert_features(x, net, layer, steps=sizes["invert_steps"],
                                     lr=sizes["pixel_lr"])
        out["results"][layer] = rec.cpu()
        out["psnr"][layer] = float(_psnr(rec.cpu(), x.cpu()))
        out["ssim"][layer] = float(_ssim(rec.cpu(), x.cpu()))
        out["trace"][layer] = trace
    return out


def feature_inversion_figure(inv: dict):
    """The original and the image recovered from each layer, PSNR and SSIM in the titles."""
    from ..viz import show_images

    images = [inv["image"]] + [inv["results"][k] for k in inv["layers"]]
    titles = ["original"] + [f"from {k}\nPSNR {inv['psnr'][k]:.1f} dB, SSIM {inv['ssim'][k]:.2f}"
                             for k in inv["layers"]]
    return show_images(images, titles, ncols=len(images), size=2.4,
                       suptitle=f"Images whose features match '{inv['name']}' at one layer "
                                "(started from noise)")


def synthesise_texture(exemplar: torch.Tensor, net: VGG16Features, *, size: int, steps: int,
                       layers: Sequence[str] = L.perceptual.JOHNSON_STYLE_LAYERS,
                       lr: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """A ``size x size`` image whose Gram matrices match ``exemplar``'s (Gatys et al. 2015).

    Minimises :class:`lossbook.losses.TextureLoss` over the pixels from uniform noise.
    """
    loss = L.TextureLoss(net, layers=layers, target=exemplar.detach())
    shape = (1, exemplar.shape[1], size, size)
    return _descend(loss, shape, steps=steps, lr=lr, seed=seed, device=exemplar.device)


def patch_shuffle(x: torch.Tensor, patch: int, seed: int = 0) -> torch.Tensor:
    """Cut ``x`` (sides divisible by ``patch``) into ``patch x patch`` tiles and permute
    them: the same local statistics, a different arrangement."""
    n, c, h, w = x.shape
    if h % patch or w % patch:
        raise ValueError(f"image sides {h} x {w} must be divisible by patch={patch}.")
    tiles = x.reshape(n, c, h // patch, patch, w // patch, patch).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n, -1, c, patch, patch)
    perm = torch.randperm(tiles.shape[1], generator=torch.Generator().manual_seed(seed))
    tiles = tiles[:, perm].reshape(n, h // patch, w // patch, c, patch, patch)
    return tiles.permute(0, 3, 1, 4, 2, 5).reshape(n, c, h, w)


def texture_study(sizes: dict | None = None, net: VGG16Features | None = None, *,
                  textures: Sequence[str] = TEXTURES,
                  device: str | torch.device = "cpu") -> dict:
    """Texture synthesis for each of ``textures``, and the patch-shuffle test.

    For every texture: the synthesis and its texture loss; the patch-shuffled exemplar's
    texture loss, MSE and SSIM against the exemplar; and, as the scale to judge them by,
    the texture loss between the exemplar and each other texture.
    """
    sizes = sizes or feature_sizes()
    net = net if net is not None else chapter_feature_net(device)
    tex = L.TextureLoss(net)
    ex = {t: load_image(t, sizes["texture_exemplar"]).to(device) for t in textures}
    out = {"net": net.source, "textures": list(textures), "exemplar": {}, "synthesis": {},
           "shuffled": {}, "rows": []}
    for i, t in enumerate(textures):
        synth, trace = synthesise_texture(ex[t], net, size=sizes["texture_size"],
                                          steps=sizes["texture_steps"], lr=sizes["pixel_lr"],
                                          seed=i)
        shuffled = patch_shuffle(ex[t], sizes["shuffle_patch"], seed=i)
        with torch.no_grad():
            others = [float(tex(ex[o], ex[t])) for o in textures if o != t]
            row = {
                "texture": t,
                "synthesis_texture_loss": float(tex(synth, ex[t])),
                "noise_texture_loss": float(tex(torch.rand_like(ex[t]), ex[t])),
                "shuffled_texture_loss": float(tex(shuffled, ex[t])),
                "other_texture_loss": float(np.min(others)) if others else float("nan"),
                "shuffled_mse": float(_mse(shuffled.cpu(), ex[t].cpu())),
                "shuffled_ssim": float(_ssim(shuffled.cpu(), ex[t].cpu())),
                "shuffled_feature_loss": float(L.feature_loss(shuffled, ex[t], net)),
            }
        out["rows"].append(row)
        out["exemplar"][t], out["synthesis"][t] = ex[t].cpu(), synth.cpu()
        out["shuffled"][t] = shuffled.cpu()
    return out


def texture_figure(study: dict):
    """Each exemplar above its synthesis from noise."""
    import matplotlib.pyplot as plt

    ts = study["textures"]
    fig, axes = plt.subplots(2, len(ts), figsize=(2.6 * len(ts), 5.4), squeeze=False)
    for j, t in enumerate(ts):
        row = next(r for r in study["rows"] if r["texture"] == t)
        synth_title = f"synthesis\ntexture loss {row['synthesis_texture_loss']:.2g}"
        for i, (img, title) in enumerate(((study["exemplar"][t], f"{t}: exemplar"),
                                          (study["synthesis"][t], synth_title))):
            axes[i, j].imshow(img[0, 0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[i, j].set_title(title, fontsize=9)
            axes[i, j].axis("off")
    fig.suptitle("Textures synthesised from noise by matching Gram matrices")
    fig.tight_layout()
    return fig


def shuffle_figure(study: dict, texture: str | None = None):
    """An exemplar, its patch-shuffled version, and another texture, with the scores."""
    from ..viz import show_images

    t = texture or study["textures"][0]
    row = next(r for r in study["rows"] if r["texture"] == t)
    other = next(o for o in study["textures"] if o != t)
    return show_images(
        [study["exemplar"][t], study["shuffled"][t], study["exemplar"][other]],
        [f"{t}", f"{t}, patches shuffled\ntexture loss {row['shuffled_texture_loss']:.2g}, "
                 f"SSIM {row['shuffled_ssim']:.2f}",
         f"{other}\n(closest other texture: loss {row['other_texture_loss']:.2g})"],
        ncols=3, size=3.0, suptitle="Gram statistics ignore arrangement")


# ------------------------------------------------------------------ restoration


def blur_and_noise(x: torch.Tensor, generator: torch.Generator | None = None, *,
                   blur: float, noise: float) -> torch.Tensor:
    """The restoration task's degradation: Gaussian blur (sigma ``blur`` pixels), then
    Gaussian noise (sigma ``noise`` on the 0-255 scale)."""
    return add_gaussian_noise(gaussian_blur(x, blur), noise, generator=generator)


def restore_test_pairs(sizes: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """``(degraded, clean)``: the first ``n_test`` test images, fixed noise (seed 2017)."""
    clean = load_images(list(TEST_IMAGES[: sizes["n_test"]]), sizes["test_size"])
    g = torch.Generator().manual_seed(2017)
    return blur_and_noise(clean, g, blur=sizes["blur"], noise=sizes["noise"]), clean


def make_restorer(sizes: dict, seed: int = 0) -> DnCNN:
    """The network every loss trains: a small residual CNN (DnCNN layout, no batch norm),
    the same initial weights for every method."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DnCNN(channels=1, depth=sizes["depth"], width=sizes["width"], batch_norm=False)


def restore_loss(method: str, sizes: dict, net: VGG16Features) -> nn.Module:
    """The training loss of ``method``: ``"L1"``, ``"L1+perceptual"`` (L1 +
    ``perceptual_weight`` x feature loss at relu2_2 and relu3_3) or ``"perceptual"``."""
    perceptual = L.PerceptualLoss(net, layers=PERCEPTUAL_LAYERS, kind="l2")
    if method == "L1":
        return L.L1Loss()
    if method == "L1+perceptual":
        return L.CombinedLoss({"l1": (1.0, L.L1Loss()),
                               "perceptual": (sizes["perceptual_weight"], perceptual)})
    if method == "perceptual":
        return perceptual
    raise ValueError(f"unknown method {method!r}; choose from {', '.join(RESTORE_METHODS)}.")


def _gan_name(weight: float) -> str:
    return f"L1+{weight:g}·adv"


def _score(pairs, outputs: torch.Tensor) -> dict:
    """Per-image PSNR, SSIM, MAE and sharpness ratio of ``outputs`` against the clean
    images (outputs clipped to [0, 1]); the means are the table's values."""
    clean = pairs[1]
    y = outputs.clamp(0, 1)
    per = {"psnr": _psnr(y, clean, reduction="none").tolist(),
           "ssim": _ssim(y, clean, reduction="none").tolist(),
           "mae": (y - clean).abs().flatten(1).mean(1).tolist(),
           "sharpness": sharpness_ratio(y, clean).tolist()}
    out: dict = {k: float(np.mean(v)) for k, v in per.items()}
    out.update({f"{k}_per_image": v for k, v in per.items()})
    return out


def _run_perceptual_adversarial(sizes: dict, *, workdir: Path, device: torch.device,
                                progress: bool = True, callback: Callable | None = None,
                                methods: Sequence[str] | None = None) -> RunResult:
    net = chapter_feature_net(device)
    pairs = restore_test_pairs(sizes)
    train = load_images("train", sizes["train_size"])
    degrade = functools.partial(blur_and_noise, blur=sizes["blur"], noise=sizes["noise"])
    sampler = PatchSampler(train, degrade, sizes["patch_size"], device=device)
    wanted = list(RESTORE_METHODS) + [_gan_name(w) for w in sizes["adv_weights"]]
    if methods is not None:
        wanted = [m for m in wanted if m in methods or m == "L1"]

    rows, outputs, histories, models = [], {}, {}, {}

    @torch.no_grad()
    def run_model(model: nn.Module) -> torch.Tensor:
        model.eval()
        return torch.cat([model(pairs[0][i:i + 1].to(device)).float().cpu().clamp(0, 1)
                          for i in range(pairs[0].shape[0])])

    def add(method: str, kind: str, out: torch.Tensor, **extra) -> None:
        outputs[method] = out
        rows.append({"method": method, "kind": kind, **_score(pairs, out), **extra})

    add("degraded input", "baseline", pairs[0].clamp(0, 1))
    for method in [m for m in RESTORE_METHODS if m in wanted]:
        model = make_restorer(sizes)
        cb = None if callback is None else functools.partial(callback, method)
        h = fit(model, restore_loss(method, sizes, net), sampler, steps=sizes["steps"],
                batch_size=sizes["batch_size"], lr=sizes["lr"], lr_schedule="cosine",
                device=device, log_every=sizes["log_every"],
                checkpoint=workdir / f"{slug(method)}.pt", seed=0, callback=cb,
                progress=progress)
        histories[method], models[method] = h, model
        add(method, "learned", run_model(model), train_seconds=h.seconds)

    for weight in sizes["adv_weights"]:
        name = _gan_name(weight)
        if name not in wanted:
            continue
        gen_model = copy.deepcopy(models["L1"])  # fine-tune the L1 network, as SRGAN does
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            disc = PatchGANDiscriminator(1, base=sizes["d_base"], n_layers=2, norm="batch")
        cb = None if callback is None else functools.partial(callback, name)
        h = fit_adversarial(gen_model, disc, L.L1Loss(), sampler, steps=sizes["gan_steps"],
                            adv_weight=float(weight), gan_kind="nonsaturating",
                            batch_size=sizes["batch_size"], lr_g=sizes["gan_lr"],
                            lr_d=sizes["gan_lr"], device=device, log_every=sizes["log_every"],
                            checkpoint=workdir / f"gan_{slug(f'{weight:g}')}.pt", seed=0,
                            callback=cb, progress=progress)
        histories[name], models[name] = h, gen_model
        add(name, "adversarial", run_model(gen_model), adv_weight=float(weight),
            train_seconds=h.seconds, d_real=h.components["d_real"][-1],
            d_fake=h.components["d_fake"][-1])

    payload = {
        "feature_net": net.source,
        "methods": [r["method"] for r in rows],
        "metrics": ["psnr", "ssim", "mae", "sharpness"],
        "test_images": list(TEST_IMAGES[: sizes["n_test"]]),
        "notes": (f"Deblurring (Gaussian blur sigma {sizes['blur']} px + noise sigma "
                  f"{sizes['noise']}/255) on {sizes['n_test']} full {sizes['test_size']} px "
                  "test images; each value is the mean over images of the per-image metric. "
                  "Sharpness = high-frequency share of the output over "
                  "the target's (lossbook.spectral.sharpness_ratio, cutoff 0.25 cycles/px): "
                  "<1 blurrier, >1 extra detail or noise. Adversarial rows fine-tune the L1 "
                  f"network for {sizes['gan_steps']} more steps; lambda = 0 is the control."),
        "results": rows,
        "curves": {m: {"step": h.step, "loss": h.loss, "components": h.components}
                   for m, h in histories.items()},
    }
    return RunResult(payload=payload, outputs=outputs, histories=histories, models=models,
                     pairs=pairs)


def _compare(rows: dict, a: str, b: str, metric: str, seed: int = 0) -> dict:
    return paired_bootstrap(rows[a][f"{metric}_per_image"], rows[b][f"{metric}_per_image"],
                            seed=seed)


def restore_findings(result: RunResult | dict) -> list[str]:
    """The chapter's conclusions from a ``perceptual-adversarial`` run, each comparison
    with its paired bootstrap interval over the test images (a difference is called only
    when the interval excludes zero)."""
    p = result.payload if isinstance(result, RunResult) else result
    rows = {r["method"]: r for r in p["results"]}
    out = [f"Feature network: {p.get('feature_net', '?')}."]
    if p.get("budget") == "smoke":
        out.append("Smoke budget: the networks barely trained, so the comparisons below only "
                   "show that the code runs; they are not results.")

    def verdict(res: dict, better: str, worse: str) -> str:
        if not res["excludes_zero"]:
            return "no difference we can call (the interval includes zero)"
        return better if res["mean"] > 0 else worse

    for m in ("L1+perceptual", "perceptual"):
        if m not in rows or "L1" not in rows:
            continue
        dp = _compare(rows, m, "L1", "psnr")
        ds = _compare(rows, m, "L1", "sharpness")
        out.append(
            f"{m} vs L1: PSNR {format_interval(dp, 'dB')} -> "
            f"{verdict(dp, 'higher PSNR', 'lower PSNR')}; sharpness ratio "
            f"{rows[m]['sharpness']:.2f} vs {rows['L1']['sharpness']:.2f}, difference "
            f"{format_interval(ds)} -> {verdict(ds, 'sharper', 'blurrier')}.")
    gans = sorted((r for r in p["results"] if r["kind"] == "adversarial"),
                  key=lambda r: r["adv_weight"])
    control = next((r for r in gans if r["adv_weight"] == 0), None)
    for r in gans:
        if control is None or r is control:
            continue
        dp = _compare(rows, r["method"], control["method"], "psnr")
        ds = _compare(rows, r["method"], control["method"], "sharpness")
        out.append(
            f"{r['method']} vs the lambda = 0 control: PSNR {format_interval(dp, 'dB')} -> "
            f"{verdict(dp, 'higher PSNR', 'lower PSNR')}; sharpness ratio "
            f"{r['sharpness']:.2f} vs {control['sharpness']:.2f}, difference "
            f"{format_interval(ds)} -> {verdict(ds, 'sharper', 'blurrier')}.")
    learned = [r for r in p["results"] if r["kind"] != "baseline"]
    if learned:
        best_d = max(learned, key=lambda r: r["psnr"])
        best_p = min(learned, key=lambda r: abs(np.log(max(r["sharpness"], 1e-9))))
        same = best_d["method"] == best_p["method"]
        out.append(
            f"Lowest distortion (PSNR): {best_d['method']} ({best_d['psnr']:.2f} dB, sharpness "
            f"{best_d['sharpness']:.2f}); sharpness closest to the targets' (ratio 1): "
            f"{best_p['method']} ({best_p['sharpness']:.2f}, {best_p['psnr']:.2f} dB) -- "
            + ("the same method leads on both axes in this run." if same else
               "different methods lead on the two axes in this run."))
    return out


def restore_crops_figure(result: RunResult, image: int = 0, methods: Sequence[str] | None = None,
                         crop: tuple[slice, slice] | None = None):
    """Zoomed crops of one test image for every method (PSNR and sharpness in titles)."""
    from ..viz import show_images

    degraded, clean = result.pairs
    methods = list(methods or [r["method"] for r in result.rows])
    side = clean.shape[-1]
    if crop is None:
        k = max(24, side // 3)
        crop = (slice(side // 2 - k // 2, side // 2 + k // 2),
                slice(side // 2 - k // 2, side // 2 + k // 2))
    images = [clean[image]] + [result.outputs[m][image] for m in methods]
    titles = ["clean"] + [f"{m}\n{result.row(m)['psnr_per_image'][image]:.2f} dB, "
                          f"sharp. {result.row(m)['sharpness_per_image'][image]:.2f}"
                          for m in methods]
    name = result.payload.get("test_images", ["?"] * (image + 1))[image]
    return show_images(images, titles, crop=crop, ncols=min(5, len(images)), size=2.3,
                       suptitle=f"Zoomed crop of test image '{name}' (metrics of the full image)")


def restore_difference_figure(result: RunResult, image: int = 0,
                              methods: Sequence[str] | None = None, limit: float = 0.15):
    """Output minus ground truth for each method, on one gray scale [-limit, limit]."""
    import matplotlib.pyplot as plt

    clean = result.pairs[1]
    methods = list(methods or [r["method"] for r in result.rows if r["kind"] != "baseline"])
    fig, axes = plt.subplots(1, len(methods), figsize=(2.6 * len(methods), 3.0), squeeze=False)
    for ax, m in zip(axes[0], methods, strict=True):
        im = ax.imshow((result.outputs[m][image, 0] - clean[image, 0]).numpy(), cmap="gray",
                       vmin=-limit, vmax=limit)
        ax.set_title(m, fontsize=9)
        ax.axis("off")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="output - ground truth")
    fig.suptitle("Where each output departs from the ground truth")
    return fig


def restore_spectrum_figure(result: RunResult, methods: Sequence[str] | None = None):
    """Radial power spectrum of each method's outputs divided by the targets' (mean over
    test images): 1 = the targets' power at that frequency."""
    import matplotlib.pyplot as plt

    clean = result.pairs[1]
    f, p_clean = radial_power_spectrum(clean)
    methods = list(methods or [r["method"] for r in result.rows])
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for m in methods:
        _, p = radial_power_spectrum(result.outputs[m])
        ratio = (p / p_clean.clamp_min(1e-12)).mean(0)
        ax.plot(f[1:].numpy(), ratio[1:].numpy(), label=m)
    ax.axhline(1.0, color="k", lw=1, ls="--")
    ax.axvline(0.25, color="gray", lw=1, ls=":", label="sharpness cutoff")
    ax.set_yscale("log")
    ax.set_xlabel("spatial frequency (cycles/pixel)")
    ax.set_ylabel("power / ground truth's power")
    ax.set_title("Power spectrum of the outputs relative to the ground truth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def perception_distortion_figure(result: RunResult | dict):
    """Every method as a point: distortion (PSNR, right = less distortion) against the
    sharpness ratio (1 = the targets' high-frequency share)."""
    import matplotlib.pyplot as plt

    p = result.payload if isinstance(result, RunResult) else result
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"baseline": "s", "learned": "o", "adversarial": "^"}
    for r in p["results"]:
        ax.scatter(r["psnr"], r["sharpness"], marker=markers.get(r["kind"], "o"), s=50)
        ax.annotate(r["method"], (r["psnr"], r["sharpness"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    ax.axhline(1.0, color="k", lw=1, ls="--", label="targets' sharpness")
    ax.set_xlabel("PSNR (dB), higher = less distortion")
    ax.set_ylabel("sharpness ratio (output / target)")
    ax.set_title("The perception-distortion plane (mean over test images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="perceptual-adversarial",
    title="Deblurring with L1, perceptual and adversarial losses",
    sizes=FEATURE_SIZES,
    run=_run_perceptual_adversarial,
    chapter="notebooks/08_features_texture_adversarial",
    figures={"crops": restore_crops_figure, "spectrum": restore_spectrum_figure,
             "plane": perception_distortion_figure},
    findings=restore_findings,
))
