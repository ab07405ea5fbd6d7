r"""Symptoms of a reconstruction or a training run, measured: what to run at 2 a.m.

Every detector takes a prediction and its target (or a training
:class:`~lossbook.train.History`, or a combined loss on a batch) and returns a
:class:`Diagnosis`: the number it measured, the threshold it compared it with, whether
it fired, and a one-line verdict that names the likely cause and the usual fix.
:func:`diagnose` runs all the image detectors at once; :func:`training_health` reads a
history; :func:`loss_balance` weighs the terms of a ``CombinedLoss`` by their gradients.

=================  ==========================================  =========================
symptom            statistic (per image, then averaged)        fires when
=================  ==========================================  =========================
blur               sharpness ratio: high-frequency share of    ratio < 0.7
                   the prediction / the target's
                   (:mod:`lossbook.spectral`)
noise              std of the high-passed residual in the      > 0.01 x data_range
                   flattest quarter of the target
brightness/colour  per-channel mean bias / data_range;         \|bias\| > 0.02, or
                   per-channel contrast ratio std(pred)/        \|ratio - 1\| > 0.15
                   std(target)
edges              Sobel gradient of the prediction / the      ratio < 0.8
                   target's, on the target's strongest 10 %
                   of pixels
checkerboard       power at the upsampling frequencies         peak > 30x (and > 2x the
                   (k/factor cycles/pixel) / the median power  target's); median over
                   around them                                 images
=================  ==========================================  =========================

The thresholds are defaults, not laws: they were chosen so that each symptom, produced
on purpose in Chapter 12, is flagged and the clean case is not; pass your own.

References
----------
A. Odena, V. Dumoulin, C. Olah, "Deconvolution and checkerboard artifacts", Distill, 2016
(transposed convolutions with a kernel not divisible by the stride leave a checkerboard).
Z. Chen, V. Badrinarayanan, C.-Y. Lee, A. Rabinovich, "GradNorm: gradient normalization
for adaptive loss balancing in deep multitask networks", ICML 2018 (balancing terms by
their gradient norms, as :func:`loss_balance` does once, on a batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_data_range, check_finite, check_pair
from .losses import sobel
from .spectral import _power_2d, sharpness_ratio

__all__ = [
    "Diagnosis",
    "Balance",
    "blur",
    "noise",
    "shift",
    "edges",
    "checkerboard",
    "diagnose",
    "training_health",
    "loss_balance",
    "report",
]


@dataclass(frozen=True)
class Diagnosis:
    """The result of one detector.

    Attributes
    ----------
    symptom : str
        ``"blur"``, ``"noise"``, ``"shift"``, ``"checkerboard"`` or a training check.
    flagged : bool
        Whether the symptom is present by the detector's threshold.
    value : float
        The statistic compared with ``threshold`` (batch mean of ``per_image``; the
        median for the checkerboard).
    threshold : float
        The threshold used.
    verdict : str
        One line: what was measured, against what, and (when flagged) the usual fix.
    per_image : list of float
        The statistic for each image (empty for training checks).
    details : dict
        Further numbers (e.g. per-channel biases).
    """

    symptom: str
    flagged: bool
    value: float
    threshold: float
    verdict: str
    per_image: list[float] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.verdict


def report(diagnoses: Sequence[Diagnosis] | Mapping[str, Diagnosis]) -> str:
    """The verdicts, one per line, flagged ones marked ``!!``."""
    items = diagnoses.values() if isinstance(diagnoses, Mapping) else diagnoses
    return "\n".join(f"{'!!' if d.flagged else 'ok'} {d.verdict}" for d in items)


def _positive(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number; got {value!r}.")
    return float(value)


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    check_pair(pred, target, ("pred", "target"))
    check_finite(pred, "pred")
    check_finite(target, "target")
    dtype = torch.float64 if pred.dtype == torch.float64 else torch.float32
    return pred.detach().to(dtype), target.detach().to(dtype)


# ------------------------------------------------------------------------------ images


def blur(pred: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.7,
         cutoff: float = 0.25) -> Diagnosis:
    r"""Blur: the prediction has lost high-frequency power that the target has.

    Statistic: :func:`lossbook.spectral.sharpness_ratio`, the share of non-DC power
    above ``cutoff`` cycles/pixel in the prediction divided by the target's (Hann window,
    mean removed), averaged over the batch. Fires when it is below ``threshold``.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``, at least 4 x 4.
    threshold : float
        Default 0.7: the prediction keeps less than 70 % of the target's high-frequency
        share.
    cutoff : float
        Default 0.25 cycles/pixel (half of Nyquist).
    """
    threshold = _positive(threshold, "threshold")
    pred, target = _pair(pred, target)
    ratio = sharpness_ratio(pred, target, cutoff)
    value = float(ratio.mean())
    flagged = value < threshold
    if flagged:
        verdict = (f"blur: the prediction keeps {value:.2f}x the target's high-frequency "
                   f"share (threshold {threshold:g}). Likely an averaging loss (MSE/L1) on an "
                   "ambiguous task: raise the SSIM or gradient-loss weight, or add a "
                   "feature loss.")
    else:
        verdict = (f"blur: high-frequency share {value:.2f}x the target's (not below "
                   f"{threshold:g}).")
    return Diagnosis("blur", flagged, value, threshold, verdict, ratio.tolist(),
                     {"cutoff": cutoff})


def _box(x: torch.Tensor, size: int) -> torch.Tensor:
    return F.avg_pool2d(F.pad(x, [size // 2] * 4, mode="reflect"), size, stride=1)


def _flat_mask(target: torch.Tensor, flat_fraction: float, size: int = 7) -> torch.Tensor:
    """The ``flat_fraction`` of pixels of each image (channel-averaged) where the
    target's local standard deviation in a ``size`` x ``size`` box is lowest."""
    mu = _box(target, size)
    sd = (_box(target * target, size) - mu * mu).clamp_min(0).sqrt().mean(dim=1)  # (N, H, W)
    q = torch.quantile(sd.flatten(1), flat_fraction, dim=1)
    return sd <= q[:, None, None]


