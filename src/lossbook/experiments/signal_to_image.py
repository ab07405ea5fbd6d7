"""Experiment ``signal-to-image`` (Chapter 10): speed-of-sound maps from ultrasound traces.

A ring of transducers records, for every transmitter-receiver pair, a pulse arriving
after the straight-ray travel time through a speed-of-sound map (soft tissue with
elliptical inclusions; :mod:`lossbook.traveltime`). Reconstructions of the map:

* classical: arrival times picked by cross-correlation, then **Tikhonov** least squares
  (conjugate gradients) or **TV**-regularised least squares (Chambolle-Pock), their
  weights tuned for RMSE on *training* phantoms;
* learned, **direct**: a network from the traces ``(transmits, receivers, samples)`` to
  the map (the setting of the book's seed document and of AUTOMAP, Zhu et al. 2018);
* learned, **post-processing**: a U-Net on the Tikhonov reconstruction (Jin et al. 2017).

Each network is trained with MSE, with :math:`w_1\\,\\mathrm{MSE} + w_2(1 -
\\mathrm{SSIM})` for a few weights :math:`(w_1, w_2)` set by gradient balance, and with
Huber + TV. Everything is scored on held-out phantoms of the training family and on
out-of-distribution phantoms (rectangles): RMSE and MAE in m/s inside the ring, PSNR and
SSIM on the map scaled from 1400-1650 m/s to [0, 1], and each inclusion's contrast.

    python -m lossbook run signal-to-image --budget cpu --out runs
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import losses as L
from .. import traveltime as tt
from ..budget import get_budget
from ..diagnose import loss_balance
from ..metrics import psnr as _psnr
from ..metrics import ssim as _ssim
from ..models import UNet
from ..stats import paired_bootstrap
from ..train import fit
from .core import Experiment, RunResult, register, slug

__all__ = [
    "S2I_SIZES",
    "s2i_loss_names",
    "S2I_ARCHS",
    "S2I_METRICS",
    "HUBER_DELTA",
    "s2i_sizes",
    "s2i_ring",
    "S2IData",
    "make_s2i_data",
    "DirectNet",
    "PostNet",
    "make_s2i_model",
    "balanced_weights",
    "s2i_losses",
    "score_maps",
    "tune_classical",
    "avgpool_ssim",
    "ssim_border_comparison",
    "s2i_findings",
    "s2i_geometry_figure",
    "s2i_singular_values",
    "s2i_maps_figure",
    "s2i_curves_figure",
]

S2I_ARCHS = ("direct", "post")
"""The two learned reconstructions: ``direct`` (traces -> map) and ``post`` (U-Net on
the Tikhonov map)."""

S2I_METRICS = ("rmse", "mae", "psnr", "ssim", "contrast_error")
"""Columns of the results table: RMSE and MAE in m/s inside the ring, PSNR (dB) and SSIM
on the map scaled to [0, 1] (1400-1650 m/s), mean |contrast error| of the inclusions."""

HUBER_DELTA = 0.02
"""Huber's delta on the [0, 1] map: 0.02 x 250 m/s = 5 m/s, the size of a typical error."""

_SHARED = dict(radius=0.045, extent=0.1, snr_db=20.0)
S2I_SIZES: dict[str, dict] = {
    # smoke: only shows that the code runs.
    "smoke": dict(_SHARED, n_transducers=16, grid_size=32, n_samples=352, dt=2e-7,
                  frequency=0.5e6, delay=4e-6, n_train=24, n_val=4, n_test=4, n_ood=3,
                  n_tune=3, tune_points=2, tv_iters=60, cg_iters=60, steps=6, direct_steps=6,
                  batch_size=4,
                  lr=3e-3, log_every=2, features=2, width=8, unet_base=8, unet_levels=2,
                  ssim_ratios=(1.0,), ssim_win=7),
    # cpu: 5 min wall, 3.3 CPU-minutes, on the shared 2-core machine (measured under flock).
    "cpu": dict(_SHARED, n_transducers=24, grid_size=48, n_samples=352, dt=2e-7,
                frequency=1e6, delay=3e-6, n_train=256, n_val=8, n_test=16, n_ood=12,
                n_tune=8, tune_points=5, tv_iters=300, cg_iters=100, steps=400,
                direct_steps=200, batch_size=8, lr=3e-3, log_every=10, features=4, width=16,
                unet_base=12, unet_levels=2, ssim_ratios=(1.0, 4.0), ssim_win=11),
    # gpu: closer to the seed (more channels and samples, a finer grid).
    "gpu": dict(_SHARED, n_transducers=64, grid_size=128, n_samples=1344, dt=5e-8,
                frequency=2e6, delay=1.5e-6, n_train=4096, n_val=16, n_test=32, n_ood=24,
                n_tune=16, tune_points=7, tv_iters=500, cg_iters=300, steps=3000,
                direct_steps=3000, batch_size=16, lr=1e-3, log_every=25, features=2, width=48,
                unet_base=32, unet_levels=3, ssim_ratios=(0.25, 1.0, 4.0), ssim_win=11),
}
"""Sizes of ``signal-to-image`` per budget. The ring (radius 4.5 cm) sits in a 10 cm
square of ``grid_size``\\ :sup:`2` pixels; ``n_transducers`` transmit in turn; traces have
``n_samples`` samples every ``dt`` seconds, a Gabor pulse of centre ``frequency`` and
white noise at ``snr_db`` (peak / noise std). Training uses a fixed set of ``n_train``
phantoms (each with its own noise draw), ``steps`` Adam steps of ``batch_size``
(learning rate ``lr``, cosine decay) for the post-processing networks and
``direct_steps`` for the direct ones (at ``cpu`` a direct step costs about twice a
post-processing step, and 200 more of them do not rescue it).
``ssim_ratios``: the MSE+SSIM losses trained, as multiples of the gradient-balanced
SSIM weight."""


