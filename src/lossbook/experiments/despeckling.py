"""Experiment ``despeckle-domains`` (Chapter 6): despeckling in the linear and the dB domain.

One DnCNN trained on single-look SAR speckle in two domains (linear intensity, and dB
images rescaled by :func:`lossbook.sar.to_unit_db`) with four losses (MSE, MSE + SSIM,
MSE + TV with ID-CNN's weight translated to our normalisation, and MSE + an ENL-aware
term), against the Lee filter; scored on held-out test images with PSNR and SSIM of the
intensity image, the PSNR of the dB image (``psnr_db``) and the ENL on flat regions
(``enl``). Chapter 6's question: in which domain should a despeckler be trained, and with
which loss?

    python -m lossbook run despeckle-domains --budget cpu --out runs
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import losses as L
from .. import sar
from ..budget import get_budget
from ..data import TEST_IMAGES, PatchSampler, load_images
from ..diagnose import loss_balance
from ..metrics import psnr as _psnr
from ..metrics import ssim as _ssim
from ..models import DnCNN
from ..stats import compare_methods
from ..train import fit
from .core import Experiment, RunResult, register, slug

__all__ = [
    "DESPECKLE_SIZES",
    "DESPECKLE_METHODS",
    "DESPECKLE_LOSSES",
    "DESPECKLE_DOMAINS",
    "DESPECKLE_SSIM_WEIGHT",
    "DESPECKLE_TV_WEIGHT",
    "DESPECKLE_TARGET_ENL",
    "despeckle_tv_weight",
    "despeckle_enl_term",
    "despeckle_enl_weight",
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

DESPECKLE_LOSSES: tuple[str, ...] = ("MSE", "MSE+SSIM", "MSE+TV", "MSE+ENL")
"""The four training losses of ``despeckle-domains``, on the output in its domain."""

DESPECKLE_DOMAINS: tuple[str, ...] = ("linear", "dB")
"""Where the network works: intensities, or dB images scaled by :func:`sar.to_unit_db`."""

DESPECKLE_METHODS: tuple[str, ...] = tuple(
    f"{loss} ({domain})" for domain in DESPECKLE_DOMAINS for loss in DESPECKLE_LOSSES)
"""The eight learned methods of ``despeckle-domains``, in table order."""

DESPECKLE_SIZES: dict[str, dict] = {
    "smoke": dict(looks=1, floor_db=-30.0, steps=10, batch_size=8, patch_size=32, depth=3,
                  width=16, batch_norm=True, lr=1e-3, train_size=96, test_size=64, n_test=2,
                  lee_size=7),
    "cpu": dict(looks=1, floor_db=-30.0, steps=500, batch_size=16, patch_size=32, depth=5,
                width=24, batch_norm=True, lr=1e-3, train_size=128, test_size=128, n_test=4,
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
DESPECKLE_TV_WEIGHT = 0.002
r"""ID-CNN's :math:`\lambda_{TV}` (Wang, Zhang, Patel 2017). Their Euclidean loss is a mean
over the :math:`W \times H` pixels but their TV a *sum* over them, so on our
pixel-averaged TV the same balance is :math:`0.002\,HW` (:func:`despeckle_tv_weight`),
for images on the same intensity scale (we use [0, 1])."""

DESPECKLE_TARGET_ENL = 100.0
"""Target ENL of the ENL-aware term: the ENL of a 100-look average (residual speckle of
10 % standard deviation) on flat regions; see :func:`despeckle_enl_term`."""

_ENL_WINDOW = 15  # window of the ENL-aware term's local statistics
_ENL_MIN_PIXELS = 32  # flat pixels a training patch needs to enter the ENL-aware term


def despeckle_tv_weight(height: int, width: int) -> float:
    """ID-CNN's TV weight on a pixel-averaged TV for ``height`` x ``width`` images:
    ``DESPECKLE_TV_WEIGHT * height * width`` (2.048 for 32 x 32 training patches)."""
    return DESPECKLE_TV_WEIGHT * height * width


def _intensity(t: torch.Tensor, domain: str, floor_db: float) -> torch.Tensor:
    return t if domain == "linear" else sar.from_unit_db(t, floor_db)


def despeckle_enl_term(p: torch.Tensor, t: torch.Tensor, *, domain: str = "linear",
                       floor_db: float = -30.0) -> torch.Tensor:
    r"""The ENL-aware term: :func:`lossbook.sar.enl_loss` of the output on the target's flat pixels.

    With :math:`x` the output and :math:`y` the clean target, both as intensities
    (converted from the dB scale when ``domain="dB"``):

    .. math:: \frac{1}{|M|}\sum_{q \in M}\bigl(\ln \mathrm{ENL}_x(q) -
              \ln \mathrm{ENL}^\star\bigr)^2, \qquad \mathrm{ENL}^\star = 100,

    over the pixels :math:`M` where the clean patch is flat (local
    :math:`\sigma/\mu < 2\,\%`, the chapter's test mask), with local statistics over the
    masked pixels of 15 x 15 windows. Patches with fewer than 32 flat pixels do not
    enter; a batch without any gives 0 (with a gradient of zeros). Negative linear
    outputs count as 0.
    """
    x = _intensity(p, domain, floor_db).clamp_min(0)
    mask = _flat_mask(_intensity(t, domain, floor_db))
    keep = mask.flatten(1).sum(dim=1) >= _ENL_MIN_PIXELS
    if not bool(keep.any()):
        return p.sum() * 0.0
    return sar.enl_loss(x[keep], DESPECKLE_TARGET_ENL, mask[keep], size=_ENL_WINDOW)


def despeckle_sizes(budget: str | None = None) -> dict:
    """The ``despeckle-domains`` sizes for ``budget`` (default: the current budget)."""
    return dict(DESPECKLE_SIZES[get_budget(budget).name])


def despeckle_loss(name: str, *, domain: str = "linear", floor_db: float = -30.0,
                   enl_weight: float | None = None,
                   ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    r"""The training loss ``name`` of ``despeckle-domains`` (one of ``DESPECKLE_LOSSES``).

    ``"MSE"``; ``"MSE+SSIM"``: MSE + 0.01 (1 - SSIM); ``"MSE+TV"``: ID-CNN's recipe
    (Wang, Zhang and Patel 2017), the pixel-averaged MSE + 0.002 times the isotropic TV
    (eps 1e-3) *summed* over each image's pixels, i.e. :math:`0.002\,HW` times our
    pixel-averaged TV (:func:`despeckle_tv_weight`);
    ``"MSE+ENL"``: MSE + ``enl_weight`` times :func:`despeckle_enl_term` (required for this
    loss; the experiment sets it with :func:`despeckle_enl_weight`). Each is applied to the
    network's output in the ``domain`` it works in.
    """
    if domain not in DESPECKLE_DOMAINS:
        raise ValueError(f"domain must be one of {DESPECKLE_DOMAINS}; got {domain!r}.")

    def mse_ssim(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return L.mse(p, t) + DESPECKLE_SSIM_WEIGHT * (1 - L.ssim(p, t))

    def mse_tv(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # TV summed per image
        tv = L.total_variation(p, "isotropic", "none", eps=1e-3).mean()
        return L.mse(p, t) + DESPECKLE_TV_WEIGHT * tv

    def mse_enl(p: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return L.mse(p, t) + enl_weight * despeckle_enl_term(p, t, domain=domain,
                                                             floor_db=floor_db)

    losses = {"MSE": L.mse, "MSE+SSIM": mse_ssim, "MSE+TV": mse_tv, "MSE+ENL": mse_enl}
    if name not in losses:
        raise ValueError(f"unknown loss {name!r}; choose from {', '.join(losses)}.")
    if name == "MSE+ENL" and (enl_weight is None or not enl_weight > 0):
        raise ValueError(f"the MSE+ENL loss needs a positive enl_weight; got {enl_weight!r}. "
                         "despeckle_enl_weight(sizes, domain) computes the experiment's.")
    return losses[name]


def despeckle_enl_weight(sizes: dict, domain: str, sampler: Callable | None = None) -> float:
    """The ENL-aware term's weight, by gradient balance (Chapter 3's criterion).

    On a fixed batch of training patches (seed 0) and at the speckled input itself (the
    output of a network that has learned nothing), the weight with which the ENL-aware
    term's gradient with respect to the output has the norm of the MSE's gradient:
    ``|grad MSE| / |grad ENL term|``, rounded to 3 significant digits so that the run's
    fingerprint does not depend on the last bits of the arithmetic.
    """
    if sampler is None:
        train = load_images("train", sizes["train_size"])
        sampler = PatchSampler(train, functools.partial(sar.add_speckle, looks=sizes["looks"]),
                               sizes["patch_size"])
        if domain == "dB":
            sampler = _UnitDbSampler(sampler, sizes["floor_db"])
    noisy, target = sampler(max(sizes["batch_size"], 16), torch.Generator().manual_seed(0))
    enl = functools.partial(despeckle_enl_term, domain=domain, floor_db=sizes["floor_db"])
    norms = loss_balance({"mse": (1.0, L.mse), "enl": (1.0, enl)}, noisy.cpu().double(),
                         target.cpu().double()).grad_norm_output
    if not norms[1] > 0:
        raise RuntimeError("the ENL-aware term has no gradient on the balance batch: no "
                           "training patch has enough flat pixels. Use larger patches.")
    return float(f"{norms[0] / norms[1]:.3g}")


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
    ratio :math:`x / y` of the raw output :math:`x` (negative values set to 0) to the clean
    image :math:`y` over the flat pixels of all test images pooled (see ``_flat_mask``):
    about :math:`L` for the speckled input, higher as speckle is removed (and as the output
    gets smoother).
    """
    shown = output.clamp(0, 1)  # images are stored in [0, 1]; the ENL uses the raw output
    side = clean.shape[-1]
    pooled = _flat_mask(clean).reshape(1, 1, -1, side)  # flat pixels of all images together
    per_image = _psnr(shown, clean, reduction="none")
    db_out, db_clean = sar.to_unit_db(shown, floor_db).clamp(0, 1), sar.to_unit_db(clean, floor_db)
    return {
        "psnr": float(_psnr(shown, clean)),
        "ssim": float(_ssim(shown, clean)),
        "psnr_db": float(_psnr(db_out, db_clean)),
        "enl": float(sar.enl((output.clamp_min(0) / clean).reshape(1, 1, -1, side), pooled)),
        "psnr_per_image": [float(v) for v in per_image],
        "psnr_db_per_image": [float(v) for v in _psnr(db_out, db_clean, reduction="none")],
        "ssim_per_image": [float(v) for v in _ssim(shown, clean, reduction="none")],
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
    enl_weights = {}
    for domain in DESPECKLE_DOMAINS:
        for loss in DESPECKLE_LOSSES:
            method = f"{loss} ({domain})"
            if methods is not None and method not in methods:
                continue
            if loss == "MSE+ENL" and domain not in enl_weights:
                enl_weights[domain] = despeckle_enl_weight(sizes, domain)
            model = make_despeckler(sizes)
            cb = None if callback is None else functools.partial(callback, method)
            # speckled intensities have a long tail with no upper bound: fit's first-batch
            # check keeps refusing NaN/inf, negative values and wrong shapes, not the tail
            loss_fn = despeckle_loss(loss, domain=domain, floor_db=floor_db,
                                     enl_weight=enl_weights.get(domain))
            h = fit(model, loss_fn, samplers[domain], steps=sizes["steps"],
                    batch_size=sizes["batch_size"], lr=sizes["lr"], device=device,
                    target_range=(0, None) if domain == "linear" else "data_range",
                    checkpoint=workdir / f"{slug(method)}.pt", seed=0, callback=cb,
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
        "loss_weights": {"mse+ssim": DESPECKLE_SSIM_WEIGHT,
                         "mse+tv (ID-CNN, summed TV)": DESPECKLE_TV_WEIGHT,
                         "mse+tv (our pixel-averaged TV)": despeckle_tv_weight(
                             sizes["patch_size"], sizes["patch_size"]),
                         "mse+enl": enl_weights, "target_enl": DESPECKLE_TARGET_ENL},
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
        best_lin, best_db = (max(rows, key=lambda r: r[col]) for rows in (lin, db))
        a, b = best_lin[col], best_db[col]
        line = (f"{col:>7}: best linear-domain net {a:.3f}, best dB-domain net {b:.3f}, "
                f"Lee {lee[col]:.3f}")
        per = f"{col}_per_image"
        if per in best_lin and per in best_db:
            (c,) = compare_methods({best_db["method"]: best_db[per],
                                    best_lin["method"]: best_lin[per]},
                                   metric=col, unit="dB" if col.startswith("psnr") else "",
                                   digits=2 if col.startswith("psnr") else 4)
            verdict = {best_db["method"]: "dB", best_lin["method"]: "linear"}.get(c["better"])
            line += (f" -> {verdict} domain better (dB minus linear {c['mean']:+.3g}, 95 % "
                     f"interval [{c['low']:+.3g}, {c['high']:+.3g}] over {c['n']} images)"
                     if verdict else
                     f" -> no difference shown between the domains (dB minus linear "
                     f"{c['mean']:+.3g}, 95 % interval [{c['low']:+.3g}, {c['high']:+.3g}] "
                     f"over {c['n']} images includes 0)")
        else:  # results written before per-image scores were stored
            line += f" -> {'dB' if b > a else 'linear'} domain higher on the mean"
        out.append(line + ("" if max(a, b) > lee[col] else "; Lee beats both on the mean"))
    return out + _regulariser_findings(p)


def _regulariser_findings(p: dict) -> list[str]:
    """MSE+TV and MSE+ENL against plain MSE in each domain: ENL reached, and the PSNR
    difference with its paired bootstrap interval over the test images."""
    rows = {r["method"]: r for r in p["results"]}
    out = []
    for domain in DESPECKLE_DOMAINS:
        base = rows.get(f"MSE ({domain})")
        for loss in ("MSE+TV", "MSE+ENL"):
            r = rows.get(f"{loss} ({domain})")
            if base is None or r is None or "psnr_per_image" not in r:
                continue
            (c,) = compare_methods({r["method"]: r["psnr_per_image"],
                                    base["method"]: base["psnr_per_image"]},
                                   metric="PSNR", unit="dB", digits=2)
            verdict = ("no PSNR difference shown" if c["better"] is None else
                       f"{'higher' if c['better'] == r['method'] else 'lower'} PSNR")
            target = (f" (target {DESPECKLE_TARGET_ENL:g})" if loss == "MSE+ENL" else "")
            out.append(f"{r['method']} vs {base['method']}: ENL on flat pixels {r['enl']:.1f}"
                       f"{target} vs {base['enl']:.1f}; {verdict} (difference "
                       f"{c['mean']:+.2f} dB, 95 % interval [{c['low']:+.2f}, "
                       f"{c['high']:+.2f}] over {c['n']} images)")
    return out


def despeckle_crops_figure(result: RunResult, image: int = 0, scale: str = "linear"):
    """Zoomed crops of one test image: clean, speckled, Lee and each domain's best network
    by SSIM; ``scale="dB"`` shows them on the :func:`sar.to_unit_db` scale."""
    from ..viz import show_images

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


EXPERIMENT = register(Experiment(
    name="despeckle-domains",
    title="Despeckling (L = 1) in the linear and the dB domain, four losses, vs Lee",
    sizes=DESPECKLE_SIZES,
    run=_run_despeckle_domains,
    chapter="notebooks/06_sar_speckle_db",
    figures={
        "crops": despeckle_crops_figure,
        "crops_db": functools.partial(despeckle_crops_figure, scale="dB"),
    },
    findings=despeckle_findings,
))
