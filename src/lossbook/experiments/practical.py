"""Experiment ``practical-guide`` (Chapter 12): an experimentation order, and every common
issue produced on purpose, detected, fixed and detected again.

The worked case is a convolutional autoencoder (:class:`lossbook.models.ConvAutoencoder`)
that despeckles SAR images in dB (four-look speckle; Chapter 6's images mapped to
``[0, 1]`` by :func:`lossbook.sar.to_unit_db`). It is trained with the experimentation
order of the practical notes the book started from -- MSE; MSE + SSIM 0.5/0.5;
SSIM-heavy 0.16/0.84; plus an edge (Sobel) loss; MS-SSIM in place of SSIM -- and with
weights chosen by :func:`lossbook.diagnose.loss_balance` (equal gradient norms on the
parameters at initialisation).

The common-issues rows are short runs built to show one symptom each, and the run with
the table's fix; :mod:`lossbook.diagnose` measures both:

=============  ==============================================  ==============================
issue          produced by                                     fix
=============  ==============================================  ==============================
blurry         MSE only (an averaging loss, a bottleneck)      SSIM-heavy 0.16 MSE + 0.84 SSIM
noisy          SSIM only (blind in flat regions)               0.5 MSE + 0.5 SSIM
lost edges     MSE + SSIM 0.5/0.5                              + 0.1 x Sobel gradient loss
unstable       SSIM only, learning rate 25x too high           usual lr and grad_clip=1
colour shift   SSIM only on colour images (Gaussian noise)     + L1 (0.16 L1 + 0.84 SSIM)
checkerboard   3x3 stride-2 transposed convolutions            nearest upsampling + 3x3 conv
=============  ==============================================  ==============================

Test set: the test images speckled once (seed 2017), cut into tiles; metrics and
detectors are per tile, and differences carry a paired bootstrap interval over tiles.

    python -m lossbook run practical-guide --budget cpu --out runs
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import diagnose as D
from .. import losses as L
from .. import sar
from ..budget import get_budget
from ..data import TEST_IMAGES, PatchSampler, add_gaussian_noise, load_images
from ..metrics import psnr as _psnr
from ..metrics import ssim as _ssim
from ..models import ConvAutoencoder
from ..stats import paired_bootstrap
from ..train import fit
from .core import Experiment, RunResult, register, slug

__all__ = [
    "PRACTICAL_SIZES",
    "PRACTICAL_STEPS",
    "PRACTICAL_ISSUES",
    "SEED_TABLE",
    "practical_sizes",
    "practical_loss",
    "make_autoencoder",
    "practical_test_tiles",
    "practical_findings",
    "practical_steps_table",
    "practical_issues_table",
    "practical_crops_figure",
]

PRACTICAL_SIZES: dict[str, dict] = {
    "smoke": dict(looks=4, floor_db=-30.0, steps=8, batch_size=4, patch_size=32, base=8,
                  levels=2, latent=8, lr=2e-3, unstable_lr=5e-2, train_size=64,
                  test_size=64, n_test=2, tile=32, sigma=25.0, log_every=4),
    "cpu": dict(looks=4, floor_db=-30.0, steps=250, batch_size=16, patch_size=32, base=16,
                levels=2, latent=16, lr=2e-3, unstable_lr=5e-2, train_size=128,
                test_size=128, n_test=4, tile=32, sigma=25.0, log_every=10),
    "gpu": dict(looks=4, floor_db=-30.0, steps=800, batch_size=32, patch_size=64, base=32,
                levels=3, latent=16, lr=1e-3, unstable_lr=5e-2, train_size=256,
                test_size=256, n_test=4, tile=64, sigma=25.0, log_every=20),
}
"""Sizes of ``practical-guide`` per budget: ``steps`` Adam steps (learning rate ``lr``)
per run on ``batch_size`` random ``patch_size`` patches of the training images (at
``train_size``) with ``looks``-look speckle, in dB floored at ``floor_db``; an autoencoder
with ``levels`` down-samplings, ``base`` channels and a ``latent``-channel code; the
first ``n_test`` test images at ``test_size``, cut into ``tile`` x ``tile`` tiles;
``unstable_lr`` for the unstable run; Gaussian noise of ``sigma``/255 for the colour
runs."""

GRAD_WEIGHT = 0.1  # the edge term's weight in the notes' starting configuration

PRACTICAL_STEPS: tuple[str, ...] = (
    "1 MSE", "2 MSE+SSIM 0.5/0.5", "3 MSE+SSIM 0.16/0.84", "4 + edge", "5 MS-SSIM",
    "6 balanced")
"""The experimentation order (worked case), in table order."""

PRACTICAL_ISSUES: dict[str, dict] = {
    "blurry": dict(symptom="1 MSE", fix="3 MSE+SSIM 0.16/0.84", detector="blur",
                   seed_cause="MSE too dominant", seed_fix="increase the SSIM weight"),
    "noisy": dict(symptom="SSIM only", fix="2 MSE+SSIM 0.5/0.5", detector="noise",
                  seed_cause="SSIM too dominant", seed_fix="increase the MSE weight"),
    "lost edges": dict(symptom="2 MSE+SSIM 0.5/0.5", fix="4 + edge", detector="edges",
                       seed_cause="no edge supervision", seed_fix="add a gradient loss"),
    "unstable": dict(symptom="SSIM only, lr too high", fix="SSIM only, lr + clip",
                     detector="training",
                     seed_cause="SSIM gradient issues",
                     seed_fix="reduce the SSIM weight or use MS-SSIM",
                     ours="the usual learning rate with grad_clip=1"),
    "colour shift": dict(symptom="colour: SSIM only", fix="colour: L1+SSIM", detector="shift",
                         seed_cause="global offset", seed_fix="make sure MSE is included"),
    "checkerboard": dict(symptom="transposed 3x3", fix="resize-conv", detector="checkerboard",
                         seed_cause="(not in the notes' table)", seed_fix="-",
                         ours="nearest upsampling + 3x3 convolution (Odena et al. 2016)"),
}
"""Each common issue: the run that produces it, the run with the fix, the detector, and
what the practical notes' table says (cause, fix); ``ours`` where the fix applied here is
not the table's."""

