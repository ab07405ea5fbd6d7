"""lossbook.diagnose: each detector fires on a case built to show its symptom and stays quiet
on a clean one (both directions), with the default thresholds; gradient norms against
autograd and closed forms.

References: scipy.ndimage.gaussian_filter for blur; white Gaussian noise of known sigma
(the noise estimate is checked against sigma within 15 %); a stride-2 transposed
convolution with a 3x3 kernel (Odena et al. 2016) for the checkerboard; MSE's gradient
2 (x - y) / numel in closed form for the loss balance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from lossbook import diagnose as D
from lossbook.data import TEST_IMAGES, TRAIN_IMAGES, load_images
from lossbook.losses import CombinedLoss, L1Loss, MSELoss, SSIMLoss
from lossbook.train import History


@pytest.fixture(scope="module")
def clean():
    return load_images(list(TEST_IMAGES) + list(TRAIN_IMAGES[:4]), 64)


def _blur(x, sigma):
    return torch.from_numpy(ndimage.gaussian_filter(x.numpy(), (0, 0, sigma, sigma)))


def test_clean_images_raise_nothing(clean):
    found = D.diagnose(clean, clean)
    assert set(found) == {"blur", "noise", "shift", "edges", "checkerboard"}
    assert not any(d.flagged for d in found.values()), D.report(found)
    assert "ok blur" in D.report(found)


@pytest.mark.parametrize("sigma", [0.7, 1.0, 2.0])
def test_blur_fires_on_gaussian_blur_only(clean, sigma):
    found = D.diagnose(_blur(clean, sigma), clean)
    assert found["blur"].flagged and found["blur"].value < 0.7
    assert "raise the SSIM or gradient-loss weight" in found["blur"].verdict
    assert not found["noise"].flagged and not found["checkerboard"].flagged
    if sigma <= 1.0:  # a strong blur (sigma 2 on 64 px) also lowers the coarse contrast
        assert not found["shift"].flagged


def test_blur_value_is_the_sharpness_ratio_and_monotone(clean):
    values = [D.blur(_blur(clean, s), clean).value for s in (0.3, 0.6, 1.0, 1.5)]
    assert values == sorted(values, reverse=True)


@pytest.mark.parametrize("sigma", [0.015, 0.03, 0.06])
def test_noise_estimates_sigma_and_fires(clean, gen, sigma):
    noisy = clean + sigma * torch.randn(clean.shape, generator=gen)
    d = D.noise(noisy, clean)
    assert d.flagged
    assert d.value == pytest.approx(sigma, rel=0.15)
    assert not D.blur(noisy, clean).flagged  # noise adds high frequencies


def test_noise_quiet_below_threshold_and_on_blur_and_offsets(clean, gen):
    assert not D.noise(clean + 0.004 * torch.randn(clean.shape, generator=gen), clean).flagged
    assert not D.noise(_blur(clean, 1.5), clean).flagged
    assert D.noise(clean + 0.1, clean).value == pytest.approx(0.0, abs=1e-4)  # float32


def test_noise_scales_with_data_range(clean, gen):
    noisy = clean + 0.03 * torch.randn(clean.shape, generator=gen)
    a = D.noise(noisy, clean).value
    b = D.noise(255 * noisy, 255 * clean, data_range=255).value
    assert a == pytest.approx(b, rel=1e-4)


def test_brightness_shift_fires_and_names_itself(clean):
    d = D.shift(clean + 0.05, clean)
    assert d.flagged and d.value == pytest.approx(0.05, rel=1e-4)
    assert "brightness shift" in d.verdict and "MSE or L1" in d.verdict
    assert not D.shift(clean + 0.01, clean).flagged


def test_colour_shift_is_told_from_brightness():
    rgb = load_images(["astronaut", "coffee", "chelsea"], 64, color=True)
    tint = torch.tensor([0.04, 0.0, -0.04])[:, None, None]
    d = D.shift(rgb + tint, rgb)
    assert d.flagged and d.details["kind"] == "colour"
    assert d.details["bias"] == pytest.approx([0.04, 0.0, -0.04], abs=1e-5)
    assert not D.shift(rgb, rgb).flagged


def test_contrast_change_fires_but_blur_does_not(clean):
    assert D.shift(0.5 + 0.75 * (clean - 0.5), clean).flagged
    assert not D.shift(_blur(clean, 1.0), clean).flagged


def test_edges_fire_on_blur_not_on_noise_or_offsets(clean, gen):
    d = D.edges(_blur(clean, 1.5), clean)
    assert d.flagged and d.value < 0.8 and "gradient (Sobel) loss" in d.verdict
    assert not D.edges(clean + 0.1, clean).flagged
    assert D.edges(clean + 0.1, clean).value == pytest.approx(1.0, abs=1e-4)
    noisy = clean + 0.03 * torch.randn(clean.shape, generator=gen)
    assert not D.edges(noisy, clean).flagged
    # monotone in the blur
    values = [D.edges(_blur(clean, s), clean).value for s in (0.5, 1.0, 2.0)]
    assert values == sorted(values, reverse=True)


def test_checkerboard_from_a_transposed_convolution(clean):
    torch.manual_seed(0)
    small = F.avg_pool2d(clean, 2)
    with torch.no_grad():
        tconv = torch.nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1, output_padding=1)(small)
        resize = torch.nn.Conv2d(1, 1, 3, padding=1)(F.interpolate(small, scale_factor=2))
    d = D.checkerboard(tconv, clean)
    assert d.flagged and d.value > 100 and "transposed" in d.verdict
    assert not D.checkerboard(resize, clean).flagged  # the fix: resize, then convolve
    assert not D.checkerboard(F.interpolate(small, scale_factor=2, mode="bilinear")).flagged


def test_checkerboard_ignores_a_target_that_has_the_pattern():
    j = torch.arange(64)
    board = ((j[:, None] + j[None, :]) % 2).float()[None, None]
    g = torch.Generator().manual_seed(0)
    x = 0.5 + 0.2 * board + 0.05 * torch.rand(4, 1, 64, 64, generator=g)
    assert D.checkerboard(x).flagged  # on its own it looks like an artefact
    assert not D.checkerboard(x, x).flagged  # but the target has it too


def _history(losses, val=None, every=10):
    h = History()
    h.step = [every * (i + 1) for i in range(len(losses))]
    h.loss = list(losses)
    if val is not None:
        h.val_step = h.step[:: max(1, len(losses) // len(val))][: len(val)]
        h.val = {"psnr": list(val)}
    return h


def test_training_health_quiet_on_a_good_run():
    losses = [1.0 * math.exp(-i / 10) + 0.01 for i in range(30)]
    out = D.training_health(_history(losses, val=[20, 22, 24, 25, 26]))
    assert not any(d.flagged for d in out.values()), D.report(out)


def test_training_health_flags_each_problem():
    diverging = [1.0, 0.5, 0.3, 0.4, 0.8, 1.5, 3.0]
    assert D.training_health(_history(diverging))["divergence"].flagged
    spiky = [1.0, 0.8, 0.6, 0.5, 0.45, 5.0, 0.4, 0.38, 0.36, 0.3]
    out = D.training_health(_history(spiky))
    assert out["spikes"].flagged and out["spikes"].details["steps"] == [60]
    assert not out["divergence"].flagged
    flat = [1.0, 0.5, 0.3] + [0.2] * 9
    assert D.training_health(_history(flat))["plateau"].flagged
    nan = [1.0, 0.5, float("nan"), 0.4]
    out = D.training_health(_history(nan))
    assert out["nan"].flagged and out["nan"].details["steps"] == [30]
    falling_metric = [20, 22, 23, 22, 21, 20]
    losses = [1.0 * math.exp(-i / 10) for i in range(30)]
    assert D.training_health(_history(losses, val=falling_metric))["metric"].flagged


def test_training_health_input_errors():
    with pytest.raises(TypeError, match="History"):
        D.training_health([1, 2, 3])
    with pytest.raises(ValueError, match="at least 2 logged"):
        D.training_health(_history([1.0]))


def test_loss_balance_output_norms_match_autograd_and_closed_form(gen):
    pred = torch.rand(2, 1, 32, 32, generator=gen, dtype=torch.float64)
    target = torch.rand(2, 1, 32, 32, generator=gen, dtype=torch.float64)
    loss = CombinedLoss({"mse": (0.5, MSELoss()), "ssim": (0.5, SSIMLoss())})
    b = D.loss_balance(loss, pred, target)
    # MSE: d/dx mean((x-y)^2) = 2 (x - y) / numel
    closed = float((2 * (pred - target) / pred.numel()).norm())
    assert b.grad_norm_output[0] == pytest.approx(closed, rel=1e-10)
    x = pred.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(SSIMLoss()(x, target), x)
    assert b.grad_norm_output[1] == pytest.approx(float(g.norm()), rel=1e-10)
    assert sum(b.balanced) == pytest.approx(1.0)
    # the balanced weights equalise the weighted norms
    w = [bw * g for bw, g in zip(b.balanced, b.grad_norm_output, strict=True)]
    assert w[0] == pytest.approx(w[1], rel=1e-10)


def test_loss_balance_on_parameters_and_imbalance_flag(gen):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 3, padding=1).double()
    inputs = torch.rand(2, 1, 24, 24, generator=gen, dtype=torch.float64)
    target = torch.rand(2, 1, 24, 24, generator=gen, dtype=torch.float64)
    terms = {"l1": (1.0, L1Loss()), "mse": (1000.0, MSELoss())}
    b = D.loss_balance(terms, model(inputs), target, model=model, inputs=inputs)
    out = model(inputs)
    grads = torch.autograd.grad(F.mse_loss(out, target), list(model.parameters()))
    by_hand = math.sqrt(sum(float(g.pow(2).sum()) for g in grads))
    assert b.grad_norm_params[1] == pytest.approx(by_hand, rel=1e-10)
    assert b.imbalance > 10 and "'mse' pulls" in b.verdict
    rebalanced = D.loss_balance(b.as_terms({"l1": L1Loss(), "mse": MSELoss()}), out, target,
                                model=model, inputs=inputs)
    assert rebalanced.imbalance == pytest.approx(1.0, rel=1e-6)


def test_bad_arguments(clean):
    with pytest.raises(ValueError, match="threshold must be a positive"):
        D.blur(clean, clean, threshold=0)
    with pytest.raises(ValueError, match="factor must be an int >= 2"):
        D.checkerboard(clean, factor=1)
    with pytest.raises(ValueError, match="at least 16 x 16"):
        D.checkerboard(torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="flat_fraction"):
        D.noise(clean, clean, flat_fraction=0)
    with pytest.raises(ValueError, match="same shape"):
        D.shift(clean, clean[:, :, :32])
    with pytest.raises(ValueError, match="both model and inputs"):
        D.loss_balance({"l1": (1.0, L1Loss())}, clean, clean, model=torch.nn.Identity())
    with pytest.raises(TypeError, match="CombinedLoss or a dict"):
        D.loss_balance(L1Loss(), clean, clean)
    assert np.isfinite(D.blur(clean, clean).value)
