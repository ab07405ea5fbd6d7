"""Tests for lossbook.losses.combined.

References and tolerances:
- CombinedLoss: the weighted sum computed by hand from torch.nn.functional.l1_loss /
  mse_loss (1e-12, float64).
- MixLoss: a hand formula from pytorch-msssim's ms_ssim and scipy.ndimage's Gaussian filter
  (float64, 1e-6); gradcheck (finite differences) in float64.
- UncertaintyWeightedLoss: Kendall et al.'s closed form sum 0.5 exp(-s_i) L_i + 0.5 s_i
  (1e-12), and its minimiser s_i = log L_i reached by gradient descent (1e-3).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_msssim
import scipy.ndimage
import torch
import torch.nn.functional as F

from lossbook.losses import (
    CombinedLoss,
    L1Loss,
    MixLoss,
    MSELoss,
    SSIMLoss,
    UncertaintyWeightedLoss,
    gaussian_weighted_l1,
    mix_l1_sigma,
    ssim,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def _pair(gen, shape, dtype=torch.float64):
    y = torch.rand(*shape, generator=gen, dtype=dtype)
    x = (y + 0.2 * torch.randn(*shape, generator=gen, dtype=dtype)).clamp(0, 1)
    return x, y


def test_combined_total_is_weighted_sum_and_components_are_floats(gen):
    x, y = _pair(gen, (2, 1, 24, 24))
    loss = CombinedLoss(
        {"l1": (0.3, L1Loss()), "mse": (2.0, F.mse_loss), "ssim": (0.5, SSIMLoss())}
    )
    total, parts = loss(x, y)
    l1, l2, s = F.l1_loss(x, y), F.mse_loss(x, y), 1 - ssim(x, y)
    torch.testing.assert_close(total, 0.3 * l1 + 2.0 * l2 + 0.5 * s, atol=1e-12, rtol=0)
    assert set(parts) == {"l1", "mse", "ssim"}
    assert all(type(v) is float for v in parts.values())
    assert parts["mse"] == pytest.approx(float(l2), abs=1e-12)
    # modules are registered, plain functions are not
    assert set(loss.terms) == {"l1", "ssim"}
    # the gradient flows through every term
    xr = x.clone().requires_grad_()
    loss(xr, y)[0].backward()
    assert torch.isfinite(xr.grad).all() and xr.grad.abs().sum() > 0


def test_combined_nested_and_errors(gen):
    x, y = _pair(gen, (1, 1, 16, 16))
    inner = CombinedLoss({"l1": (1.0, L1Loss())})
    outer = CombinedLoss({"inner": (2.0, inner), "mse": (1.0, MSELoss())})
    total, _ = outer(x, y)
    torch.testing.assert_close(total, 2 * F.l1_loss(x, y) + F.mse_loss(x, y))
    with pytest.raises(TypeError, match="non-empty dict of named terms"):
        CombinedLoss({})
    with pytest.raises(TypeError, match="must be a \\(weight, loss_fn\\) pair"):
        CombinedLoss({"l1": L1Loss()})
    for w in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="must be a finite number"):
            CombinedLoss({"l1": (w, L1Loss())})
    with pytest.raises(TypeError, match="must be a finite number"):
        CombinedLoss({"l1": ("1", L1Loss())})
    with pytest.raises(TypeError, match="must be callable"):
        CombinedLoss({"l1": (1.0, "l1")})
    with pytest.raises(ValueError, match="names must be identifiers"):
        CombinedLoss({"my loss": (1.0, L1Loss())})
    with pytest.raises(ValueError, match="must return a scalar.*reduction='mean'"):
        CombinedLoss({"l1": (1.0, L1Loss(reduction="none"))})(x.repeat(2, 1, 1, 1),
                                                               y.repeat(2, 1, 1, 1))


def _hand_mix(x, y, alpha, sigma, **kw):
    ms = pytorch_msssim.ms_ssim(x, y, data_range=1.0, size_average=False, **kw)
    r = math.ceil(3 * sigma)
    d = np.abs(x.numpy() - y.numpy())
    blurred = scipy.ndimage.gaussian_filter(d, sigma=(0, 0, sigma, sigma), truncate=r / sigma)
    l1 = blurred[..., r:-r, r:-r].mean(axis=(1, 2, 3))
    return alpha * (1 - ms.numpy()) + (1 - alpha) * l1


@pytest.mark.parametrize("alpha", [0.84, 0.025])
def test_mix_loss_matches_hand_formula(gen, alpha):
    x, y = _pair(gen, (2, 1, 176, 192))
    ours = MixLoss(alpha, reduction="none")(x, y)
    # default L1 width: the coarsest of the five MS-SSIM scales, 1.5 * 2**4 = 24 pixels
    np.testing.assert_allclose(ours.numpy(), _hand_mix(x, y, alpha, 24.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(MixLoss(alpha)(x, y), ours.mean())
    assert MixLoss(alpha, win_size=7, weights=(0.2, 0.3, 0.5)).l1_sigma == 6.0


def test_mix_l1_sigma_is_the_footprint_of_the_coarsest_ms_ssim_scale():
    # Independent check of the rule: the weight with which MS-SSIM's coarsest scale sees
    # the original pixels is the impulse response of (2x2 average, decimate) applied M - 1
    # times followed by the 1.5-pixel Gaussian; its standard deviation in original pixels
    # is sqrt((1.5 * 2**(M-1))**2 + sum_k 4**k / 4) (each box of 2 at scale k adds
    # variance 4**k / 4), within 2 % of mix_l1_sigma(M) for M >= 3.
    for m in (3, 4, 5):
        # on the original grid: the average of two samples 2**k apart at each decimation,
        # then the Gaussian window, whose 1.5-sample width is 1.5 * 2**(m-1) pixels
        h = np.zeros(4001)
        h[2000] = 1.0
        for k in range(m - 1):
            pair = np.zeros(2**k + 1)
            pair[[0, -1]] = 0.5
            h = np.convolve(h, pair, mode="same")
        g = np.exp(-0.5 * (np.arange(-300, 301) / (1.5 * 2 ** (m - 1))) ** 2)
        h = np.convolve(h, g / g.sum(), mode="same")
        pos = np.arange(h.size)
        mean = (pos * h).sum()
        sd = math.sqrt(((pos - mean) ** 2 * h).sum())
        assert sd == pytest.approx(mix_l1_sigma(m), rel=0.02)
    assert mix_l1_sigma(5) == 24.0 and mix_l1_sigma(3, 1.5) == 6.0
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="scales must be a positive integer"):
            mix_l1_sigma(bad)
    with pytest.raises(ValueError, match="sigma must be a positive finite"):
        mix_l1_sigma(5, -1.0)


def test_gaussian_weighted_l1_close_to_l1_and_errors(gen):
    x, y = _pair(gen, (1, 2, 64, 64))
    # a Gaussian-weighted average of |x - y|: near the plain mean for stationary errors
    assert float(gaussian_weighted_l1(x, y)) == pytest.approx(float(F.l1_loss(x, y)), rel=0.05)
    with pytest.raises(ValueError, match="at least 49x49.*smaller sigma"):
        gaussian_weighted_l1(x[..., :40, :40], y[..., :40, :40])
    for sigma in (0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma must be a positive finite number"):
            gaussian_weighted_l1(x, y, sigma=sigma)
    with pytest.raises(ValueError, match="is empty"):
        gaussian_weighted_l1(x[:0], y[:0])
    with pytest.raises(ValueError, match="l1_sigma must be a positive finite"):
        MixLoss(l1_sigma=float("inf"))
    with pytest.raises(ValueError, match="data_range must be positive and finite"):
        MixLoss(data_range=float("nan"))
    with pytest.raises(ValueError, match="alpha must be in \\[0, 1\\].*0.84"):
        MixLoss(1.5)


def test_gradcheck_mix_loss(gen):
    x, y = _pair(gen, (1, 1, 13, 14))
    x.requires_grad_()
    loss = MixLoss(0.84, l1_sigma=0.6, win_size=3, weights=(0.3, 0.3, 0.4))
    # |x - y| has a kink at 0; the clamp in _pair makes some pixels equal, so move them
    x = x.detach() + 1e-3 * (x.detach() == y).double()
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda a: loss(a, y), (x,))


def test_uncertainty_value_matches_kendall_form(gen):
    x, y = _pair(gen, (2, 1, 20, 20))
    loss = UncertaintyWeightedLoss({"l1": L1Loss(), "mse": MSELoss()})
    with torch.no_grad():
        loss.log_vars.copy_(torch.tensor([0.7, -1.2]))
    total, parts = loss(x, y)
    l1, l2 = float(F.l1_loss(x, y)), float(F.mse_loss(x, y))
    expected = 0.5 * math.exp(-0.7) * l1 + 0.35 + 0.5 * math.exp(1.2) * l2 - 0.6
    assert float(total.detach()) == pytest.approx(expected, abs=1e-6)  # log_vars are float32
    assert parts["l1"] == pytest.approx(l1) and parts["weight_mse"] == pytest.approx(
        0.5 * math.exp(1.2), rel=1e-6)
    # the common exp(-s) L + s variant is exactly twice Kendall's form
    s = loss.log_vars.detach().double()
    variant = (torch.exp(-s) * torch.tensor([l1, l2], dtype=torch.float64) + s).sum()
    assert float(variant) == pytest.approx(2 * expected, abs=1e-6)


def test_uncertainty_gradient_drives_log_var_to_log_loss():
    fixed = {"a": torch.tensor(0.05), "b": torch.tensor(3.0)}
    loss = UncertaintyWeightedLoss({n: (lambda x, y, v=v: v) for n, v in fixed.items()})
    opt = torch.optim.Adam(loss.parameters(), lr=0.05)
    for _ in range(600):
        opt.zero_grad()
        loss(None, None)[0].backward()
        opt.step()
    torch.testing.assert_close(loss.log_vars.detach(),
                               torch.log(torch.tensor([0.05, 3.0])), atol=1e-3, rtol=0)
    # combine() takes precomputed terms; a missing one is an error
    with pytest.raises(KeyError, match="missing loss terms \\['b'\\]"):
        loss.combine({"a": torch.tensor(1.0)})
    with pytest.raises(TypeError, match="non-empty dict"):
        UncertaintyWeightedLoss([L1Loss()])


def test_uncertainty_weighting_refuses_a_nan_or_infinite_start():
    for v in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="init_log_var must be a finite number"):
            UncertaintyWeightedLoss({"l1": L1Loss()}, init_log_var=v)