def noise(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0,
          threshold: float = 0.01, flat_fraction: float = 0.25) -> Diagnosis:
    r"""Noise: high-frequency energy that the prediction has, and the target has not,
    where the target is flat.

    With :math:`x` the prediction and :math:`y` the target, both are high-passed with a
    3 x 3 box, :math:`h(u) = u - B_3 * u`, and the
    mean of :math:`h^2` is taken over the ``flat_fraction`` of pixels where the target's
    7 x 7 local standard deviation is lowest. Noise independent of the image adds to the
    prediction's high-passed energy: for white noise of standard deviation
    :math:`\sigma`, :math:`E[h^2]` grows by :math:`\tfrac89\sigma^2`, so

    .. math:: \hat\sigma = \sqrt{\tfrac98\,\max\bigl(0,\ \overline{h(x)^2} -
              \overline{h(y)^2}\bigr)}

    estimates the noise level added, in image units. (The excess over the target's own
    energy, rather than the energy of the residual :math:`h(x - y)`, is what keeps
    blur quiet: blur *removes* high-frequency energy, so its residual is high-frequency
    too, but its excess is negative.) Fires when :math:`\hat\sigma` exceeds
    ``threshold * data_range``.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``, at least 8 x 8.
    data_range : float
        Value range of the images. Default 1.0.
    threshold : float
        As a fraction of ``data_range``; default 0.01 (2.55 grey levels of 255).
    flat_fraction : float
        Share of pixels treated as flat, in (0, 1]. Default 0.25.
    """
    L = check_data_range(data_range)
    threshold = _positive(threshold, "threshold")
    if not 0 < flat_fraction <= 1:
        raise ValueError(f"flat_fraction must be in (0, 1]; got {flat_fraction!r}.")
    pred, target = _pair(pred, target)
    if min(pred.shape[-2:]) < 8:
        raise ValueError(f"noise needs images of at least 8 x 8; got {tuple(pred.shape[-2:])}.")
    mask = _flat_mask(target, flat_fraction)[:, None].expand_as(pred)
    count = mask.flatten(1).sum(1)

    def energy(z: torch.Tensor) -> torch.Tensor:
        h = z - _box(z, 3)
        return (h * h * mask).flatten(1).sum(1) / count

    excess = energy(pred) - energy(target)
    sigma = (9 / 8 * excess.clamp_min(0)).sqrt() / L
    value = float(sigma.mean())
    flagged = value > threshold
    if flagged:
        verdict = (f"noise: {value:.4f} x data_range of added high-frequency noise in flat "
                   f"regions (threshold {threshold:g}). Likely a structural loss alone (SSIM "
                   "is blind in flat patches) or too few steps: add or raise the MSE/L1 term, "
                   "or add a small TV term.")
    else:
        verdict = (f"noise: {value:.4f} x data_range added in flat regions (not above "
                   f"{threshold:g}).")
    return Diagnosis("noise", flagged, value, threshold, verdict, sigma.tolist(),
                     {"flat_fraction": flat_fraction})