def s2i_sizes(budget: str | None = None) -> dict:
    """The ``signal-to-image`` sizes for ``budget`` (default: the current budget)."""
    return dict(S2I_SIZES[get_budget(budget).name])


def s2i_ring(sizes: dict) -> tt.Ring:
    """The transducer ring of these sizes."""
    return tt.Ring(sizes["n_transducers"], sizes["radius"], sizes["grid_size"],
                   sizes["extent"])


def s2i_loss_names(sizes: dict) -> tuple[str, ...]:
    """The training losses, in table order: MSE, the MSE+SSIM variants, Huber+TV."""
    return ("MSE", *(f"MSE+SSIM x{r:g}" for r in sizes["ssim_ratios"]), "Huber+TV")


# ------------------------------------------------------------------------- data


_CACHE_BYTES = 600 * 2**20  # keep the traces in memory below this size (else regenerate)


class S2IData:
    """A set of phantoms with everything the reconstructions need.

    Attributes
    ----------
    speed, labels : torch.Tensor
        Truth ``(N, 1, G, G)`` in m/s, and inclusion labels.
    times : torch.Tensor
        True travel times ``(N, n, n)``, s (float64).
    picked : torch.Tensor
        Times picked from the noisy traces, s.
    tikhonov : torch.Tensor
        Tikhonov reconstruction from ``picked`` in m/s (filled by :func:`make_s2i_data`).
    """

    def __init__(self, phantoms: tt.Phantoms, sizes: dict, ring: tt.Ring, seed: int,
                 device: torch.device | str = "cpu") -> None:
        self.sizes, self.ring, self.seed = sizes, ring, seed
        self.speed, self.labels = phantoms
        self.times = tt.travel_times(self.speed.double(), ring)
        self._cache: torch.Tensor | None = None
        n = ring.n_transducers
        keep = len(self) * n * n * sizes["n_samples"] * 4 <= _CACHE_BYTES
        picked, chunks = [], []
        for i in range(0, len(self), 32):
            sig = self.signals(range(i, min(i + 32, len(self))), device)
            picked.append(tt.pick_arrivals(sig, dt=sizes["dt"], frequency=sizes["frequency"],
                                           delay=sizes["delay"]).cpu())
            if keep:
                chunks.append(sig.cpu())
        self.picked = torch.cat(picked)
        self._cache = torch.cat(chunks) if keep else None
        self.tikhonov: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.speed.shape[0]

    def signals(self, index: Sequence[int], device: torch.device | str = "cpu") -> torch.Tensor:
        """Noisy traces ``(len(index), n, n, n_samples)`` of these phantoms. Each phantom's
        noise comes from its own seed, so the same phantom always has the same traces
        (kept in memory when they fit in 600 MiB, regenerated otherwise)."""
        if self._cache is not None:
            return self._cache[torch.as_tensor(list(index), dtype=torch.long)].to(device)
        s = self.sizes
        out = []
        for i in index:
            gen = torch.Generator(device=device).manual_seed(self.seed * 100_003 + int(i))
            out.append(tt.sensor_signals(self.times[int(i):int(i) + 1].to(device),
                                         n_samples=s["n_samples"], dt=s["dt"],
                                         frequency=s["frequency"], delay=s["delay"],
                                         snr_db=s["snr_db"], generator=gen))
        return torch.cat(out)

    def inputs(self, arch: str, index: Sequence[int], device="cpu") -> torch.Tensor:
        """Network inputs: traces scaled by 1/2 (``direct``) or the Tikhonov map on the
        [0, 1] scale (``post``)."""
        if arch == "direct":
            return 0.5 * self.signals(index, device)
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return tt.to_unit(self.tikhonov[idx]).to(device)

    def targets(self, index: Sequence[int], device="cpu") -> torch.Tensor:
        """The true maps on the [0, 1] scale."""
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return tt.to_unit(self.speed[idx]).to(device)