SEED_TABLE = {k: (v["seed_cause"], v["seed_fix"]) for k, v in PRACTICAL_ISSUES.items()}
"""The notes' table: ``{issue: (likely cause, solution)}``."""


def practical_sizes(budget: str | None = None) -> dict:
    """The ``practical-guide`` sizes for ``budget`` (default: the current budget)."""
    return dict(PRACTICAL_SIZES[get_budget(budget).name])


def _ms_ssim_loss() -> Callable:
    # three scales and a 7x7 window, so 32-pixel patches fit ((7 - 1) * 2**2 = 24 < 32)
    weights = L.MS_SSIM_WEIGHTS[:3]
    return L.MSSSIMLoss(win_size=7, weights=[w / sum(weights) for w in weights])


def practical_loss(name: str, weights: dict[str, float] | None = None) -> L.CombinedLoss:
    """The ``CombinedLoss`` of a run: terms ``mse``, ``l1``, ``ssim``, ``ms_ssim``,
    ``edge`` (Sobel gradient L1, :func:`lossbook.losses.gradient_loss`).

    ``name`` is a step of :data:`PRACTICAL_STEPS` or ``"SSIM only"`` /
    ``"L1+SSIM"``; ``"6 balanced"`` needs ``weights`` (``{"mse", "ssim", "edge"}``).
    """
    mse, ssim, edge = L.MSELoss(), L.SSIMLoss(), L.GradientLoss()
    table = {
        "1 MSE": {"mse": (1.0, mse)},
        "2 MSE+SSIM 0.5/0.5": {"mse": (0.5, mse), "ssim": (0.5, ssim)},
        "3 MSE+SSIM 0.16/0.84": {"mse": (0.16, mse), "ssim": (0.84, ssim)},
        "4 + edge": {"mse": (0.16, mse), "ssim": (0.84, ssim), "edge": (GRAD_WEIGHT, edge)},
        "5 MS-SSIM": {"mse": (0.16, mse), "ms_ssim": (0.84, _ms_ssim_loss()),
                      "edge": (GRAD_WEIGHT, edge)},
        "SSIM only": {"ssim": (1.0, ssim)},
        "L1+SSIM": {"l1": (0.16, L.L1Loss()), "ssim": (0.84, ssim)},
    }
    if name == "6 balanced":
        if weights is None:
            raise ValueError("'6 balanced' needs weights={'mse': ..., 'ssim': ..., 'edge': ...}"
                             " from lossbook.diagnose.loss_balance.")
        return L.CombinedLoss({"mse": (weights["mse"], mse), "ssim": (weights["ssim"], ssim),
                               "edge": (weights["edge"], edge)})
    if name not in table:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(table)}, 6 balanced.")
    return L.CombinedLoss(table[name])