def shift(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0,
          threshold: float = 0.02, contrast_threshold: float = 0.15) -> Diagnosis:
    r"""Brightness, colour and contrast shift: per-channel mean and spread against the target.

    For every image and channel :math:`c`, with :math:`x` the prediction, :math:`y` the
    target and :math:`R` the data range,

    .. math:: b_c = \frac{\bar x_c - \bar y_c}{R}, \qquad
              k_c = \frac{\operatorname{std}(A_4 x_c)}{\operatorname{std}(A_4 y_c)},

    with :math:`A_4` the means of 4 x 4 blocks (images of 16 pixels or more): the
    contrast of the coarse picture, which blur and noise leave nearly alone.

    ``value`` is the largest :math:`|b_c|` (mean over images). Fires when
    :math:`\max_c |b_c|` exceeds ``threshold`` or :math:`\max_c |k_c - 1|` exceeds
    ``contrast_threshold``. The verdict says *colour* shift when the channels' biases
    differ by more than ``threshold`` and *brightness* shift when they move together.
    SSIM's luminance term is weak for bright images and MS-SSIM uses it only at the
    coarsest scale, so a structural loss alone lets the mean drift; a pixel loss
    (MSE, L1) pins it.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``.
    data_range : float
        Value range. Default 1.0.
    threshold : float
        Mean bias as a fraction of ``data_range``; default 0.02 (5 grey levels of 255).
    contrast_threshold : float
        Allowed relative change of the standard deviation; default 0.15.
    """
    L = check_data_range(data_range)
    threshold = _positive(threshold, "threshold")
    contrast_threshold = _positive(contrast_threshold, "contrast_threshold")
    pred, target = _pair(pred, target)
    bias = (pred.mean(dim=(-2, -1)) - target.mean(dim=(-2, -1))) / L  # (N, C)
    k = 4 if min(pred.shape[-2:]) >= 16 else 1
    sd_t = F.avg_pool2d(target, k).std(dim=(-2, -1), unbiased=False)
    sd_p = F.avg_pool2d(pred, k).std(dim=(-2, -1), unbiased=False)
    contrast = sd_p / sd_t.clamp_min(1e-12)
    worst_bias = bias.abs().max(dim=1).values  # (N,)
    worst_contrast = (contrast - 1).abs().max(dim=1).values
    value = float(worst_bias.mean())
    c_value = float(worst_contrast.mean())
    mean_bias = bias.mean(0)
    spread = float(mean_bias.max() - mean_bias.min())
    kind = "colour" if spread > threshold else "brightness"
    flag_bias, flag_contrast = value > threshold, c_value > contrast_threshold
    flagged = flag_bias or flag_contrast
    biases = ", ".join(f"{b:+.3f}" for b in mean_bias.tolist())
    contrasts = ", ".join(f"{k:.2f}" for k in contrast.mean(0).tolist())
    if flagged:
        what = []
        if flag_bias:
            what.append(f"{kind} shift: mean bias per channel [{biases}] x data_range "
                        f"(threshold {threshold:g})")
        if flag_contrast:
            what.append(f"contrast ratio per channel [{contrasts}] (threshold "
                        f"+-{contrast_threshold:g})")
        verdict = ("shift: " + "; ".join(what) + ". Likely a loss blind to the mean "
                   "(SSIM/MS-SSIM alone, a feature loss): include an MSE or L1 term.")
    else:
        verdict = (f"shift: mean bias per channel [{biases}], contrast [{contrasts}] "
                   f"(within {threshold:g} and +-{contrast_threshold:g}).")
    return Diagnosis("shift", flagged, value, threshold, verdict, worst_bias.tolist(),
                     {"bias": bias.mean(0).tolist(), "contrast": contrast.mean(0).tolist(),
                      "contrast_value": c_value, "contrast_threshold": contrast_threshold,
                      "kind": kind})