def make_s2i_data(sizes: dict, n: int, *, seed: int, shape: str = "ellipses",
                  tikhonov_weight: float | None = None,
                  device: torch.device | str = "cpu") -> S2IData:
    """``n`` phantoms (of ``shape``, drawn with ``seed``), their traces' picks and, given
    ``tikhonov_weight``, their Tikhonov reconstructions (traces, picking and solvers run
    on ``device``; results are kept on the CPU). Seeds used: training 1, validation 7,
    tuning 11, held-out test 2017, out-of-distribution test 2018."""
    ring = s2i_ring(sizes)
    ph = tt.random_phantoms(n, ring, generator=torch.Generator().manual_seed(seed), shape=shape)
    data = S2IData(ph, sizes, ring, seed, device)
    if tikhonov_weight is not None:
        data.tikhonov = _tikhonov(data, sizes, tikhonov_weight, device)
    return data


def _tikhonov(data: S2IData, sizes: dict, weight: float, device="cpu") -> torch.Tensor:
    return torch.cat([tt.tikhonov(data.picked[i:i + 64].to(device), data.ring, weight,
                                  iters=sizes["cg_iters"]).cpu()
                      for i in range(0, len(data), 64)])


def _tv(data: S2IData, sizes: dict, weight: float, device="cpu") -> torch.Tensor:
    return torch.cat([tt.tv_reconstruction(data.picked[i:i + 64].to(device), data.ring,
                                           weight, iters=sizes["tv_iters"]).cpu()
                      for i in range(0, len(data), 64)])


def _rmse_inside(est: torch.Tensor, data: S2IData) -> float:
    m = data.ring.inside().bool()
    return float(((est - data.speed)[..., m] ** 2).mean().sqrt())


def tune_classical(sizes: dict, device: torch.device | str = "cpu") -> dict:
    """Tikhonov and TV weights with the lowest RMSE (m/s, inside the ring) on ``n_tune``
    *training-family* phantoms (seed 11; never the test phantoms)."""
    data = make_s2i_data(sizes, sizes["n_tune"], seed=11, device=device)
    out = {}
    for name, fn, grid in (("tikhonov", _tikhonov, np.geomspace(1e-3, 1e-1, sizes["tune_points"])),
                           ("tv", _tv, np.geomspace(1e-4, 1e-2, sizes["tune_points"]))):
        scores = [_rmse_inside(fn(data, sizes, float(w), device), data) for w in grid]
        out[name] = {"weight": float(grid[int(np.argmin(scores))]), "grid": grid.tolist(),
                     "rmse": scores}
    return out


# ------------------------------------------------------------------------- networks