def make_autoencoder(sizes: dict, channels: int = 1, upsampling: str = "transposed 4x4",
                     seed: int = 0) -> ConvAutoencoder:
    """The autoencoder every run starts from (same initial weights for a given layout).

    ``upsampling``: ``"transposed 4x4"`` (the model's own 4x4 stride-2 transposed
    convolutions: the kernel is divisible by the stride), ``"transposed 3x3"`` (3x3
    stride 2: uneven overlap, the checkerboard of Odena et al. 2016) or
    ``"resize-conv"`` (nearest-neighbour 2x upsampling, then a 3x3 convolution).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ConvAutoencoder(channels, base=sizes["base"], levels=sizes["levels"],
                                latent_channels=sizes["latent"])
        if upsampling == "transposed 4x4":
            return model
        if upsampling not in ("transposed 3x3", "resize-conv"):
            raise ValueError(f"unknown upsampling {upsampling!r}.")
        for i, layer in enumerate(model.decoder):
            if isinstance(layer, nn.ConvTranspose2d):
                cin, cout = layer.in_channels, layer.out_channels
                if upsampling == "transposed 3x3":
                    new = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1)
                else:
                    new = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"),
                                        nn.Conv2d(cin, cout, 3, padding=1))
                model.decoder[i] = new
    return model


@dataclass(frozen=True)
class _UnitDbSampler:
    """A linear-domain speckle sampler's pairs, both mapped by :func:`sar.to_unit_db`."""

    linear: Callable
    floor_db: float

    def __call__(self, n: int, generator: torch.Generator):
        noisy, target = self.linear(n, generator)
        return sar.to_unit_db(noisy, self.floor_db), sar.to_unit_db(target, self.floor_db)


def _tiles(x: torch.Tensor, tile: int) -> torch.Tensor:
    n, c, h, w = x.shape
    x = x[:, :, : h - h % tile, : w - w % tile]
    t = x.unfold(2, tile, tile).unfold(3, tile, tile)  # (n, c, h/t, w/t, t, t)
    return t.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, tile, tile)