def edges(pred: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.8,
          edge_fraction: float = 0.1) -> Diagnosis:
    r"""Lost edges: how much of the target's edge contrast the prediction keeps, on its edges.

    With :math:`|\nabla u|` the Sobel gradient magnitude (normalised Sobel, replicate
    padding, :func:`lossbook.losses.sobel`) and :math:`E` the ``edge_fraction`` of pixels
    where the target's is largest (its edges),

    .. math:: e = \frac{\sum_E |\nabla x|}{\sum_E |\nabla y|},

    per image, averaged. 1 keeps every edge as steep as in the target; a blurred or
    misplaced edge gives less. Fires below ``threshold``. Unlike :func:`blur` it looks
    only where the target has edges, so noise in flat regions cannot hide it.

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(N, C, H, W)``.
    threshold : float
        Default 0.8.
    edge_fraction : float
        Share of pixels counted as edges, in (0, 1). Default 0.1.
    """
    threshold = _positive(threshold, "threshold")
    if not 0 < edge_fraction < 1:
        raise ValueError(f"edge_fraction must be in (0, 1); got {edge_fraction!r}.")
    pred, target = _pair(pred, target)

    def magnitude(z: torch.Tensor) -> torch.Tensor:
        gx, gy = sobel(z, normalized=True)
        return (gx * gx + gy * gy).sqrt().mean(dim=1).flatten(1)  # (N, HW)

    mt, mp = magnitude(target), magnitude(pred)
    q = torch.quantile(mt, 1 - edge_fraction, dim=1, keepdim=True)
    on_edges = (mt >= q).to(mt.dtype)
    ratio = (mp * on_edges).sum(1) / (mt * on_edges).sum(1).clamp_min(1e-12)
    value = float(ratio.mean())
    flagged = value < threshold
    if flagged:
        verdict = (f"edges: the prediction keeps {value:.2f}x the target's gradient on its "
                   f"edges (threshold {threshold:g}). Add a gradient (Sobel) loss term, or "
                   "raise the SSIM weight.")
    else:
        verdict = (f"edges: {value:.2f}x the target's gradient on its edges (not below "
                   f"{threshold:g}).")
    return Diagnosis("edges", flagged, value, threshold, verdict, ratio.tolist(),
                     {"edge_fraction": edge_fraction})


def _peak_ratio(x: torch.Tensor, factor: int, radius: int = 4) -> torch.Tensor:
    """Per image: the largest ratio of the power at an upsampling frequency (a/f, b/f)
    to the median power of the bins around it (a ring of Chebyshev radius 2..radius)."""
    power, _ = _power_2d(x, "hann")  # (N, H, W)
    n, h, w = power.shape
    offsets = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
               if max(abs(dy), abs(dx)) >= 2]
    best = torch.zeros(n, dtype=power.dtype, device=power.device)
    for a in range(factor):
        for b in range(factor):
            if a == 0 and b == 0:
                continue
            u, v = round(a * h / factor) % h, round(b * w / factor) % w
            peak = power[:, u, v]
            ring = torch.stack([power[:, (u + dy) % h, (v + dx) % w] for dy, dx in offsets], 1)
            background = ring.median(dim=1).values.clamp_min(torch.finfo(power.dtype).tiny)
            best = torch.maximum(best, peak / background)
    return best