class DirectNet(nn.Module):
    r"""A direct reconstruction network: traces ``(N, T, R, S)`` -> map ``(N, 1, G, G)``.

    Three stages, in the spirit of AUTOMAP (Zhu et al. 2018): (1) a small 1-D CNN shared
    by all ``T x R`` traces (two strided convolutions over time and a linear layer) turns
    each trace into ``features`` numbers, which can encode its arrival time; (2) a fully
    connected layer maps all of them to a coarse ``G/2 x G/2`` map (it must *learn* the
    geometry: which ray crosses which pixel); (3) bilinear upsampling and a residual
    3-layer CNN refine it. The output is offset by the tissue background (0.56 on the
    [0, 1] scale) so that training starts near a plausible map.
    """

    def __init__(self, n_transducers: int, n_samples: int, grid_size: int, *,
                 features: int = 4, width: int = 32) -> None:
        super().__init__()
        if grid_size % 2:
            raise ValueError(f"grid_size must be even; got {grid_size}.")
        self.shape = (n_transducers, n_transducers, n_samples)
        self.grid_size = grid_size
        self.encoder = nn.Sequential(
            nn.Conv1d(1, 4, 9, stride=4, padding=4), nn.ReLU(),
            nn.Conv1d(4, 4, 5, stride=2, padding=2), nn.ReLU(),
        )
        length = math.ceil(math.ceil(n_samples / 4) / 2)
        self.feature = nn.Linear(4 * length, features)
        self.fc = nn.Linear(n_transducers**2 * features, (grid_size // 2) ** 2)
        self.refine = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 1, 3, padding=1),
        )
        self.background = float(tt.to_unit(torch.tensor(tt.SPEED_TISSUE)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"DirectNet expects traces (N, {', '.join(map(str, self.shape))});"
                             f" got {tuple(x.shape)}.")
        n = x.shape[0]
        z = self.encoder(x.reshape(-1, 1, x.shape[-1]))
        z = self.feature(z.flatten(1)).reshape(n, -1)
        g = self.grid_size
        coarse = self.fc(z).reshape(n, 1, g // 2, g // 2)
        up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
        return self.background + up + self.refine(up)


class PostNet(nn.Module):
    r"""Post-processing: the Tikhonov map plus a learned correction,
    :math:`x = z + \tau\, f\big((z - m)/\tau\big)` (:math:`z` the Tikhonov map,
    :math:`x` the prediction).

    The maps vary by a few hundredths around the tissue value on the [0, 1] scale, so the
    U-Net ``f`` sees them standardised (centre :math:`m` = 1540 m/s, scale :math:`\tau` =
    0.05, i.e. 12.5 m/s) and predicts the correction in the same units. Its last layer
    starts at zero, so the network starts as the identity: its first output is the
    Tikhonov map itself.
    """

    def __init__(self, unet: nn.Module, scale: float = 0.05) -> None:
        super().__init__()
        self.unet = unet
        self.centre = float(tt.to_unit(torch.tensor(tt.SPEED_TISSUE)))
        self.scale = scale
        with torch.no_grad():
            unet.head.weight.zero_()
            unet.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.scale * self.unet((x - self.centre) / self.scale)


def make_s2i_model(arch: str, sizes: dict, seed: int = 0) -> nn.Module:
    """The network of ``arch`` (``"direct"`` or ``"post"``), the same initial weights for
    every loss. The post-processing network (:class:`PostNet`) starts as the identity
    (its first output is the Tikhonov map)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "direct":
            return DirectNet(sizes["n_transducers"], sizes["n_samples"], sizes["grid_size"],
                             features=sizes["features"], width=sizes["width"])
        if arch == "post":
            return PostNet(UNet(1, base=sizes["unet_base"], levels=sizes["unet_levels"]))
    raise ValueError(f"arch must be one of {S2I_ARCHS}; got {arch!r}.")


# ------------------------------------------------------------------------- losses


def balanced_weights(pred: torch.Tensor, target: torch.Tensor, terms: dict) -> list[float]:
    """Weights (summing to 1) that give every term of ``terms`` (``{name: fn}``) the same
    gradient norm with respect to the prediction, on this batch
    (:func:`lossbook.diagnose.loss_balance`)."""
    return loss_balance({n: (1.0, f) for n, f in terms.items()}, pred, target).balanced


def s2i_losses(sizes: dict, pred: torch.Tensor, target: torch.Tensor) -> dict[str, dict]:
    r"""Every training loss, with weights from gradient balance on ``(pred, target)``.

    ``pred`` should be a typical early prediction; the experiment uses the Tikhonov
    reconstructions of training phantoms. With :math:`g_\mathrm{MSE}` and
    :math:`g_\mathrm{SSIM}` the gradient norms of MSE and :math:`1-\mathrm{SSIM}` with
    respect to the prediction, the balanced weights are :math:`w_1^\star \propto
    1/g_\mathrm{MSE}`, :math:`w_2^\star \propto 1/g_\mathrm{SSIM}` (sum 1). Loss
    ``"MSE+SSIM x r"`` uses :math:`(w_1, w_2) \propto (w_1^\star, r\,w_2^\star)`,
    normalised to sum 1: the SSIM term pulls ``r`` times as hard as the MSE term.
    ``"Huber+TV"``: Huber (delta :data:`HUBER_DELTA`) plus anisotropic TV of the
    prediction, its weight set so that TV pulls a tenth as hard as Huber (a regulariser).

    Returns
    -------
    dict
        ``{name: {"loss": nn.Module, "weights": {term: weight}}}``.
    """
    ssim_kw = dict(data_range=1.0, win_size=sizes["ssim_win"])
    a, b = balanced_weights(pred, target, {"mse": L.MSELoss(), "ssim": L.SSIMLoss(**ssim_kw)})
    out = {"MSE": {"loss": L.MSELoss(), "weights": {"mse": 1.0}}}
    for r in sizes["ssim_ratios"]:
        w1, w2 = a / (a + r * b), r * b / (a + r * b)
        out[f"MSE+SSIM x{r:g}"] = {
            "loss": L.CombinedLoss({"mse": (w1, L.MSELoss()),
                                    "ssim": (w2, L.SSIMLoss(**ssim_kw))}),
            "weights": {"mse": w1, "ssim": w2}}
    h, t = balanced_weights(pred, target, {"huber": L.HuberLoss(delta=HUBER_DELTA),
                                           "tv": L.TVLoss()})
    w_h, w_t = h / (h + 0.1 * t), 0.1 * t / (h + 0.1 * t)
    out["Huber+TV"] = {"loss": L.CombinedLoss({"huber": (w_h, L.HuberLoss(delta=HUBER_DELTA)),
                                               "tv": (w_t, L.TVLoss())}),
                       "weights": {"huber": w_h, "tv": w_t}}
    return out


# ------------------------------------------------------------------------- scoring


def score_maps(est: torch.Tensor, data: S2IData) -> dict[str, list[float]]:
    """Per-phantom scores of speed maps ``est`` (m/s) against ``data``'s truth.

    ``rmse``, ``mae`` (m/s, pixels inside the ring: outside it no ray carries
    information); ``psnr``, ``ssim`` on the whole map scaled by :func:`to_unit` and
    clipped to [0, 1] (data range 1 = 250 m/s); ``contrast_error``: mean over inclusions
    of |mean estimated speed inside - mean true speed inside| (m/s, on the pixels whose
    centre lies in the inclusion); ``contrast_recovery``: mean over inclusions of
    (estimated - background) / (true - background) inside, 1 = full contrast.
    """
    m = data.ring.inside().bool()
    out: dict[str, list[float]] = {k: [] for k in
                                   ("rmse", "mae", "psnr", "ssim", "contrast_error",
                                    "contrast_recovery")}
    for i in range(len(data)):
        e, t, lab = est[i:i + 1].float(), data.speed[i:i + 1], data.labels[i, 0]
        d = (e - t)[..., m]
        out["rmse"].append(float((d**2).mean().sqrt()))
        out["mae"].append(float(d.abs().mean()))
        eu, tu = tt.to_unit(e).clamp(0, 1), tt.to_unit(t).clamp(0, 1)
        out["psnr"].append(float(_psnr(eu, tu)))
        out["ssim"].append(float(_ssim(eu, tu)))
        bg = float(t[0, 0][lab == 0].median())
        errs, recs = [], []
        for k in lab.unique().tolist():
            if k == 0:
                continue
            mk = lab == k
            ti, ei = float(t[0, 0][mk].mean()), float(e[0, 0][mk].mean())
            errs.append(abs(ei - ti))
            recs.append((ei - bg) / (ti - bg) if abs(ti - bg) > 1e-3 else math.nan)
        out["contrast_error"].append(float(np.mean(errs)) if errs else math.nan)
        out["contrast_recovery"].append(float(np.nanmean(recs)) if recs else math.nan)
    return out


@torch.no_grad()
def _predict(model: nn.Module, arch: str, data: S2IData, device) -> torch.Tensor:
    model.eval()
    outs = []
    for i in range(0, len(data), 8):
        idx = range(i, min(i + 8, len(data)))
        outs.append(model(data.inputs(arch, idx, device)).float().cpu())
    return tt.from_unit(torch.cat(outs))


def avgpool_ssim(x: torch.Tensor, y: torch.Tensor, *, win_size: int = 11,
                 data_range: float = 1.0, return_map: bool = False, padding: str = "zeros"):
    """The seed's SSIM: a *uniform* ``win_size`` window by ``avg_pool2d`` with zero padding
    ("same" output), statistics from E[x^2] - mu^2. Near the border the window averages in
    zeros, which biases the local means and variances. ``padding="replicate"`` repeats
    the edge pixels instead (for comparison). Didactic; the book's SSIM
    (:func:`lossbook.metrics.ssim`) uses the Gaussian window over the valid region."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    if padding not in ("zeros", "replicate"):
        raise ValueError(f"padding must be 'zeros' or 'replicate'; got {padding!r}.")
    k = win_size // 2

    def pool(t):
        if padding == "replicate":
            return F.avg_pool2d(F.pad(t, (k, k, k, k), mode="replicate"), win_size, stride=1)
        return F.avg_pool2d(t, win_size, stride=1, padding=k, count_include_pad=True)

    mx, my = pool(x), pool(y)
    sxx, syy, sxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return smap if return_map else smap.mean(dim=(1, 2, 3))


def ssim_border_comparison(est: torch.Tensor, data: S2IData, win_size: int = 11) -> dict:
    """Seed-style SSIM (:func:`avgpool_ssim`) against the Gaussian valid-window SSIM on
    speed maps ``est`` (m/s) scaled to [0, 1]: the mean of each, and the seed's SSIM map
    averaged over the border band (within ``win_size // 2`` pixels of the edge, where
    zero padding enters) and over the interior; and, for comparison, the border band of
    the same SSIM with edge-replicating padding (``replicate_border``)."""
    x = tt.to_unit(est.float()).clamp(0, 1)
    y = tt.to_unit(data.speed).clamp(0, 1)
    smap = avgpool_ssim(x, y, win_size=win_size, return_map=True)
    rmap = avgpool_ssim(x, y, win_size=win_size, return_map=True, padding="replicate")
    k = win_size // 2
    border = torch.ones_like(smap[0, 0], dtype=torch.bool)
    border[k:-k, k:-k] = False
    gauss = [float(_ssim(x[i:i + 1], y[i:i + 1])) for i in range(len(data))]
    return {"gaussian_valid": float(np.mean(gauss)),
            "avgpool_same": float(smap.mean()),
            "avgpool_border": float(smap[..., border].mean()),
            "avgpool_interior": float(smap[..., ~border].mean()),
            "replicate_border": float(rmap[..., border].mean()),
            "map": smap}


# ------------------------------------------------------------------------- the run


def _row(method: str, kind: str, scores: dict, **extra) -> dict:
    row = {"method": method, "kind": kind}
    for k, v in scores.items():
        row[k] = float(np.nanmean(v))
        row[f"{k}_per_image"] = v
    return {**row, **extra}


def _run_s2i(sizes: dict, *, workdir: Path, device: torch.device, progress: bool = True,
             callback: Callable | None = None, methods: Sequence[str] | None = None
             ) -> RunResult:
    tuned = tune_classical(sizes, device)
    w_tik, w_tv = tuned["tikhonov"]["weight"], tuned["tv"]["weight"]
    make = functools.partial(make_s2i_data, sizes, tikhonov_weight=w_tik, device=device)
    train = make(sizes["n_train"], seed=1)
    val = make(sizes["n_val"], seed=7)
    sets = {"test": make(sizes["n_test"], seed=2017),
            "ood": make(sizes["n_ood"], seed=2018, shape="rectangles")}
    probe = range(min(16, len(train)))
    loss_specs = s2i_losses(sizes, train.inputs("post", probe), train.targets(probe))
    rows = {name: [] for name in sets}
    outputs = {name: {} for name in sets}
    for name, data in sets.items():
        for method, est in (("Tikhonov", data.tikhonov),
                            ("TV", _tv(data, sizes, w_tv, device))):
            outputs[name][method] = est
            rows[name].append(_row(method, "classical", score_maps(est, data),
                                   parameter=w_tik if method == "Tikhonov" else w_tv))
    histories, models, curves = {}, {}, {}
    for arch in S2I_ARCHS:
        def sampler(batch_size, generator, arch=arch):
            idx = torch.randint(len(train), (batch_size,), generator=generator).tolist()
            return train.inputs(arch, idx, device), train.targets(idx, device)

        val_pairs = (val.inputs(arch, range(len(val))), val.targets(range(len(val))))
        for loss_name, spec in loss_specs.items():
            method = f"{arch}: {loss_name}"
            if methods is not None and method not in methods:
                continue
            model = make_s2i_model(arch, sizes)
            cb = None if callback is None else functools.partial(callback, method)
            steps = sizes["direct_steps"] if arch == "direct" else sizes["steps"]
            h = fit(model, spec["loss"], sampler, steps=steps,
                    batch_size=sizes["batch_size"], lr=sizes["lr"], lr_schedule="cosine",
                    device=device, val_data=val_pairs, log_every=sizes["log_every"],
                    checkpoint=workdir / f"{slug(method)}.pt", seed=0, callback=cb,
                    progress=progress)
            histories[method], models[method] = h, model
            curves[method] = {"step": h.step, "loss": h.loss, "val_step": h.val_step,
                              "val_psnr": h.val.get("psnr", [])}
            for name, data in sets.items():
                est = _predict(model, arch, data, device)
                outputs[name][method] = est
                rows[name].append(_row(method, arch, score_maps(est, data),
                                       weights=spec["weights"], train_seconds=h.seconds))
    border = {m: {k: v for k, v in ssim_border_comparison(est, sets["test"]).items()
                  if k != "map"} for m, est in outputs["test"].items()}
    payload = {
        "metrics": list(S2I_METRICS),
        "tuning": tuned,
        "loss_weights": {k: v["weights"] for k, v in loss_specs.items()},
        "notes": ("Straight rays, refraction ignored. RMSE/MAE in m/s over the pixels inside "
                  "the ring; PSNR/SSIM on the whole map scaled from 1400-1650 m/s to [0, 1] "
                  "(mean of per-phantom values); contrast error: mean |estimated - true| "
                  "mean speed inside each inclusion (m/s). 'test': held-out ellipse "
                  "phantoms; 'ood': rectangles, a shape family never seen in training."),
        "results": rows["test"],
        "results_ood": rows["ood"],
        "ssim_border": border,
        "curves": curves,
    }
    result = RunResult(payload=payload, outputs=outputs["test"], histories=histories,
                       models=models, pairs=(sets["test"].tikhonov, sets["test"].speed))
    result.data = sets  # type: ignore[attr-defined]
    result.ood_outputs = outputs["ood"]  # type: ignore[attr-defined]
    return result


# ------------------------------------------------------------------------- findings


def _best_learned(rows: list[dict]) -> dict | None:
    learned = [r for r in rows if r["kind"] in S2I_ARCHS]
    return min(learned, key=lambda r: r["rmse"]) if learned else None


def _compare(a: dict, b: dict, metric: str = "rmse", seed: int = 0) -> str:
    """How ``a`` differs from ``b`` on ``metric``, with a paired bootstrap interval over
    the phantoms; the difference is called only when the interval excludes zero."""
    ci = paired_bootstrap(a[f"{metric}_per_image"], b[f"{metric}_per_image"], seed=seed)
    d = ci["mean"]
    unit, fmt = (" m/s", ".2f") if metric in ("rmse", "mae", "contrast_error") else ("", ".4f")
    verdict = ("a real difference" if ci["excludes_zero"] else
               "the interval includes zero: no difference can be claimed")
    return (f"{abs(d):{fmt}}{unit} {'lower' if d < 0 else 'higher'} {metric.upper()} than "
            f"{b['method']} (paired bootstrap 95 % interval of the difference "
            f"[{ci['low']:{fmt}}, {ci['high']:{fmt}}]{unit} over {ci['n']} phantoms; {verdict})")


def s2i_findings(result: RunResult | dict) -> list[str]:
    """The chapter's conclusions, computed from a ``signal-to-image`` run.

    The best learned reconstruction against the tuned TV reconstruction on held-out and on
    out-of-distribution phantoms (RMSE in m/s, with a paired bootstrap interval), direct
    against post-processing, and which loss keeps the inclusions' contrast best.
    """
    p = result.payload if isinstance(result, RunResult) else result
    out = []
    if p.get("budget") == "smoke":
        out.append("Smoke budget: the networks barely trained, so the comparisons below only "
                   "show that the code runs; they are not results.")
    test = {r["method"]: r for r in p["results"]}
    ood = {r["method"]: r for r in p["results_ood"]}
    best = _best_learned(p["results"])
    if best is None:
        return out + ["No learned method ran."]
    tv = test["TV"]
    out.append(f"Held-out phantoms: tuned TV reaches {tv['rmse']:.2f} m/s RMSE, Tikhonov "
               f"{test['Tikhonov']['rmse']:.2f} m/s. The best learned reconstruction, "
               f"{best['method']} ({best['rmse']:.2f} m/s), has " + _compare(best, tv) + ".")
    b_ood = ood[best["method"]]
    out.append(f"Out of distribution (rectangles): the same network has {b_ood['rmse']:.2f} m/s"
               f" against TV's {ood['TV']['rmse']:.2f} m/s: " + _compare(b_ood, ood["TV"])
               + ".")
    best_ood = _best_learned(p["results_ood"])
    if best_ood["method"] != best["method"]:
        out.append(f"On the out-of-distribution phantoms the best learned method is another "
                   f"one: {best_ood['method']} ({best_ood['rmse']:.2f} m/s).")
    per_arch = {a: _best_learned([r for r in p["results"] if r["kind"] == a])
                for a in S2I_ARCHS}
    if all(per_arch.values()):
        d, q = per_arch["direct"], per_arch["post"]
        out.append(f"Best direct network: {d['method']} ({d['rmse']:.2f} m/s); best "
                   f"post-processing U-Net: {q['method']} ({q['rmse']:.2f} m/s).")
    learned = [r for r in p["results"] if r["kind"] in S2I_ARCHS]
    c = min(learned, key=lambda r: r["contrast_error"])
    out.append(f"Inclusion contrast: the smallest mean contrast error among learned methods "
               f"is {c['method']}'s ({c['contrast_error']:.2f} m/s; TV {tv['contrast_error']:.2f}"
               f" m/s, Tikhonov {test['Tikhonov']['contrast_error']:.2f} m/s).")
    for arch in S2I_ARCHS:
        mse_row = test.get(f"{arch}: MSE")
        ssim_rows = [r for r in learned if r["kind"] == arch and "SSIM" in r["method"]]
        if mse_row and ssim_rows:
            s = max(ssim_rows, key=lambda r: r["ssim"])
            out.append(f"{arch}: the MSE+SSIM loss with the highest test SSIM, {s['method']}, "
                       f"has {_compare(s, mse_row, 'ssim')}, and "
                       f"{_compare(s, mse_row, 'rmse')}.")
    return out


# ------------------------------------------------------------------------- figures


def s2i_geometry_figure(sizes: dict, n_rays: int = 6):
    """The forward model: the ring over a phantom with a few rays, the travel-time matrix
    (transmitter x receiver), its delay against a homogeneous medium, and one transmit's
    traces."""
    import matplotlib.pyplot as plt

    ring = s2i_ring(sizes)
    data = make_s2i_data(sizes, 1, seed=3)
    pos = ring.positions().numpy()
    e = ring.extent / 2 * 100
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.9))
    ax = axes[0]
    im = ax.imshow(data.speed[0, 0].numpy(), origin="lower", extent=(-e, e, -e, e),
                   cmap="gray", vmin=tt.SPEED_RANGE[0], vmax=tt.SPEED_RANGE[1])
    fig.colorbar(im, ax=ax, fraction=0.046, label="speed (m/s)")
    ax.plot(pos[:, 0] * 100, pos[:, 1] * 100, "o", ms=3, color="tab:orange")
    n = ring.n_transducers
    for j in np.linspace(n // 4, 3 * n // 4, n_rays).astype(int):
        ax.plot([pos[0, 0] * 100, pos[j, 0] * 100], [pos[0, 1] * 100, pos[j, 1] * 100],
                lw=0.8, color="tab:red")
    ax.set(title="Phantom, ring and rays from transducer 0", xlabel="x (cm)", ylabel="y (cm)")
    t = data.times[0].numpy() * 1e6
    im = axes[1].imshow(t, cmap="gray", origin="lower")
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="travel time (µs)")
    axes[1].set(title="Travel times", xlabel="receiver", ylabel="transmitter")
    delay = (data.times[0] - ring.distances() / tt.SPEED_TISSUE).numpy() * 1e9
    v = np.abs(delay).max()
    im = axes[2].imshow(delay, cmap="gray", origin="lower", vmin=-v, vmax=v)
    fig.colorbar(im, ax=axes[2], fraction=0.046, label="delay (ns)")
    axes[2].set(title="Delay vs 1540 m/s everywhere", xlabel="receiver", ylabel="transmitter")
    sig = data.signals([0])[0, 0].numpy()
    tax = np.arange(sig.shape[-1]) * sizes["dt"] * 1e6
    axes[3].imshow(sig, aspect="auto", cmap="gray", vmin=-1, vmax=1, origin="lower",
                   extent=(tax[0], tax[-1], 0, n))
    axes[3].set(title=f"Traces of transmit 0 ({sizes['snr_db']:g} dB SNR)", xlabel="time (µs)",
                ylabel="receiver")
    fig.tight_layout()
    return fig