def practical_test_tiles(sizes: dict, colour: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Test pairs ``(input, clean)`` cut into ``tile`` x ``tile`` tiles.

    Gray: the first ``n_test`` test images at ``test_size`` with ``looks``-look speckle
    (seed 2017), both on the unit-dB scale. Colour: colour test images with Gaussian noise
    of ``sigma``/255 (seed 2017).
    """
    gen = torch.Generator().manual_seed(2017)
    names = list(TEST_IMAGES[: sizes["n_test"]])
    if colour:
        clean = load_images(names, sizes["test_size"], color=True)
        noisy = add_gaussian_noise(clean, sizes["sigma"], gen)
    else:
        clean_lin = load_images(names, sizes["test_size"])
        noisy = sar.to_unit_db(sar.add_speckle(clean_lin, sizes["looks"], gen), sizes["floor_db"])
        clean = sar.to_unit_db(clean_lin, sizes["floor_db"])
    return _tiles(noisy, sizes["tile"]), _tiles(clean, sizes["tile"])


@torch.no_grad()
def _outputs(model: nn.Module, inputs: torch.Tensor, device) -> torch.Tensor:
    model.eval()
    return torch.cat([model(inputs[i:i + 16].to(device)).float().cpu()
                      for i in range(0, inputs.shape[0], 16)])


def _scores(out: torch.Tensor, clean: torch.Tensor) -> dict:
    shown = out.clamp(0, 1)
    found = D.diagnose(shown, clean)
    row = {
        "psnr": float(_psnr(shown, clean)),
        "ssim": float(_ssim(shown, clean)),
        "psnr_per_image": _psnr(shown, clean, reduction="none").tolist(),
        "ssim_per_image": _ssim(shown, clean, reduction="none").tolist(),
    }
    for name, d in found.items():
        row[name] = d.value
        row[f"{name}_flagged"] = d.flagged
        row[f"{name}_verdict"] = d.verdict
    return row


def _run_practical(sizes: dict, *, workdir: Path, device: torch.device, progress: bool = True,
                   callback: Callable | None = None,
                   methods: Sequence[str] | None = None) -> RunResult:
    floor_db = sizes["floor_db"]
    gray_pairs = practical_test_tiles(sizes)
    colour_pairs = practical_test_tiles(sizes, colour=True)
    train = load_images("train", sizes["train_size"])
    speckle = PatchSampler(train, functools.partial(sar.add_speckle, looks=sizes["looks"]),
                           sizes["patch_size"], device=device)
    gray_data = _UnitDbSampler(speckle, floor_db)
    colour_data = PatchSampler(load_images("train", sizes["train_size"], color=True),
                               functools.partial(add_gaussian_noise, sigma=sizes["sigma"]),
                               sizes["patch_size"], device=device)

    # the balanced weights: equal gradient norms on the parameters, at initialisation
    probe_gen = torch.Generator(device=device).manual_seed(7)  # the sampler draws on device
    probe_in, probe_target = (t.cpu() for t in gray_data(sizes["batch_size"], probe_gen))
    model0 = make_autoencoder(sizes)
    three = practical_loss("4 + edge")
    balance = D.loss_balance(three, model0(probe_in), probe_target, model=model0,
                             inputs=probe_in)
    # rounded to 3 significant digits: gradient norms differ in the last bits between thread
    # counts and machines, and the weights enter the run's fingerprint (resume on Colab)
    balanced = {n: float(f"{w:.3g}") for n, w in zip(balance.names, balance.balanced,
                                                       strict=True)}

    # name -> (loss, upsampling, colour?, lr, grad_clip)
    lr, hot = sizes["lr"], sizes["unstable_lr"]
    runs: dict[str, tuple] = {step: (practical_loss(step, balanced if step == "6 balanced"
                                                    else None), "transposed 4x4", False, lr,
                                     None) for step in PRACTICAL_STEPS}
    runs.update({
        "SSIM only": (practical_loss("SSIM only"), "transposed 4x4", False, lr, None),
        "SSIM only, lr too high": (practical_loss("SSIM only"), "transposed 4x4", False, hot, None),
        "SSIM only, lr + clip": (practical_loss("SSIM only"), "transposed 4x4", False, lr,
                                 1.0),
        "colour: SSIM only": (practical_loss("SSIM only"), "transposed 4x4", True, lr, None),
        "colour: L1+SSIM": (practical_loss("L1+SSIM"), "transposed 4x4", True, lr, None),
        "transposed 3x3": (practical_loss("1 MSE"), "transposed 3x3", False, lr, None),
        "resize-conv": (practical_loss("1 MSE"), "resize-conv", False, lr, None),
    })
    rows, outputs, histories, models, health = [], {}, {}, {}, {}
    for method, (loss, upsampling, colour, run_lr, clip) in runs.items():
        if methods is not None and method not in methods:
            continue
        model = make_autoencoder(sizes, 3 if colour else 1, upsampling)
        cb = None if callback is None else functools.partial(callback, method)
        inputs, clean = colour_pairs if colour else gray_pairs
        try:
            h = fit(model, loss, colour_data if colour else gray_data, steps=sizes["steps"],
                    batch_size=sizes["batch_size"], lr=run_lr, grad_clip=clip, device=device,
                    log_every=sizes["log_every"], val_data=(inputs[:8], clean[:8]),
                    val_every=max(sizes["log_every"], sizes["steps"] // 10),
                    checkpoint=workdir / f"{slug(method)}.pt",
                    checkpoint_every=max(sizes["log_every"], sizes["steps"] // 10), seed=0,
                    callback=cb,
                    progress=progress, log_dir=workdir / "tb" / slug(method))
        except FloatingPointError as err:  # the unstable run may blow up: that is the symptom
            rows.append({"method": method, "failed": str(err)})
            continue
        histories[method], models[method] = h, model
        out = _outputs(model, inputs, device)
        outputs[method] = out
        report = D.training_health(h)
        health[method] = {k: {"flagged": d.flagged, "value": d.value, "verdict": d.verdict}
                          for k, d in report.items()}
        rows.append({"method": method, "upsampling": upsampling, "colour": colour,
                     "lr": run_lr, "grad_clip": clip, "weights": dict(loss.weights),
                     "final_loss": h.final_loss, "train_seconds": h.seconds,
                     "unstable": any(health[method][k]["flagged"]
                                     for k in ("nan", "divergence", "spikes")),
                     **_scores(out, clean)})
    payload = {
        "methods": list(runs),
        "metrics": ["psnr", "ssim", "blur", "noise", "edges", "shift", "checkerboard"],
        "balance": {"names": balance.names, "grad_norm_params": balance.grad_norm_params,
                    "grad_norm_output": balance.grad_norm_output, "balanced": balance.balanced,
                    "verdict": balance.verdict},
        "health": health,
        "curves": {m: {"step": h.step, "loss": h.loss, "components": h.components,
                       "val_step": h.val_step, "val": h.val} for m, h in histories.items()},
        "n_tiles": int(gray_pairs[1].shape[0]),
        "tensorboard": str(workdir / "tb"),
        "notes": (f"{sizes['n_test']} test images at {sizes['test_size']} px cut into "
                  f"{gray_pairs[1].shape[0]} tiles of {sizes['tile']} px; gray: {sizes['looks']}"
                  f"-look speckle, unit-dB scale ({floor_db:g} to 0 dB); colour: Gaussian "
                  f"noise sigma {sizes['sigma']:g}/255. PSNR/SSIM: means of per-tile values; "
                  "detector values: lossbook.diagnose defaults, means over tiles (checkerboard:"
                  " median)."),
        "results": rows,
    }
    pairs = {"gray": gray_pairs, "colour": colour_pairs}
    return RunResult(payload=payload, outputs=outputs, histories=histories, models=models,
                     pairs=pairs)


def _payload(result: RunResult | dict) -> dict:
    return result.payload if isinstance(result, RunResult) else result


def _row(p: dict, method: str) -> dict | None:
    return next((r for r in p["results"] if r["method"] == method and "psnr" in r), None)


def _diff(p: dict, a: str, b: str, metric: str) -> dict | None:
    ra, rb = _row(p, a), _row(p, b)
    if ra is None or rb is None:
        return None
    return paired_bootstrap(ra[f"{metric}_per_image"], rb[f"{metric}_per_image"], seed=0)


def _fmt(d: dict, digits: int = 2) -> str:
    call = "" if d["excludes_zero"] else ", not a difference (interval includes 0)"
    return (f"{d['mean']:+.{digits}f} (95% CI {d['low']:+.{digits}f} to "
            f"{d['high']:+.{digits}f}{call})")


def practical_steps_table(result: RunResult | dict) -> str:
    """The worked case: every step's PSNR, SSIM and detector values, and what changed."""
    p = _payload(result)
    lines = [f"{'step':<22}{'PSNR':>7}{'SSIM':>7}{'sharp':>7}{'noise':>8}{'edges':>7}"
             f"  weights"]
    for m in PRACTICAL_STEPS:
        r = _row(p, m)
        if r is None:
            continue
        w = ", ".join(f"{k} {v:.3g}" for k, v in r["weights"].items())
        lines.append(f"{m:<22}{r['psnr']:7.2f}{r['ssim']:7.3f}{r['blur']:7.2f}"
                     f"{r['noise']:8.4f}{r['edges']:7.2f}  {w}")
    return "\n".join(lines)


def _issue_value(p: dict, issue: str, method: str) -> tuple[str, bool | None]:
    spec = PRACTICAL_ISSUES[issue]
    if spec["detector"] == "training":
        failed = next((r for r in p["results"] if r["method"] == method and "failed" in r), None)
        if failed is not None:
            return "NaN, stopped", True
        h = p["health"].get(method)
        if h is None:
            return "-", None
        flags = [k for k in ("nan", "divergence", "spikes") if h[k]["flagged"]]
        return (", ".join(flags) if flags else "healthy"), bool(flags)
    r = _row(p, method)
    if r is None or spec["detector"] not in r:
        return "-", None
    return f"{r[spec['detector']]:.3g}", bool(r[f"{spec['detector']}_flagged"])


_HIGHER_IS_BETTER = {"blur", "edges"}


def _improved(detector: str, before: str, after: str) -> bool:
    """Whether the detector's value moved towards healthy (False if not numeric)."""
    try:
        a, b = float(before), float(after)
    except ValueError:
        return False
    return b > a if detector in _HIGHER_IS_BETTER else b < a


def practical_issues_table(result: RunResult | dict) -> str:
    """The common-issues table, measured: detector value and flag before and after the fix."""
    p = _payload(result)
    lines = [f"{'issue':<14}{'detector':<14}{'symptom run':>16}{'':>3}{'after fix':>16}{'':>3}"
             "  notes' fix"]
    for issue, spec in PRACTICAL_ISSUES.items():
        v0, f0 = _issue_value(p, issue, spec["symptom"])
        v1, f1 = _issue_value(p, issue, spec["fix"])
        mark = {True: "!!", False: "ok", None: "--"}
        lines.append(f"{issue:<14}{spec['detector']:<14}{v0:>16} {mark[f0]}{v1:>16} "
                     f"{mark[f1]}  {spec['seed_fix']}")
    return "\n".join(lines)


def practical_findings(result: RunResult | dict) -> list[str]:
    """What the run shows: the balanced weights, each step against the previous one (paired
    bootstrap over tiles), and for each common issue whether the symptom run was flagged,
    whether the fix cleared it, and where that disagrees with the notes' table."""
    p = _payload(result)
    out = []
    if p.get("budget") == "smoke":
        out.append("Smoke budget: the networks barely trained; nothing below is a result, "
                   "it only shows that the code runs.")
    b = p["balance"]
    out.append("loss_balance at initialisation chose weights "
               + ", ".join(f"{n} {w:.3g}" for n, w in zip(b["names"], b["balanced"], strict=True))
               + " (equal gradient norms on the parameters).")
    steps = [m for m in PRACTICAL_STEPS if _row(p, m) is not None]
    for a, bb in zip(steps, steps[1:], strict=False):
        d_psnr, d_ssim = _diff(p, bb, a, "psnr"), _diff(p, bb, a, "ssim")
        out.append(f"{bb} vs {a}: PSNR {_fmt(d_psnr)} dB, SSIM {_fmt(d_ssim, 3)}.")
    if steps:
        best = {m: max(steps, key=lambda s, m=m: _row(p, s)[m]) for m in ("psnr", "ssim")}
        out.append(f"Best step of the order on PSNR: {best['psnr']}; on SSIM: {best['ssim']}"
                   " (means over tiles; see the intervals above before calling a winner).")
    for issue, spec in PRACTICAL_ISSUES.items():
        v0, f0 = _issue_value(p, issue, spec["symptom"])
        v1, f1 = _issue_value(p, issue, spec["fix"])
        if f0 is None or f1 is None:
            out.append(f"{issue}: a run is missing.")
            continue
        if not f0:
            verdict = (f"the symptom run ({spec['symptom']}) was NOT flagged ({v0}): at this "
                       "budget the symptom did not appear")
            if f1:
                verdict += (f"; the run with the notes' fix ({spec['fix']}) WAS flagged ({v1}): "
                            "here the fix produced the symptom, the opposite of the table")
        elif f1:
            moved = _improved(spec["detector"], v0, v1)
            verdict = (f"flagged in '{spec['symptom']}' ({v0}) and still flagged after the fix "
                       f"'{spec['fix']}' ({v1}): the notes' fix ({spec['seed_fix']}) "
                       + ("moved it the right way but did not cure it here" if moved
                          else "did not cure it here"))
        elif "ours" in spec:
            verdict = (f"flagged in '{spec['symptom']}' ({v0}), cleared by '{spec['fix']}' "
                       f"({v1}): the fix here is {spec['ours']}; the notes' table "
                       + (f"suggests '{spec['seed_fix']}' (cause: {spec['seed_cause']}), "
                          "which this run does not test" if spec["seed_fix"] != "-"
                          else "has no such row"))
        else:
            verdict = (f"flagged in '{spec['symptom']}' ({v0}), cleared by '{spec['fix']}' "
                       f"({v1}): agrees with the notes ({spec['seed_fix']})")
        out.append(f"{issue}: {verdict}.")
    return out


def practical_crops_figure(result: RunResult, tile: int | None = None):
    """One test tile (default: the one with the most structure, the largest standard
    deviation of the clean tile): clean, input and the output of several runs."""
    import matplotlib.pyplot as plt

    names = [m for m in ("1 MSE", "SSIM only", "4 + edge", "6 balanced", "transposed 3x3",
                         "resize-conv") if m in result.outputs]
    noisy, clean = result.pairs["gray"]
    if tile is None:
        tile = int(clean.flatten(1).std(dim=1).argmax())
    panels = [clean[tile], noisy[tile]] + [result.outputs[m][tile].clamp(0, 1) for m in names]
    titles = ["clean (dB)", "speckled input"] + names
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6))
    for ax, img, title in zip(np.atleast_1d(axes), panels, titles, strict=True):
        ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(f"Autoencoder outputs on test tile {tile} (unit-dB scale)")
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="practical-guide",
    title="A SAR autoencoder through the experimentation order; common issues on purpose",
    sizes=PRACTICAL_SIZES,
    run=_run_practical,
    chapter="notebooks/12_practical_guide",
    figures={"crops": practical_crops_figure},
    findings=practical_findings,
))
