"""Tests of the ``signal-to-image`` experiment (Chapter 10): networks, losses, scores, run.

References: scipy's ``uniform_filter`` with zero padding for the seed-style SSIM, the
package's Gaussian SSIM, closed forms for the scores, autograd for the gradient balance.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from lossbook import losses as L
from lossbook import traveltime as tt
from lossbook.experiments import signal_to_image as S
from lossbook.experiments.core import list_experiments, run_experiment
from lossbook.metrics import ssim


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


SMOKE = S.s2i_sizes("smoke")


@pytest.fixture(scope="module")
def data():
    return S.make_s2i_data(SMOKE, 3, seed=5, tikhonov_weight=1e-2)


def test_registered_with_every_budget():
    exp = {e.name: e for e in list_experiments()}["signal-to-image"]
    assert set(exp.sizes) == {"smoke", "cpu", "gpu"}
    assert exp.findings is S.s2i_findings
    for b in ("smoke", "cpu", "gpu"):
        sizes = S.s2i_sizes(b)
        ring = S.s2i_ring(sizes)
        assert sizes["grid_size"] % 2 ** sizes["unet_levels"] == 0
        # the recording holds the slowest possible straight ray (across the ring at 1450 m/s)
        assert 2 * ring.radius / 1450 + sizes["delay"] < (sizes["n_samples"] - 1) * sizes["dt"]
        # the pulse is sampled above Nyquist for its band (about 2 f)
        assert 1 / sizes["dt"] > 4 * sizes["frequency"]
    assert S.s2i_sizes("gpu")["grid_size"] > S.s2i_sizes("cpu")["grid_size"]


def test_data_is_reproducible_and_picks_are_close(data):
    again = S.make_s2i_data(SMOKE, 3, seed=5, tikhonov_weight=1e-2)
    assert torch.equal(again.picked, data.picked)
    assert torch.equal(data.signals([1]), again.signals([1]))
    # 20 dB: picks within a small fraction of the shortest pulse period
    assert (data.picked - data.times).abs().max() < 0.25 / SMOKE["frequency"]
    assert data.inputs("direct", [0, 1]).shape == (2, 16, 16, SMOKE["n_samples"])
    post = data.inputs("post", [0, 1])
    assert post.shape == (2, 1, 32, 32) and torch.allclose(tt.from_unit(post), data.tikhonov[:2])
    assert torch.allclose(tt.from_unit(data.targets([2])), data.speed[2:])


def test_networks_shapes_and_identity_start(data):
    direct = S.make_s2i_model("direct", SMOKE)
    x = data.inputs("direct", [0, 1])
    assert direct(x).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match="DirectNet expects traces"):
        direct(x[..., :-1])
    post = S.make_s2i_model("post", SMOKE)
    y = data.inputs("post", [0, 1])
    assert torch.equal(post(y), y)  # starts as the Tikhonov map
    # the same initial weights every time
    again = S.make_s2i_model("direct", SMOKE)
    assert all(torch.equal(a, b) for a, b in zip(direct.state_dict().values(),
                                                 again.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="arch"):
        S.make_s2i_model("automap", SMOKE)


def test_loss_weights_balance_the_gradients(data):
    pred = data.inputs("post", [0, 1, 2])
    target = data.targets([0, 1, 2])
    specs = S.s2i_losses(SMOKE, pred, target)
    assert list(specs) == list(S.s2i_loss_names(SMOKE))

    def grad_norm(fn):
        x = pred.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(x, target), x)
        return float(g.norm())

    w = specs["MSE+SSIM x1"]["weights"]
    assert math.isclose(w["mse"] + w["ssim"], 1.0, rel_tol=1e-9)
    g_mse = grad_norm(lambda a, b: ((a - b) ** 2).mean())
    g_ssim = grad_norm(lambda a, b: 1 - L.ssim(a, b, win_size=SMOKE["ssim_win"]))
    assert math.isclose(w["mse"] * g_mse, w["ssim"] * g_ssim, rel_tol=1e-4)
    h = specs["Huber+TV"]["weights"]
    g_h = grad_norm(lambda a, b: torch.nn.functional.huber_loss(a, b, delta=S.HUBER_DELTA))
    g_t = grad_norm(lambda a, b: L.total_variation(a))
    assert math.isclose(h["tv"] * g_t, 0.1 * h["huber"] * g_h, rel_tol=1e-4)
    # every loss is finite and differentiable on a prediction
    for spec in specs.values():
        x = pred.clone().requires_grad_(True)
        out = spec["loss"](x, target)
        total = out[0] if isinstance(out, tuple) else out
        total.backward()
        assert torch.isfinite(x.grad).all()


def test_scores_closed_forms(data):
    perfect = S.score_maps(data.speed.clone(), data)
    assert max(perfect["rmse"]) == 0 and max(perfect["contrast_error"]) == 0
    assert np.allclose(perfect["contrast_recovery"], 1.0)
    flat = torch.full_like(data.speed, tt.SPEED_TISSUE)
    s = S.score_maps(flat, data)
    inside = data.ring.inside().bool()
    want = float(((flat - data.speed)[0, 0][inside] ** 2).mean().sqrt())
    assert math.isclose(s["rmse"][0], want, rel_tol=1e-6)
    # a 10 m/s offset everywhere: RMSE = MAE = 10, contrast error 10, contrast kept
    shifted = S.score_maps(data.speed + 10, data)
    assert np.allclose(shifted["rmse"], 10, atol=1e-3)
    assert np.allclose(shifted["mae"], 10, atol=1e-3)
    assert np.allclose(shifted["contrast_error"], 10, atol=1e-3)


def test_avgpool_ssim_matches_scipy_zero_padded_uniform_filter():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 24, 24, generator=gen, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)

    def f(a):
        return uniform_filter(a, size=11, mode="constant", cval=0.0)

    a, b = x[0, 0].numpy(), y[0, 0].numpy()
    mx, my = f(a), f(b)
    sxx, syy, sxy = f(a * a) - mx**2, f(b * b) - my**2, f(a * b) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    got = S.avgpool_ssim(x, y, return_map=True)[0, 0].numpy()
    assert np.allclose(got, ref, atol=1e-10)
    assert float(S.avgpool_ssim(x, x)) == pytest.approx(1.0)


def test_ssim_border_comparison(data):
    out = S.ssim_border_comparison(data.tikhonov, data)
    want = np.mean([float(ssim(tt.to_unit(data.tikhonov[i:i + 1]).clamp(0, 1),
                               tt.to_unit(data.speed[i:i + 1]).clamp(0, 1))) for i in range(3)])
    assert math.isclose(out["gaussian_valid"], want, rel_tol=1e-6)
    # zero padding adds the same fake edge to both maps: the border band scores higher
    # than with edge-replicating padding
    assert out["avgpool_border"] > out["replicate_border"]
    with pytest.raises(ValueError, match="padding"):
        S.avgpool_ssim(data.speed, data.speed, padding="reflect")


def test_smoke_run_writes_json_resumes_and_findings(tmp_path):
    res = run_experiment("signal-to-image", budget="smoke", out=tmp_path, progress=False,
                         figures=False)
    p = json.loads((tmp_path / "signal-to-image.json").read_text())
    methods = [r["method"] for r in p["results"]]
    assert methods[:2] == ["Tikhonov", "TV"]
    assert len(methods) == 2 + 2 * len(S.s2i_loss_names(SMOKE))
    assert [r["method"] for r in p["results_ood"]] == methods
    for r in p["results"] + p["results_ood"]:
        assert all(math.isfinite(r[m]) for m in ("rmse", "mae", "psnr", "ssim"))
    findings = S.s2i_findings(p)
    assert findings[0].startswith("Smoke budget")
    assert any("m/s" in f and "TV" in f for f in findings)
    assert set(p["ssim_border"]) == set(methods)
    # a second run resumes from the checkpoints: the same numbers
    again = run_experiment("signal-to-image", budget="smoke", out=tmp_path, progress=False,
                           figures=False)
    assert [r["rmse"] for r in again.rows] == [r["rmse"] for r in res.rows]
