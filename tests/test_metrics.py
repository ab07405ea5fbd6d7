"""PSNR against scikit-image's peak_signal_noise_ratio (reference), to 1e-9 dB in float64."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio

from lossbook import metrics


@pytest.mark.parametrize("data_range", [1.0, 255.0, 2.0])
def test_psnr_matches_skimage(gen, data_range):
    y = torch.rand(4, 3, 16, 12, generator=gen, dtype=torch.float64) * data_range
    x = (y + 0.05 * data_range * torch.randn(y.shape, generator=gen, dtype=torch.float64))
    got = metrics.psnr(x, y, data_range=data_range, reduction="none")
    ref = [peak_signal_noise_ratio(y[i].numpy(), x[i].numpy(), data_range=data_range)
           for i in range(4)]
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-9)
    assert float(metrics.psnr(x, y, data_range=data_range)) == pytest.approx(np.mean(ref))


def test_psnr_mean_of_images_differs_from_pooled(gen):
    """The table convention: mean of per-image PSNRs >= PSNR of the pooled MSE (Jensen)."""
    y = torch.rand(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    x = y.clone()
    x[0] += 0.01
    x[1] += 0.2
    mean_of_psnr = float(metrics.psnr(x, y))
    pooled = metrics.psnr_from_mse(float(((x - y) ** 2).mean()))
    assert mean_of_psnr > pooled + 1.0


def test_data_range_pitfall(gen):
    y = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    x = y + 0.1
    gap = metrics.psnr(x, y, data_range=255) - metrics.psnr(x, y, data_range=1.0)
    assert float(gap) == pytest.approx(20 * math.log10(255), abs=1e-9)


def test_psnr_identical_is_inf_and_no_grad(gen):
    y = torch.rand(1, 1, 8, 8, generator=gen, requires_grad=True)
    value = metrics.psnr(y, y)
    assert math.isinf(float(value))
    assert not value.requires_grad
    assert metrics.psnr_from_mse(0.0) == math.inf
    assert metrics.psnr_from_mse(0.01) == pytest.approx(20.0)


def test_mse_mae_metrics(gen):
    x = torch.rand(2, 1, 4, 4, generator=gen)
    y = torch.rand(2, 1, 4, 4, generator=gen)
    torch.testing.assert_close(metrics.mse(x, y), torch.nn.functional.mse_loss(x, y))
    torch.testing.assert_close(metrics.mae(x, y), torch.nn.functional.l1_loss(x, y))


def test_psnr_bad_inputs():
    x = torch.rand(1, 1, 8, 8)
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match=r"data_range must be positive.*got"):
            metrics.psnr(x, x, data_range=bad)
    with pytest.raises(TypeError, match="data_range must be a number"):
        metrics.psnr(x, x, data_range="1")
    with pytest.raises(ValueError, match="4 dimensions"):
        metrics.psnr(x[0], x[0])
    with pytest.raises(TypeError, match="floating-point"):
        metrics.psnr(x.long(), x.long())
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(x, x[:, :, :4])
    with pytest.raises(ValueError, match="NaN"):
        metrics.psnr(x * float("nan"), x)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="mse_value must be a non-negative finite"):
            metrics.psnr_from_mse(bad)
    for fn in (metrics.psnr, metrics.mse, metrics.mae):
        with pytest.raises(ValueError, match="is empty"):
            fn(x[:0], x[:0])
    with pytest.raises(ValueError, match="profile holds 1 NaN"):
        metrics.edge_rise_distance(torch.tensor([0.0, float("nan"), 1.0]))


def test_edge_rise_distance_closed_forms():
    # A linear ramp over w pixels rises 10 -> 90 % in 0.8 w.
    for w in (4, 8, 16):
        ramp = torch.cat([torch.zeros(5), torch.linspace(0, 1, w + 1), torch.ones(5)])
        assert metrics.edge_rise_distance(ramp) == pytest.approx(0.8 * w, abs=1e-9)
    # A sharp step: interpolation between the two pixel centres gives 0.8 px.
    step = torch.tensor([0.0, 0, 0, 1, 1, 1])
    assert metrics.edge_rise_distance(step) == pytest.approx(0.8)
    # Invariant to offset and gain.
    assert metrics.edge_rise_distance(3 + 2 * step) == pytest.approx(0.8)
    assert metrics.edge_rise_distance(step, 0.25, 0.75) == pytest.approx(0.5)


def test_edge_rise_distance_errors():
    with pytest.raises(ValueError, match="1-D tensor"):
        metrics.edge_rise_distance(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="must rise.*flip"):
        metrics.edge_rise_distance(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="low < high"):
        metrics.edge_rise_distance(torch.tensor([0.0, 1.0]), 0.9, 0.1)