def checkerboard(pred: torch.Tensor, target: torch.Tensor | None = None, *, factor: int = 2,
                 threshold: float = 30.0) -> Diagnosis:
    r"""Checkerboard artefacts: spectral peaks at the upsampling frequencies.

    A stride-``factor`` transposed convolution (or an untuned pixel shuffle) repeats a
    pattern every ``factor`` pixels, which puts power at the frequencies
    :math:`(a/f, b/f)` cycles/pixel, :math:`0 \le a, b < f`, not both 0 (for
    :math:`f = 2`: (0, 0.5), (0.5, 0) and (0.5, 0.5)). Statistic: the power at those
    FFT bins (Hann window, mean removed, channels averaged) divided by the median power
    of the bins 2 to 4 bins away, the largest over the frequencies; ``value`` is its
    median over the batch (one textured image should not decide). Natural 64 x 64
    images give about 0.5 to 20 (fine periodic textures the most); a stride-2
    transposed convolution, hundreds or more. Fires when it exceeds ``threshold`` and,
    if a target is given, is also more than twice the target's own median (an image
    that really has a period-``factor`` texture is not an artefact).

    Parameters
    ----------
    pred : torch.Tensor
        ``(N, C, H, W)``, at least 16 x 16.
    target : torch.Tensor, optional
        The reference; its own peak ratio is reported in ``details``.
    factor : int
        The upsampling factor (2 for one stride-2 layer; 4 finds both 2 and 4).
    threshold : float
        Default 30 (about 15 dB above the surrounding spectrum).
    """
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise ValueError(f"factor must be an int >= 2 (the upsampling factor); got {factor!r}.")
    threshold = _positive(threshold, "threshold")
    if target is None:
        from ._validate import check_image

        check_image(pred, "pred")
        check_finite(pred, "pred")
        pred = pred.detach()
    else:
        pred, target = _pair(pred, target)
    if min(pred.shape[-2:]) < 16:
        raise ValueError(f"checkerboard needs images of at least 16 x 16; got "
                         f"{tuple(pred.shape[-2:])}.")
    ratio = _peak_ratio(pred, factor)
    value = float(ratio.median())
    details: dict = {"factor": factor}
    flagged = value > threshold
    if target is not None:
        t_value = float(_peak_ratio(target, factor).median())
        details["target_value"] = t_value
        flagged = flagged and value > 2 * t_value
    if flagged:
        verdict = (f"checkerboard: power at the 1/{factor}-pixel frequencies is {value:.1f}x "
                   f"its surroundings (threshold {threshold:g}). Likely transposed "
                   "convolutions whose kernel is not divisible by the stride: upsample "
                   "(nearest/bilinear) then convolve, or initialise pixel shuffle with "
                   "ICNR.")
    else:
        verdict = (f"checkerboard: peak at the 1/{factor}-pixel frequencies {value:.1f}x "
                   f"its surroundings (not above {threshold:g}"
                   + (", or not above twice the target's" if target is not None else "")
                   + ").")
    return Diagnosis("checkerboard", flagged, value, threshold, verdict, ratio.tolist(),
                     details)


def diagnose(pred: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0,
             factor: int = 2) -> dict[str, Diagnosis]:
    """Run every image detector: ``{"blur", "noise", "shift", "edges", "checkerboard"}``.

    ``print(report(diagnose(pred, target)))`` prints one line per symptom.
    """
    return {
        "blur": blur(pred, target),
        "noise": noise(pred, target, data_range=data_range),
        "shift": shift(pred, target, data_range=data_range),
        "edges": edges(pred, target),
        "checkerboard": checkerboard(pred, target, factor=factor),
    }


# ------------------------------------------------------------------------------ training


