"""lossbook.spectral against closed forms and a NumPy re-implementation.

References: a pure tone puts its power at its own frequency; white noise has a flat
spectrum (expected power sigma^2 in every bin, so its high-frequency share is the share
of FFT bins beyond the cutoff, ~ 1 - pi c^2); Gaussian blur (scipy.ndimage) only removes
high frequencies, so the share falls as sigma grows; Parseval's theorem.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from lossbook.spectral import high_frequency_share, radial_power_spectrum, sharpness_ratio


def _tone(f_y: float, f_x: float, size: int = 64, phase: float = 0.3) -> torch.Tensor:
    j = torch.arange(size, dtype=torch.float64)
    arg = 2 * math.pi * (f_y * j[:, None] + f_x * j[None, :]) + phase
    return (0.5 + 0.4 * torch.cos(arg))[None, None]


def _camera(size: int = 128) -> np.ndarray:
    from skimage import data

    return data.camera()[100:100 + size, 180:180 + size].astype(np.float64) / 255.0


@pytest.mark.parametrize("k", [3, 8, 16, 25, 31])
@pytest.mark.parametrize("window", [None, "hann"])
def test_a_tone_lands_at_its_frequency(k, window):
    tone = _tone(k / 64, 0.0)
    freqs, power = radial_power_spectrum(tone, window=window)
    assert freqs.shape == (33,) and power.shape == (1, 33)
    assert float(freqs[power[0].argmax()]) == pytest.approx(k / 64)
    if window is None:  # periodic tone, no window: every bit of power in one ring
        p = power[0].clone()
        p[k] = 0
        assert float(p.max()) < 1e-20


def test_a_diagonal_tone_lands_on_its_ring():
    tone = _tone(8 / 64, 6 / 64)  # radius 10/64 cycles/pixel
    freqs, power = radial_power_spectrum(tone, window=None)
    assert float(freqs[power[0].argmax()]) == pytest.approx(10 / 64)


def test_tone_power_matches_parseval():
    """No window: sum over all 2-D bins of |X|^2/(HW) = sum (x - mean)^2 (Parseval)."""
    tone = _tone(5 / 64, 0.0, phase=0.0)
    freqs, power = radial_power_spectrum(tone, window=None)
    # A cosine of amplitude a puts a^2 H W / 4 in each of its two bins; divided by HW
    # (the window's sum of squares) and averaged over the ring's bins.
    fy = np.fft.fftfreq(64)
    r = np.sqrt(fy[:, None] ** 2 + fy[None, :] ** 2)
    ring_bins = int((np.round(r * 64) == 5).sum())
    expected = 2 * (0.4**2 * 64 * 64 / 4) / ring_bins
    assert float(power[0, 5]) == pytest.approx(expected, rel=1e-9)


def _numpy_radial(img: np.ndarray) -> np.ndarray:
    """Independent re-implementation for one (C, H, W) image, Hann window."""
    c, h, w = img.shape
    win = np.outer(np.hanning(h), np.hanning(w))
    x = img - img.mean(axis=(1, 2), keepdims=True)
    p = np.abs(np.fft.fft2(x * win)) ** 2 / (win**2).sum()
    p = p.mean(axis=0)
    n = min(h, w)
    r = np.hypot(*np.meshgrid(np.fft.fftfreq(h), np.fft.fftfreq(w), indexing="ij"))
    ring = np.round(r * n).astype(int)
    return np.array([p[ring == k].mean() for k in range(n // 2 + 1)])


def test_matches_numpy_reference_on_a_nonsquare_colour_image(gen):
    x = torch.rand(2, 3, 40, 56, generator=gen, dtype=torch.float64)
    freqs, power = radial_power_spectrum(x)
    assert power.dtype == torch.float64 and freqs.shape == (21,)
    for i in range(2):
        np.testing.assert_allclose(power[i].numpy(), _numpy_radial(x[i].numpy()), rtol=1e-10)


@pytest.mark.parametrize("window", [None, "hann"])
def test_white_noise_is_flat_at_its_variance(window, gen):
    sigma = 0.2
    x = sigma * torch.randn(32, 1, 64, 64, generator=gen)
    freqs, power = radial_power_spectrum(x, window=window)
    mean_power = power.mean(0)[1:]  # every ring except DC
    # Each ring averages >= 6 bins x 32 images of an exponential variable (sd = mean):
    # relative sd <= 1/sqrt(192) ~ 0.07; 5 sd = 0.36 is a fail-safe bound, and the mean
    # over all rings is much tighter (well under 5 %).
    assert torch.all((mean_power / sigma**2 - 1).abs() < 0.36)
    assert float(mean_power.mean()) == pytest.approx(sigma**2, rel=0.05)


@pytest.mark.parametrize("cutoff", [0.1, 0.25, 0.4])
@pytest.mark.parametrize("window", [None, "hann"])
def test_white_noise_share_is_the_area_fraction(cutoff, window, gen):
    x = torch.randn(16, 2, 64, 64, generator=gen)
    share = high_frequency_share(x, cutoff, window=window)
    assert share.shape == (16,)
    fy = np.fft.fftfreq(64)
    r = np.hypot(fy[:, None], fy[None, :])
    area = (r > cutoff).sum() / (r > 0).sum()  # exact share of bins
    assert abs(area - (1 - math.pi * cutoff**2)) < 0.01  # the continuum closed form
    # Per image the share averages 8190 exponential bins (x 2 channels): sd < 0.01.
    # The Hann window correlates neighbouring bins, which widens it a little.
    assert float(share.mean()) == pytest.approx(area, abs=0.01)
    assert float((share - area).abs().max()) < 0.05


def test_gaussian_blur_lowers_share_and_ratio_monotonically():
    img = _camera()
    target = torch.from_numpy(img)[None, None]
    sigmas = [0.5, 1.0, 1.5, 2.5, 4.0]
    blurred = torch.stack(
        [torch.from_numpy(ndimage.gaussian_filter(img, s, mode="reflect")) for s in sigmas]
    )[:, None]
    ratios = sharpness_ratio(blurred, target.expand_as(blurred))
    assert torch.all(ratios < 1)
    assert torch.all(ratios[1:] < ratios[:-1]), ratios
    shares = high_frequency_share(blurred)
    assert torch.all(shares[1:] < shares[:-1])


def test_noise_raises_the_ratio_and_identity_gives_one(gen):
    target = torch.from_numpy(_camera())[None, None].float()
    noisy = target + 0.05 * torch.randn(target.shape, generator=gen)
    assert float(sharpness_ratio(noisy, target)) > 1.5
    assert float(sharpness_ratio(target, target)) == pytest.approx(1.0)


def test_brightness_does_not_count():
    x = _tone(10 / 64, 3 / 64)
    assert torch.allclose(high_frequency_share(x + 0.3), high_frequency_share(x), atol=1e-9)
    assert torch.allclose(high_frequency_share(3 * x), high_frequency_share(x), atol=1e-9)


def test_checkerboard_counts_as_high_frequency():
    j = torch.arange(32)
    board = ((j[:, None] + j[None, :]) % 2).float()[None, None]  # (0.5, 0.5) cycles/pixel
    assert float(high_frequency_share(board, window=None)) == pytest.approx(1.0)


def test_constant_images():
    flat = torch.full((2, 1, 16, 16), 0.5)
    assert torch.equal(high_frequency_share(flat), torch.zeros(2))
    with pytest.raises(ValueError, match="target images \\[0, 1\\]"):
        sharpness_ratio(torch.rand(2, 1, 16, 16), flat)


def test_gradient_flows(gen):
    x = torch.rand(1, 1, 16, 16, generator=gen, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda t: high_frequency_share(t, 0.2), (x,))


def test_bad_input_messages():
    with pytest.raises(ValueError, match="window must be 'hann'"):
        radial_power_spectrum(torch.rand(1, 1, 8, 8), window="hamming")
    with pytest.raises(ValueError, match="strictly between 0 and 0.5"):
        high_frequency_share(torch.rand(1, 1, 8, 8), cutoff=0.5)
    with pytest.raises(TypeError, match="cutoff must be a number"):
        high_frequency_share(torch.rand(1, 1, 8, 8), cutoff="0.25")
    with pytest.raises(ValueError, match="at least 4 x 4"):
        radial_power_spectrum(torch.rand(1, 1, 3, 8))
    with pytest.raises(ValueError, match="x\\[None\\]"):
        radial_power_spectrum(torch.rand(1, 8, 8))
    with pytest.raises(TypeError, match="floating-point"):
        radial_power_spectrum(torch.ones(1, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="NaN"):
        radial_power_spectrum(torch.full((1, 1, 8, 8), float("nan")))
    with pytest.raises(ValueError, match="same shape"):
        sharpness_ratio(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 9))