def s2i_singular_values(sizes: dict) -> np.ndarray:
    """Singular values of the scaled ray matrix :math:`A/\\|A\\|` restricted to the pixels
    inside the ring (dense SVD; use at grid sizes up to about 64)."""
    ring = s2i_ring(sizes)
    a = tt.ray_matrix(ring).to_dense()[:, ring.inside().reshape(-1).bool()]
    return torch.linalg.svdvals(a / tt.operator_norm(ring)).numpy()


def s2i_maps_figure(result: RunResult, which: str = "test", index: int = 0,
                    methods: Sequence[str] | None = None, errors: bool = False):
    """The truth and every method's map for one phantom (``which`` = ``"test"`` or
    ``"ood"``), in m/s on a shared grey scale; with ``errors`` the error maps instead
    (estimate - truth, +-30 m/s)."""
    import matplotlib.pyplot as plt

    data = result.data[which]
    outs = result.outputs if which == "test" else result.ood_outputs
    methods = list(methods or outs)
    rows = {r["method"]: r for r in result.payload["results" if which == "test"
                                                   else "results_ood"]}
    truth = data.speed[index, 0].numpy()
    panels = [("truth", truth)] + [(m, outs[m][index, 0].numpy()) for m in methods]
    ncols = min(5, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.9 * ncols, 2.9 * nrows + 0.4),
                             squeeze=False)
    lo, hi = 1440.0, 1610.0
    for ax, (name, img) in zip(axes.flat, panels, strict=False):
        if errors and name != "truth":
            ax.imshow(img - truth, cmap="gray", vmin=-30, vmax=30, origin="lower")
        else:
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, origin="lower")
        title = name if name == "truth" else \
            f"{name}\n{rows[name]['rmse_per_image'][index]:.1f} m/s RMSE"
        ax.set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    what = "Error maps (estimate - truth), grey scale -30 to +30 m/s" if errors else \
        f"Speed maps, grey scale {lo:.0f} to {hi:.0f} m/s"
    fig.suptitle(f"{what}: {'held-out' if which == 'test' else 'out-of-distribution'} "
                 f"phantom {index}")
    fig.tight_layout()
    return fig


def s2i_curves_figure(result: RunResult):
    """Validation PSNR (map scaled to [0, 1]) of every learned method against the step."""
    import matplotlib.pyplot as plt

    from ..viz import plot_curves

    curves = result.payload["curves"]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    plot_curves({m: (c["val_step"], c["val_psnr"]) for m, c in curves.items()},
                xlabel="training step", ylabel="validation PSNR (dB)", ax=ax,
                title="Validation PSNR of the learned reconstructions")
    tv = result.row("TV")["psnr"]
    ax.axhline(tv, color="k", ls="--", lw=1, label="TV (test phantoms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


EXPERIMENT = register(Experiment(
    name="signal-to-image",
    title="Speed of sound from ultrasound traces: classical, direct and post-processing "
          "reconstructions, three kinds of loss",
    sizes=S2I_SIZES,
    run=_run_s2i,
    chapter="notebooks/10_signal_to_image",
    figures={"maps": s2i_maps_figure,
             "errors": functools.partial(s2i_maps_figure, errors=True),
             "ood": functools.partial(s2i_maps_figure, which="ood"),
             "curves": s2i_curves_figure},
    findings=s2i_findings,
))