def _slope(y: Sequence[float]) -> float:
    """Least-squares slope of ``y`` against its index."""
    n = len(y)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    my = sum(y) / n
    num = sum((i - mx) * (v - my) for i, v in enumerate(y))
    den = sum((i - mx) ** 2 for i in range(n))
    return num / den


def training_health(history, *, spike_factor: float = 3.0, plateau_tol: float = 0.01,
                    diverge_factor: float = 1.5, metric: str = "psnr"
                    ) -> dict[str, Diagnosis]:
    r"""Read a training :class:`~lossbook.train.History` for trouble.

    Checks (on the logged losses :math:`\ell_1, \dots, \ell_T`):

    * ``nan``: any non-finite logged loss or component.
    * ``divergence``: the last logged loss exceeds ``diverge_factor`` times the lowest
      one seen (the run got worse than it had been), or ends above where it began.
    * ``spikes``: steps where :math:`\ell_t > ` ``spike_factor`` :math:`\times` the median
      of the five previous values; fires on any.
    * ``plateau``: the loss fell by less than ``plateau_tol`` (relative) over the last
      third of the run. Fires as information: more steps at this learning rate will not
      help; lower it, or stop.
    * ``metric``: the validation ``metric`` (higher is better, e.g. PSNR) falls over the
      second half of the validation points while the training loss falls: the loss is
      not optimising what you measure (or the model overfits).

    Parameters
    ----------
    history : History
        Or any object with ``step``, ``loss``, ``components``, ``val_step`` and ``val``.
    spike_factor, plateau_tol, diverge_factor : float
        Thresholds (defaults 3, 0.01, 1.5).
    metric : str
        Validation metric to watch, higher-is-better. Default ``"psnr"``.

    Returns
    -------
    dict of str to Diagnosis
        ``{"nan", "divergence", "spikes", "plateau", "metric"}``.
    """
    for name in ("loss", "step"):
        if not hasattr(history, name):
            raise TypeError(f"history must be a lossbook.train.History (with .loss and .step); "
                            f"got {type(history).__name__}.")
    losses = [float(v) for v in history.loss]
    if len(losses) < 2:
        raise ValueError(f"training_health needs at least 2 logged losses; got {len(losses)}. "
                         "Train longer or log more often (fit(..., log_every=...)).")
    out: dict[str, Diagnosis] = {}

    bad = [s for s, v in zip(history.step, losses, strict=False) if not math.isfinite(v)]
    for values in getattr(history, "components", {}).values():
        bad += [s for s, v in zip(history.step, values, strict=False) if not math.isfinite(v)]
    bad = sorted(set(bad))
    out["nan"] = Diagnosis(
        "nan", bool(bad), float(len(bad)), 0.0,
        (f"nan: non-finite loss at logged steps {bad[:5]}: lower the learning rate, clip "
         "gradients, or look for a division by zero (SSIM's constants, a log of 0).")
        if bad else "nan: every logged loss is finite.", [], {"steps": bad})

    finite = [v for v in losses if math.isfinite(v)]
    lowest = min(finite) if finite else math.nan
    last = losses[-1]
    ratio = last / lowest if lowest > 0 else (math.inf if last > lowest else 1.0)
    diverged = (not math.isfinite(last)) or ratio > diverge_factor or last > losses[0]
    out["divergence"] = Diagnosis(
        "divergence", diverged, ratio, diverge_factor,
        (f"divergence: the last loss {last:.4g} is {ratio:.2f}x the lowest {lowest:.4g} "
         f"(threshold {diverge_factor:g}) or above the first {losses[0]:.4g}: lower the "
         "learning rate (try 10x lower) or add grad_clip.")
        if diverged else
        f"divergence: the last loss is {ratio:.2f}x the lowest (not above {diverge_factor:g}).")

    spikes = []
    for t in range(1, len(losses)):
        prev = sorted(losses[max(0, t - 5):t])
        med = prev[len(prev) // 2]
        if math.isfinite(losses[t]) and med > 0 and losses[t] > spike_factor * med:
            spikes.append(history.step[t])
    out["spikes"] = Diagnosis(
        "spikes", bool(spikes), float(len(spikes)), spike_factor,
        (f"spikes: the loss jumped above {spike_factor:g}x its recent median at steps "
         f"{spikes[:5]}: lower the learning rate, add grad_clip, or check the batches "
         "(a flat patch under SSIM, an outlier image).")
        if spikes else f"spikes: none above {spike_factor:g}x the recent median.",
        [], {"steps": spikes})

    tail = finite[-max(2, len(finite) // 3):]
    drop = (tail[0] - tail[-1]) / abs(tail[0]) if tail and tail[0] != 0 else 0.0
    plateau = drop < plateau_tol
    out["plateau"] = Diagnosis(
        "plateau", plateau, drop, plateau_tol,
        (f"plateau: the loss fell by {100 * drop:.1f} % over the last third of the run "
         f"(threshold {100 * plateau_tol:g} %): more steps at this learning rate will not "
         "help; lower it (a schedule), change the loss, or stop.")
        if plateau else
        f"plateau: the loss still fell by {100 * drop:.1f} % over the last third.")

    vals = list(getattr(history, "val", {}).get(metric, []))
    vsteps = list(getattr(history, "val_step", []))
    if len(vals) >= 3:
        half = vals[len(vals) // 2 - 1:] if len(vals) > 3 else vals
        lo_step = vsteps[len(vals) // 2 - 1] if len(vals) > 3 else vsteps[0]
        loss_half = [v for s, v in zip(history.step, losses, strict=False) if s >= lo_step]
        m_slope, l_slope = _slope(half), _slope(loss_half)
        bad_metric = m_slope < 0 and l_slope < 0
        verdict = (f"metric: validation {metric} falls (slope {m_slope:.3g} per check) while "
                   "the training loss falls: the loss is not optimising what you measure, or "
                   "the model overfits; check the loss terms and the validation data."
                   if bad_metric else
                   f"metric: validation {metric} does not fall while the loss falls (slope "
                   f"{m_slope:.3g} per check).")
        out["metric"] = Diagnosis("metric", bad_metric, m_slope, 0.0, verdict)
    else:
        out["metric"] = Diagnosis("metric", False, math.nan, 0.0,
                                  f"metric: fewer than 3 validation points of {metric!r}; "
                                  "pass val_data to fit to watch it.")
    return out


# ------------------------------------------------------------------------------ balance


@dataclass(frozen=True)
class Balance:
    """What :func:`loss_balance` measured.

    Attributes
    ----------
    names : list of str
        The terms.
    weights : list of float
        Their current weights.
    grad_norm_output : list of float
        :math:`\\|\\nabla_{x} \\mathcal{L}_i\\|_2`, unweighted.
    grad_norm_params : list of float or None
        :math:`\\|\\nabla_\\theta \\mathcal{L}_i\\|_2`, unweighted (when a model was given).
    balanced : list of float
        Weights (summing to 1) that give every term the same weighted gradient norm
        (on the parameters when available, else on the output).
    imbalance : float
        Largest / smallest *weighted* gradient norm with the current weights.
    verdict : str
        One line.
    """

    names: list[str]
    weights: list[float]
    grad_norm_output: list[float]
    grad_norm_params: list[float] | None
    balanced: list[float]
    imbalance: float
    verdict: str

    def __str__(self) -> str:
        return self.verdict

    def as_terms(self, fns: Mapping) -> dict:
        """``{name: (balanced weight, fn)}``, ready for ``CombinedLoss``."""
        return {n: (w, fns[n]) for n, w in zip(self.names, self.balanced, strict=True)}


def _scalar(name: str, out: object) -> torch.Tensor:
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.numel() != 1:
        raise ValueError(f"loss term {name!r} must return a scalar tensor.")
    return out.reshape(())


def loss_balance(loss, pred: torch.Tensor, target: torch.Tensor, *,
                 model: nn.Module | None = None, inputs: torch.Tensor | None = None,
                 threshold: float = 10.0) -> Balance:
    r"""Weigh the terms of a combined loss by their gradients, and the weights that balance them.

    For a loss :math:`\mathcal{L} = \sum_i w_i \mathcal{L}_i` the term that moves the
    network is not the one with the largest *value* but the one with the largest
    weighted *gradient*, :math:`w_i \|\nabla \mathcal{L}_i\|`. This function computes,
    on one batch, the unweighted gradient norm of every term with respect to the output
    :math:`x` and (given ``model`` and ``inputs``) the parameters :math:`\theta`,
    and the weights

    .. math:: w_i^\star = \frac{1/g_i}{\sum_j 1/g_j}, \qquad
              g_i = \|\nabla_\theta \mathcal{L}_i\|_2 \ (\text{else } \|\nabla_{x}
              \mathcal{L}_i\|_2),

    with which every term pulls equally hard. A principled start for the weights of a
    combined loss, measured rather than guessed; GradNorm (Chen et al. 2018)
    adapts such weights during training, this is a one-shot version.

    Parameters
    ----------
    loss : CombinedLoss or dict
        A :class:`~lossbook.losses.CombinedLoss` (its ``weights`` and ``fns``), or a dict
        ``{name: (weight, fn)}``.
    pred, target : torch.Tensor
        A batch ``(N, C, H, W)``. ``pred`` is used as is for the output gradients (it is
        detached first); with ``model`` and ``inputs`` the prediction is recomputed as
        ``model(inputs)`` for the parameter gradients.
    model : nn.Module, optional
    inputs : torch.Tensor, optional
    threshold : float
        Fires (verdict) when the largest weighted gradient norm is more than this many
        times the smallest. Default 10.

    Returns
    -------
    Balance
    """
    if hasattr(loss, "weights") and hasattr(loss, "fns"):
        terms = {n: (loss.weights[n], loss.fns[n]) for n in loss.fns}
    elif isinstance(loss, Mapping):
        terms = dict(loss)
    else:
        raise TypeError(f"loss must be a CombinedLoss or a dict {{name: (weight, fn)}}; got "
                        f"{type(loss).__name__}.")
    if not terms:
        raise ValueError("loss has no terms.")
    if (model is None) != (inputs is None):
        raise ValueError("pass both model and inputs (for parameter gradients), or neither.")
    check_pair(pred, target, ("pred", "target"))
    names = list(terms)
    weights = [float(terms[n][0]) for n in names]
    target = target.detach()
    g_out = []
    for n in names:
        x = pred.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(_scalar(n, terms[n][1](x, target)), x)
        g_out.append(float(g.norm()))
    g_par = None
    if model is not None:
        params = [p for p in model.parameters() if p.requires_grad]
        g_par = []
        for n in names:
            out = model(inputs)
            grads = torch.autograd.grad(_scalar(n, terms[n][1](out, target)), params,
                                        allow_unused=True)
            g_par.append(math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None)))
    g = g_par if g_par is not None else g_out
    tiny = 1e-30
    inv = [1.0 / max(v, tiny) for v in g]
    balanced = [v / sum(inv) for v in inv]
    weighted = [w * v for w, v in zip(weights, g, strict=True)]
    pos = [v for v in weighted if v > 0]
    imbalance = max(pos) / min(pos) if pos else 1.0
    big = names[weighted.index(max(weighted))]
    where = "parameters" if g_par is not None else "output"
    shares = ", ".join(f"{n} {w:.3g}" for n, w in zip(names, balanced, strict=True))
    if imbalance > threshold:
        verdict = (f"balance: {big!r} pulls {imbalance:.1f}x harder than the weakest term "
                   f"(gradient norms on the {where}; threshold {threshold:g}). Weights that "
                   f"balance them: {shares}.")
    else:
        verdict = (f"balance: weighted gradient norms within {imbalance:.1f}x of each other "
                   f"(on the {where}). Equalising weights: {shares}.")
    return Balance(names, weights, g_out, g_par, balanced, imbalance, verdict)
