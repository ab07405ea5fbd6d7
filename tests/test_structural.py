"""Tests for lossbook.losses.structural (SSIM, MS-SSIM).

Independent references and tolerances:
- pytorch-msssim (``pytorch_msssim.ssim`` / ``ms_ssim``, Gongfan Fang's implementation):
  float64, absolute tolerance 1e-6 (observed agreement ~1e-15).
- scikit-image ``structural_similarity`` with Wang et al.'s settings
  (``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``), and its uniform
  window (``gaussian_weights=False``): float64, 1e-6. scikit-image filters with reflective
  padding and then crops ``(win_size - 1) // 2`` pixels from every border before averaging,
  which is exactly our valid region.
- torchmetrics (``structural_similarity_index_measure``), a third implementation: its
  returned SSIM also averages the windows over its reflect-padded border, so the test
  crops its full map (``return_full_image=True``) to the valid region, 1e-6; its MS-SSIM
  uses that padded SSIM at the coarsest scale, so the test compares the cs scales (the
  coarsest weight set to 0), one channel, 1e-6.
- float64 for the float32 path far outside ``[0, data_range]`` (an offset of 1000).
- scipy's Gaussian kernel (``gaussian_filter1d`` of a unit impulse, truncate=3.5) for the
  window, 1e-12.
- Closed forms: the three properties of Wang et al. (symmetry, <= 1, = 1 iff x = y),
  ``torch.autograd.gradcheck`` (finite differences) for the hand-written backward.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import pytorch_msssim
import scipy.ndimage
import torch
from pytorch_msssim.ssim import _fspecial_gauss_1d
from skimage import data as skdata
from skimage.metrics import structural_similarity

import lossbook.losses as losses
import lossbook.metrics as metrics
from lossbook.losses import structural as st
from lossbook.losses.structural import (
    MS_SSIM_WEIGHTS,
    MSSSIMLoss,
    SSIMLoss,
    gaussian_window,
    ms_ssim,
    ssim,
    ssim_components,
)

TOL = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["fused kernel", "pytorch ops"])
def ssim_path(request, monkeypatch):
    """Run a test on both CPU implementations: the compiled kernel (the default) and the
    PyTorch operations (CUDA's path, and the CPU's without Numba)."""
    monkeypatch.setattr(st, "_CPU_FUSED", request.param == "fused kernel")
    return request.param


both_paths = pytest.mark.usefixtures("ssim_path")


def _pair(gen, shape, noise=0.15, dtype=torch.float64, scale=1.0):
    y = torch.rand(*shape, generator=gen, dtype=dtype)
    x = (y + noise * torch.randn(*shape, generator=gen, dtype=dtype)).clamp(0, 1)
    return x * scale, y * scale


def _camera(h=128, w=160):
    img = skdata.camera()[100 : 100 + h, 150 : 150 + w].astype(np.float64) / 255.0
    return torch.from_numpy(img)[None, None]


def _astronaut(h=96, w=112):
    img = skdata.astronaut()[40 : 40 + h, 180 : 180 + w].astype(np.float64) / 255.0
    return torch.from_numpy(img).permute(2, 0, 1)[None].contiguous()


def _blur(x, sigma=1.0):
    out = scipy.ndimage.gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma))
    return torch.from_numpy(out)


def _skimage_ssim(x, y, data_range, **kw):
    """Mean over images and channels of scikit-image's SSIM (channel by channel)."""
    values = [
        structural_similarity(
            x[n, c].numpy(), y[n, c].numpy(), data_range=data_range,
            use_sample_covariance=False, **kw,
        )
        for n in range(x.shape[0])
        for c in range(x.shape[1])
    ]
    return np.array(values).reshape(x.shape[0], x.shape[1]).mean(axis=1)


# ---------------------------------------------------------------------------- window


def test_gaussian_window_matches_scipy_and_pytorch_msssim():
    g = gaussian_window(11, 1.5, dtype=torch.float64)
    impulse = np.zeros(11)
    impulse[5] = 1.0
    ref = scipy.ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5, mode="constant")
    np.testing.assert_allclose(g.numpy(), ref, atol=1e-12)
    theirs = _fspecial_gauss_1d(11, 1.5).flatten().double()
    torch.testing.assert_close(g, theirs, atol=1e-7, rtol=0)
    assert g.shape == (11,) and abs(float(g.sum()) - 1) < 1e-12
    torch.testing.assert_close(g, g.flip(0))


def test_gaussian_window_errors():
    with pytest.raises(ValueError, match="win_size must be odd.*Use 9 or 11"):
        gaussian_window(10, 1.5)
    with pytest.raises(ValueError, match="sigma must be a positive number"):
        gaussian_window(11, 0.0)
    with pytest.raises(ValueError, match="positive odd integer"):
        gaussian_window(0)


def test_window_is_cached_per_device_and_dtype():
    a = st._window("gaussian", 11, 1.5, torch.device("cpu"), torch.float32)
    b = st._window("gaussian", 11, 1.5, torch.device("cpu"), torch.float32)
    c = st._window("gaussian", 11, 1.5, torch.device("cpu"), torch.float64)
    assert a is b and c is not a and c.dtype == torch.float64


# ------------------------------------------------------------- SSIM vs the references


@both_paths
@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (1, 3, 48, 64), (3, 2, 11, 23)])
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_matches_pytorch_msssim_random(gen, shape, data_range):
    x, y = _pair(gen, shape, scale=data_range)
    ours = ssim(x, y, data_range=data_range, reduction="none")
    theirs = pytorch_msssim.ssim(x, y, data_range=data_range, size_average=False)
    assert ours.shape == (shape[0],)
    torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)


@both_paths
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_matches_references_on_real_images(data_range):
    gray = _camera() * data_range
    colour = _astronaut() * data_range
    for clean, degraded in [(gray, _blur(gray)), (colour, _blur(colour, 0.7))]:
        ours = ssim(degraded, clean, data_range=data_range, reduction="none")
        theirs = pytorch_msssim.ssim(degraded, clean, data_range=data_range, size_average=False)
        sk = _skimage_ssim(degraded, clean, data_range, gaussian_weights=True, sigma=1.5)
        torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)
        np.testing.assert_allclose(ours.numpy(), sk, atol=TOL, rtol=0)
        assert 0.3 < float(ours) < 0.999  # a real, non-trivial comparison


@both_paths
@pytest.mark.parametrize("shape", [(2, 1, 40, 40), (1, 3, 33, 47)])
def test_ssim_matches_skimage_gaussian(gen, shape):
    x, y = _pair(gen, shape, noise=0.3)
    sk = _skimage_ssim(x, y, 1.0, gaussian_weights=True, sigma=1.5)
    np.testing.assert_allclose(ssim(x, y, reduction="none").numpy(), sk, atol=TOL, rtol=0)


@both_paths
@pytest.mark.parametrize("win_size", [7, 11])
def test_uniform_window_matches_skimage(gen, win_size):
    x, y = _pair(gen, (2, 2, 36, 30), noise=0.2)
    ours = ssim(x, y, window="uniform", win_size=win_size, reduction="none")
    sk = _skimage_ssim(x, y, 1.0, gaussian_weights=False, win_size=win_size)
    np.testing.assert_allclose(ours.numpy(), sk, atol=TOL, rtol=0)


def test_skimage_defaults_differ_from_wang_et_al():
    """scikit-image's defaults (7x7 uniform, sample covariance) give a different number."""
    clean = _camera()
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0),
                                       dtype=torch.float64)).clamp(0, 1)
    sk_default = structural_similarity(noisy[0, 0].numpy(), clean[0, 0].numpy(), data_range=1.0)
    assert abs(sk_default - float(ssim(noisy, clean))) > 1e-3


# -------------------------------------------------------------------------- MS-SSIM


@both_paths
@pytest.mark.parametrize("shape,data_range", [((2, 1, 176, 192), 1.0), ((1, 3, 192, 176), 255.0)])
def test_ms_ssim_matches_pytorch_msssim(gen, shape, data_range):
    x, y = _pair(gen, shape, noise=0.2, scale=data_range)
    ours = ms_ssim(x, y, data_range=data_range, reduction="none")
    theirs = pytorch_msssim.ms_ssim(x, y, data_range=data_range, size_average=False)
    torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)


@both_paths
def test_ms_ssim_matches_pytorch_msssim_on_real_image():
    clean = _camera(192, 208)
    degraded = _blur(clean, 1.5)
    ours = ms_ssim(degraded, clean)
    theirs = pytorch_msssim.ms_ssim(degraded, clean, data_range=1.0)
    torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)
    # a different number of scales and a smaller window, against the same reference
    # (pytorch-msssim asks for sides > (win_size - 1) * 16 whatever the number of scales)
    kw = dict(win_size=7, weights=[0.2, 0.3, 0.5])
    a, b = degraded[..., :112, :112], clean[..., :112, :112]
    theirs = pytorch_msssim.ms_ssim(a, b, data_range=1.0, **kw)
    torch.testing.assert_close(ms_ssim(a, b, **kw), theirs, atol=TOL, rtol=0)


@both_paths
def test_ms_ssim_negative_cs_is_zero_without_nan(gen):
    y = torch.rand(1, 1, 176, 176, generator=gen, dtype=torch.float64)
    x = (1 - y).requires_grad_()  # anti-correlated: cs < 0 at the finest scale
    value = ms_ssim(x, y)
    theirs = pytorch_msssim.ms_ssim(x.detach(), y, data_range=1.0)
    assert float(value.detach()) == 0.0 and float(theirs) == 0.0
    value.backward()
    assert torch.isfinite(x.grad).all()


@both_paths
def test_ms_ssim_odd_sides_and_minimum_size(gen):
    x, y = _pair(gen, (1, 1, 161, 167))  # just above (11 - 1) * 2**4 = 160; odd sides
    v = ms_ssim(x, y)
    assert torch.isfinite(v) and 0 < float(v) < 1
    # for even sides the ceil-mode 2x2 average is plain average pooling
    a = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(a, 2, ceil_mode=True),
                               torch.nn.functional.avg_pool2d(a, 2))
    # an odd last row is averaged on its own, not with zeros
    b = torch.ones(1, 1, 3, 3)
    assert torch.equal(torch.nn.functional.avg_pool2d(b, 2, ceil_mode=True), torch.ones(1, 1, 2, 2))


@both_paths
def test_ssim_matches_torchmetrics_valid_region(gen):
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    for shape, data_range in [((2, 3, 40, 52), 1.0), ((1, 1, 64, 48), 255.0)]:
        x, y = _pair(gen, shape, noise=0.2, scale=data_range)
        _, full = tm_ssim(x, y, data_range=data_range, return_full_image=True,
                          reduction="none")
        valid = full[..., 5:-5, 5:-5].flatten(1).mean(1)  # its windows inside the image
        torch.testing.assert_close(ssim(x, y, data_range=data_range, reduction="none"), valid,
                                   atol=TOL, rtol=0)


@both_paths
def test_ms_ssim_cs_scales_match_torchmetrics(gen):
    from torchmetrics.functional.image import (
        multiscale_structural_similarity_index_measure as tm_ms_ssim,
    )

    betas = (0.1, 0.3, 0.4, 0.2, 0.0)  # coarsest weight 0: torchmetrics pads that SSIM
    x, y = _pair(gen, (2, 1, 192, 176), noise=0.2)
    theirs = tm_ms_ssim(x, y, data_range=1.0, betas=betas, reduction="none")
    ours = ms_ssim(x, y, weights=betas, reduction="none")
    torch.testing.assert_close(ours, theirs, atol=TOL, rtol=0)


# ------------------------------------------------------------------ chunks, precision


@pytest.mark.parametrize("budget", [2000, 10_000, 20_000])
def test_chunked_equals_unchunked(gen, monkeypatch, budget):
    """Batches split into groups of images and images into bands of rows: same value and
    gradients (float64, 1e-12) as one chunk, for x and y, SSIM and MS-SSIM."""
    monkeypatch.setattr(st, "_CPU_FUSED", False)  # the PyTorch operations' chunks
    x, y = _pair(gen, (3, 2, 120, 39), noise=0.3)
    mx, my = _pair(gen, (2, 1, 64, 70), noise=0.3)
    kw = dict(win_size=5, weights=(0.3, 0.3, 0.4))

    def run():
        out = []
        for fn, a, b, extra in [(ssim, x, y, {}), (ms_ssim, mx, my, kw)]:
            a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
            v = fn(a, b, reduction="none", **extra)
            (v * torch.arange(1.0, 1 + v.numel(), dtype=v.dtype)).sum().backward()
            out += [v.detach(), a.grad, b.grad]
        return out

    whole = run()
    monkeypatch.setattr(st, "_CHUNK_ELEMENTS", budget)
    assert len(st._chunks(3, 2, 120, 39, 11, budget)) >= 2  # really chunked
    for a, b in zip(run(), whole, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("shifts", [True, False])
@pytest.mark.parametrize("size", [(23, 30), (64, 64), (90, 110), (140, 150)])
def test_blur_and_its_adjoint_match_scipy(gen, size, shifts, monkeypatch):
    """Every blur algorithm (banded matrix products below _MATMUL_SIDES; shifted sums, or
    depthwise convolutions with _CPU_SHIFTS off, above) against
    scipy.ndimage.correlate1d's 'valid' region (float64, 1e-12), and the adjoint identity
    <blur(a), g> = <a, blur_adjoint(g)>."""
    monkeypatch.setattr(st, "_CPU_SHIFTS", shifts)
    h, w = size
    win = st.gaussian_window(11, 1.5, dtype=torch.float64).flatten()
    a = torch.rand(2, 3, h, w, generator=gen, dtype=torch.float64)
    k = win.numpy()
    ref = scipy.ndimage.correlate1d(a.numpy(), k, axis=2, mode="constant")
    ref = scipy.ndimage.correlate1d(ref, k, axis=3, mode="constant")[..., 5:h - 5, 5:w - 5]
    out = st._blur(a, win)
    torch.testing.assert_close(out, torch.from_numpy(ref), atol=1e-12, rtol=0)
    g = torch.rand(out.shape, generator=gen, dtype=torch.float64)
    lhs, rhs = (out * g).sum(), (a * st._blur_adjoint(g, win)).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-10, rtol=1e-12)
    assert st._by_matmul(a, h, w) == (h + w <= st._MATMUL_SIDES)


def test_matrix_product_blur_equals_the_other_algorithms(gen, monkeypatch):
    """SSIM and MS-SSIM with every blur forced to shifted sums (_MATMUL_SIDES = 0), then
    to convolutions (_CPU_SHIFTS off too): the same values and gradients (float64, 1e-12)
    as with the matrix products."""
    monkeypatch.setattr(st, "_CPU_FUSED", False)  # the PyTorch operations' blurs
    x, y = _pair(gen, (2, 3, 70, 60), noise=0.3)
    mx, my = _pair(gen, (1, 1, 170, 180), noise=0.3)

    def run():
        out = []
        for fn, a, b in [(ssim, x, y), (ms_ssim, mx, my)]:
            a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
            v = fn(a, b, reduction="none")
            v.sum().backward()
            out += [v.detach(), a.grad, b.grad]
        return out

    by_matmul = run()
    monkeypatch.setattr(st, "_MATMUL_SIDES", 0)
    for a, b in zip(run(), by_matmul, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    monkeypatch.setattr(st, "_CPU_SHIFTS", False)
    for a, b in zip(run(), by_matmul, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def _values_and_gradients(fn, x, y, need=("x", "y"), **kw):
    a = x.clone().requires_grad_("x" in need)
    b = y.clone().requires_grad_("y" in need)
    v = fn(a, b, reduction="none", **kw)
    (v * torch.arange(1.0, 1 + v.numel(), dtype=v.dtype)).sum().backward()
    return [v.detach()] + [t.grad for t in (a, b) if t.requires_grad]


@pytest.mark.parametrize("need", [("x",), ("y",), ("x", "y")])
@pytest.mark.parametrize("fn,shape,kw", [
    (ssim, (2, 3, 40, 47), {}),  # the written-out 11 taps
    (ssim, (1, 2, 11, 30), {}),  # one row of window positions
    (ssim, (2, 1, 29, 31), {"win_size": 13, "sigma": 2.0}),  # the loops over taps
    (ssim, (1, 1, 9, 8), {"win_size": 1}),
    (ssim, (2, 2, 20, 17), {"window": "uniform", "win_size": 5}),
    (ms_ssim, (2, 2, 181, 163), {}),  # cs scales, odd sides pooled
    (ms_ssim, (1, 1, 50, 45), {"win_size": 5, "weights": (0.5, 0.5)}),
])
def test_fused_kernel_equals_pytorch_ops(gen, monkeypatch, fn, shape, kw, need):
    """The compiled kernel (values, gradients of x, y or both) against the PyTorch
    operations, float64, 1e-12 relative to the largest gradient: every window size branch,
    the cs map of MS-SSIM, odd sides, a single row of window positions, win_size 1."""
    x, y = _pair(gen, shape, noise=0.3)
    x, y = x + 0.4, y - 0.2  # off-centre, and not equal
    fused = _values_and_gradients(fn, x, y, need, **kw)
    monkeypatch.setattr(st, "_CPU_FUSED", False)
    ops = _values_and_gradients(fn, x, y, need, **kw)
    for a, b in zip(fused, ops, strict=True):
        torch.testing.assert_close(a, b, atol=1e-12 * float(b.abs().max()), rtol=0)
    assert len(fused) == 1 + len(need)


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 2, 9, 7), (1, 1, 5, 6), (1, 1, 1, 1),
                                   (1, 1, 3, 1)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_pooling_equals_avg_pool2d_bit_for_bit(gen, shape, dtype):
    """MS-SSIM's 2x2 average by the kernel: the values and the gradient of
    F.avg_pool2d(x, 2, ceil_mode=True) exactly, even and odd sides."""
    x = torch.rand(shape, generator=gen, dtype=dtype, requires_grad=True)
    win = gaussian_window(dtype=dtype)
    ours, ref = st._pool2(x, win), torch.nn.functional.avg_pool2d(x, 2, ceil_mode=True)
    assert st._fused_kernel(x, win) is not None  # the kernel really ran
    g = torch.rand(ref.shape, generator=gen, dtype=dtype)
    assert torch.equal(ours, ref)
    assert torch.equal(torch.autograd.grad(ours, x, g)[0], torch.autograd.grad(ref, x, g)[0])


def test_fused_kernel_threads_give_identical_results(gen, monkeypatch):
    """The planes split between two threads: the same bits as one thread."""
    x, y = _pair(gen, (3, 2, 40, 36), noise=0.3, dtype=torch.float32)
    one = _values_and_gradients(ssim, x, y)
    monkeypatch.setattr(st, "_PIXELS_PER_THREAD", 100)
    torch.set_num_threads(2)  # the one_thread fixture restores the count
    calls, pool = [], st._thread_pool
    monkeypatch.setattr(st, "_thread_pool", lambda n: calls.append(n) or pool(n))
    two = _values_and_gradients(ssim, x, y)
    assert calls == [2]  # really split
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_fused_kernel_threads_work_in_a_forked_child(gen, monkeypatch):
    """After the parent used its SSIM threads, a forked child (a multiprocessing worker)
    computes SSIM with its own threads instead of waiting for the parent's, which do not
    exist there."""
    import multiprocessing

    x, y = _pair(gen, (3, 2, 40, 36), noise=0.3, dtype=torch.float32)
    monkeypatch.setattr(st, "_PIXELS_PER_THREAD", 100)
    torch.set_num_threads(2)  # the one_thread fixture restores the count
    expected = float(ssim(x, y))  # the parent's pool now exists
    with multiprocessing.get_context("fork").Pool(1) as pool:
        result = pool.apply_async(_ssim_in_child, (x, y))
        assert result.get(timeout=60) == expected


def _ssim_in_child(x, y):
    torch.set_num_threads(2)
    return float(ssim(x, y))


def test_fused_kernel_applies_on_the_cpu_to_symmetric_windows(monkeypatch):
    x = torch.zeros(1, 1, 4, 4)
    win = gaussian_window()
    assert st._fused_kernel(x, win) is not None
    assert st._fused_kernel(x.double(), win.double()) is not None
    assert st._fused_kernel(x, torch.tensor([0.2, 0.3, 0.5])) is None  # not symmetric
    monkeypatch.setattr(st, "_CPU_FUSED", False)
    assert st._fused_kernel(x, win) is None


def test_without_numba_the_pytorch_ops_give_the_same_result(gen, monkeypatch):
    """Where Numba cannot be imported, SSIM falls back to the PyTorch operations."""
    x, y = _pair(gen, (2, 1, 30, 30), noise=0.3, dtype=torch.float32)
    with_kernel = ssim(x, y)
    monkeypatch.setattr(st, "_load_fused", lambda: None)
    assert st._fused_kernel(x, gaussian_window()) is None
    torch.testing.assert_close(ssim(x, y), with_kernel, atol=1e-6, rtol=0)


def test_chunks_cover_every_row_once():
    for n, c, h, w, t, budget in [(5, 3, 100, 90, 11, 10_000), (4, 1, 64, 64, 11, 1 << 18),
                                  (1, 3, 1024, 1024, 11, 1 << 18)]:
        chunks = st._chunks(n, c, h, w, t, budget)
        seen = torch.zeros(n, h - t + 1, dtype=torch.long)
        for b0, b1, r0, r1 in chunks:
            seen[b0:b1, r0:r1] += 1
            assert (b1 - b0) * c * (r1 - r0 + t - 1) * w <= max(budget, c * w * 5 * t)
        assert (seen == 1).all()


@both_paths
def test_memory_layouts_give_the_same_values_and_gradients(gen):
    """channels-last (a channels-last model's output) and strided views: same numbers."""
    x, y = _pair(gen, (2, 3, 40, 44), noise=0.3)
    variants = [
        (x, y),
        (x.contiguous(memory_format=torch.channels_last), y),
        (x.transpose(-1, -2).contiguous().transpose(-1, -2), y[..., :, :]),
    ]
    ref = None
    for a, b in variants:
        a = a.clone(memory_format=torch.preserve_format).requires_grad_()
        v = ssim(a, b, reduction="none")
        v.sum().backward()
        got = (v.detach(), a.grad.contiguous())
        if ref is None:
            ref = got
        for g, r in zip(got, ref, strict=True):
            torch.testing.assert_close(g, r, atol=1e-12, rtol=0)


@both_paths
@pytest.mark.parametrize("offset", [1000.0, -1e4])
def test_float32_far_outside_data_range_matches_float64(gen, offset):
    """An offset of 1000 used to give SSIM = -4.8 in float32 (variances E[x^2] - mu^2
    cancelling); the moments are now taken about a per-channel centre."""
    x, y = _pair(gen, (2, 3, 48, 48), noise=0.2, dtype=torch.float32)
    x, y = x + offset, y + offset  # rounded to float32 here; float64 sees the same values
    x32 = x.clone().requires_grad_()
    x64 = x.double().requires_grad_()
    v32, v64 = ssim(x32, y), ssim(x64, y.double())
    assert -1 <= float(v32.detach()) <= 1 and v32.dtype == torch.float32
    assert abs(float(v32.detach()) - float(v64.detach())) < 1e-5
    v32.backward()
    v64.backward()
    torch.testing.assert_close(x32.grad.double(), x64.grad, atol=1e-6, rtol=1e-3)
    comp = ssim_components(x, y)
    assert abs(float(comp.ssim.mean()) - float(v64.detach())) < 1e-5
    mx, my = _pair(gen, (1, 1, 176, 176), noise=0.2, dtype=torch.float32)
    mx, my = mx + offset, my + offset
    assert abs(float(ms_ssim(mx, my)) - float(ms_ssim(mx.double(), my.double()))) < 1e-5


@both_paths
def test_float32_wide_values_are_computed_in_float64(gen):
    """Values spread over far more than data_range (8-bit values with data_range=1):
    float32 would round the variances of flat windows; the statistics switch to float64,
    the result stays float32."""
    x, y = _pair(gen, (1, 1, 40, 40), noise=0.1, scale=255.0, dtype=torch.float32)
    x[..., :20, :] = 128.0
    y[..., :20, :] = 128.0  # flat and equal: SSIM 1 there
    v = ssim(x, y, data_range=1.0)
    ref = ssim(x.double(), y.double(), data_range=1.0)
    assert v.dtype == torch.float32 and abs(float(v) - float(ref)) < 1e-6
    with pytest.raises(ValueError, match="times data_range=1.*real data_range"):
        ssim(x * 1e5, y * 1e5, data_range=1.0)


# ----------------------------------------------------------------------- properties


@both_paths
def test_three_properties_of_wang_et_al(gen):
    x, y = _pair(gen, (4, 2, 24, 24), noise=0.3)
    sxy, syx = ssim(x, y, reduction="none"), ssim(y, x, reduction="none")
    torch.testing.assert_close(sxy, syx, atol=1e-14, rtol=0)  # symmetry
    assert (sxy <= 1).all() and (sxy < 1 - 1e-3).all()  # bounded, < 1 when x != y
    assert torch.equal(ssim(x, x, reduction="none"), torch.ones(4, dtype=torch.float64))
    # a tiny perturbation is < 1 too (unique maximum)
    assert float(ssim(x + 1e-3 * (y - x), x)) < 1.0
    # components are symmetric and bounded as well
    comp = ssim_components(x, y)
    assert (comp.luminance <= 1 + 1e-12).all() and (comp.contrast <= 1 + 1e-12).all()
    assert (comp.structure.abs() <= 1 + 1e-12).all()
    mx, my = _pair(gen, (2, 1, 176, 176))
    torch.testing.assert_close(ms_ssim(mx, my), ms_ssim(my, mx), atol=1e-14, rtol=0)
    assert float(ms_ssim(mx, mx)) == pytest.approx(1.0, abs=1e-12)


@both_paths
def test_components_multiply_back_to_ssim(gen):
    x, y = _pair(gen, (2, 3, 30, 26), noise=0.25)
    comp = ssim_components(x, y, data_range=1.0)
    assert comp.ssim.shape == (2, 3, 20, 16)
    torch.testing.assert_close(comp.luminance * comp.contrast * comp.structure, comp.ssim)
    torch.testing.assert_close(comp.ssim.flatten(1).mean(1), ssim(x, y, reduction="none"),
                               atol=1e-12, rtol=0)
    # luminance alone: a pure mean shift leaves contrast and structure at (nearly) 1
    shift = ssim_components((y * 0.5 + 0.3), y * 0.5)
    assert float(shift.luminance.mean()) < 0.95
    assert float(shift.contrast.min()) > 1 - 1e-9 and float(shift.structure.min()) > 1 - 1e-6


@both_paths
def test_reduction_and_modules(gen):
    x, y = _pair(gen, (3, 1, 20, 20))
    per_image = ssim(x, y, reduction="none")
    assert per_image.shape == (3,)
    torch.testing.assert_close(ssim(x, y), per_image.mean())
    torch.testing.assert_close(SSIMLoss(reduction="none")(x, y), 1 - per_image)
    mx, my = _pair(gen, (2, 1, 176, 176))
    torch.testing.assert_close(MSSSIMLoss()(mx, my), 1 - ms_ssim(mx, my))
    assert losses.ssim is ssim and losses.MS_SSIM_WEIGHTS == MS_SSIM_WEIGHTS
    assert "data_range=255" in repr(SSIMLoss(data_range=255))


def test_metrics_have_no_grad(gen):
    x, y = _pair(gen, (1, 1, 176, 176), dtype=torch.float32)
    x.requires_grad_()
    for fn in (metrics.ssim, metrics.ms_ssim):
        v = fn(x, y)
        assert not v.requires_grad
    torch.testing.assert_close(metrics.ssim(x, y), ssim(x.detach(), y))


# ------------------------------------------------------------------------ gradients


@both_paths
def test_gradcheck_ssim(gen):
    x = torch.rand(2, 2, 9, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 2, 9, 10, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, win_size=5, reduction="none"), (x, y))
    assert torch.autograd.gradcheck(lambda a: ssim(a, y.detach(), win_size=7, window="uniform"),
                                    (x,))


@both_paths
def test_gradcheck_ms_ssim(gen):
    y = torch.rand(1, 2, 13, 14, generator=gen, dtype=torch.float64)
    x = (y + 0.3 * torch.rand(1, 2, 13, 14, generator=gen, dtype=torch.float64)).requires_grad_()
    y.requires_grad_()
    kw = dict(win_size=3, weights=(0.3, 0.3, 0.4), reduction="none")
    assert torch.autograd.gradcheck(lambda a, b: ms_ssim(a, b, **kw), (x, y))


@both_paths
def test_hand_written_backward_matches_autograd(gen):
    """The custom backward equals autograd through the plain formula (float64, 1e-12)."""
    x, y = _pair(gen, (2, 2, 25, 21), noise=0.3)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    ssim(x1, y).backward()
    c = ssim_components(x2, y)
    lum = c.luminance
    mu_x, mu_y, var_x, var_y, cov = st._moments(x2, y, gaussian_window(dtype=torch.float64))
    c2 = 0.03**2
    (lum * (2 * cov + c2) / (var_x + var_y + c2)).mean().backward()
    torch.testing.assert_close(x1.grad, x2.grad, atol=1e-12, rtol=0)


@both_paths
@pytest.mark.parametrize("kind", ["equal", "constant", "zeros"])
def test_gradients_finite_at_degenerate_inputs(gen, kind):
    shape = (2, 1, 176, 176)
    if kind == "equal":
        y = torch.rand(*shape, generator=gen)
        x = y.clone()
    elif kind == "constant":
        x, y = torch.full(shape, 0.5), torch.full(shape, 0.25)
    else:
        x, y = torch.zeros(shape), torch.zeros(shape)
    for fn in (ssim, ms_ssim):
        xr = x.clone().requires_grad_()
        v = fn(xr, y)
        v.backward()
        assert torch.isfinite(v) and torch.isfinite(xr.grad).all(), (fn.__name__, kind)


@both_paths
def test_bf16_autocast_on_cpu(gen):
    x, y = _pair(gen, (2, 1, 176, 176), dtype=torch.float32)
    ref_s, ref_m = ssim(x, y), ms_ssim(x, y)
    xr = x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        v_s, v_m = ssim(xr, y), ms_ssim(xr, y)
        conv_out = torch.nn.functional.conv2d(xr, torch.ones(1, 1, 1, 1))
        v_bf = ssim(conv_out, y.to(conv_out.dtype))  # a bf16 model output
    assert conv_out.dtype == torch.bfloat16  # autocast really was on
    for v, ref in [(v_s, ref_s), (v_m, ref_m)]:
        assert v.dtype == torch.float32 and torch.isfinite(v)
        assert abs(float(v.detach()) - float(ref)) < 1e-3
    assert v_bf.dtype == torch.float32 and torch.isfinite(v_bf)
    (v_s + v_m).backward()
    assert torch.isfinite(xr.grad).all()


# ---------------------------------------------------------------------------- errors


def test_errors_have_helpful_messages(gen):
    x, y = _pair(gen, (1, 1, 32, 32), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"4 dimensions.*x\[None, None\]"):
        ssim(x[0, 0], y[0, 0])
    with pytest.raises(ValueError, match="same shape.*Resize or crop"):
        ssim(x, y[..., :30])
    with pytest.raises(TypeError, match=r"floating-point.*\.float\(\)"):
        ssim((x * 255).to(torch.uint8), (y * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="data_range must be positive"):
        ssim(x, y, data_range=0)
    with pytest.raises(ValueError, match="data_range must be positive"):
        ms_ssim(x, y, data_range=-1.0)
    with pytest.raises(ValueError, match="win_size must be odd.*Use 9 or 11"):
        ms_ssim(x, y, win_size=10)
    with pytest.raises(ValueError, match="at least win_size x win_size = 11x11.*smaller win_size"):
        ssim(x[..., :10, :], y[..., :10, :])
    with pytest.raises(ValueError, match="at least win_size x win_size"):
        ssim_components(x[..., :8, :8], y[..., :8, :8])
    with pytest.raises(ValueError, match="window must be 'gaussian'.*'uniform'"):
        ssim(x, y, window="box")
    with pytest.raises(ValueError, match="reduction must be one of"):
        ssim(x, y, reduction="sum")
    with pytest.raises(ValueError, match="k2 must be a positive number"):
        ssim(x, y, k2=0)
    with pytest.raises(ValueError, match="weights must be a non-empty sequence"):
        ms_ssim(x, y, weights=())
    with pytest.raises(ValueError, match="non-negative"):
        ms_ssim(x, y, weights=(0.5, -0.5))
    with pytest.raises(TypeError, match="SSIMLoss: .*unexpected keyword argument 'win'"):
        SSIMLoss(win=11)
    with pytest.raises(ValueError, match="data_range must be positive"):
        MSSSIMLoss(data_range=0)


@both_paths
@pytest.mark.parametrize("shape", [(1, 1, 30, 30), (2, 3, 200, 190)])  # both extreme checks
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["x", "y"])
def test_non_finite_inputs_are_refused(gen, shape, bad, which):
    """A NaN or an infinity anywhere, in x or y, small or large image: a ValueError
    that counts them, from SSIM and MS-SSIM (no silent NaN)."""
    x, y = _pair(gen, shape, dtype=torch.float32)
    (x if which == "x" else y)[-1, -1, -1, -2] = bad
    word = "NaN" if bad != bad else "infinite"
    for fn in [ssim] + ([ms_ssim] if min(shape[-2:]) > 160 else []):
        with pytest.raises(ValueError, match=f"{which} holds .*{word}"):
            fn(x, y)


def test_even_window_message():
    x = torch.rand(1, 1, 32, 32)
    for size, fix in [(10, "Use 9 or 11"), (6, "Use 5 or 7")]:
        with pytest.raises(ValueError, match=f"win_size must be odd.*{fix}"):
            ssim(x, x, win_size=size)


def test_ms_ssim_too_small_names_minimum_and_ways_out(gen):
    x, y = _pair(gen, (1, 1, 160, 200), dtype=torch.float32)
    with pytest.raises(ValueError, match=r"larger than \(win_size - 1\) \* 2\*\*\(scales - 1\) "
                       r"= 160, i.e. at least 161 pixels.*smaller win_size.*fewer scales.*160x200"):
        ms_ssim(x, y)
    with pytest.raises(ValueError, match="3 scales and win_size=7.*= 24, i.e. at least 25"):
        ms_ssim(x[..., :24, :24], y[..., :24, :24], win_size=7, weights=(0.3, 0.3, 0.4))
    # the ways out work
    assert torch.isfinite(ms_ssim(x, y, win_size=7))  # (7 - 1) * 16 = 96 < 160
    assert torch.isfinite(ms_ssim(x, y, weights=MS_SSIM_WEIGHTS[:4]))  # 10 * 8 = 80


# ------------------------------------------------------------------------- benchmark


def test_benchmark_script_runs_quick(root, capsys):
    """benchmarks/bench_ssim.py --quick runs (so the script cannot rot); not a timing test."""
    import importlib.util

    path = root / "benchmarks" / "bench_ssim.py"
    spec = importlib.util.spec_from_file_location("bench_ssim", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--quick", "--cpu-only", "--no-rss", "--rounds", "1",
                       "--impls", "lossbook,lossbook-ops,pytorch-msssim,kornia"])
    out = capsys.readouterr().out
    assert "set_num_threads(1)" in out and "| lossbook |" in out and "CPU: " in out
    assert "Ours against the fastest peer" in out and "load average" in out
    assert "lossbook's SSIM on cpu: the compiled CPU kernel (Numba" in out
    impls = {r["impl"] for r in rows}
    assert impls == {"lossbook", "lossbook-ops", "pytorch-msssim", "kornia"}
    assert {(r["metric"], r["mode"]) for r in rows} == {
        (m, mode) for m in ("ssim", "ms_ssim") for mode in ("fwd", "fwd+bwd")
    }
    assert all(r["median_ms"] > 0 and r["min_ms"] <= r["median_ms"] for r in rows)
    summary = bench.ratios(rows)
    assert {s["fastest_peer"] for s in summary} <= {"pytorch-msssim", "kornia"}
    # the peers (and our PyTorch operations) compute the same numbers as ours in the
    # stated settings
    x, y = bench.make_inputs((1, 1, 192, 192), "cpu")
    ours = float(ssim(x, y))
    for name in ("lossbook-ops", "pytorch-msssim", "torchmetrics", "kornia"):
        assert abs(bench.agreement_value(name, "ssim", x, y) - ours) < 1e-5, name
    assert abs(bench.agreement_value("pytorch-msssim", "ms_ssim", x, y)
               - float(ms_ssim(x, y))) < 1e-5


def test_gaussian_window_refuses_degenerate_parameters():
    """Issue 8: sigma=1e-300 gave NaN taps, sigma=inf a flat window, int dtypes zeros."""
    from lossbook.losses import gaussian_window

    for sigma in (1e-300, 0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            gaussian_window(11, sigma)
    with pytest.raises(TypeError, match="floating-point"):
        gaussian_window(11, 1.5, dtype=torch.int64)
    g = gaussian_window(11, 1e-3)
    assert torch.isfinite(g).all() and float(g.sum()) == pytest.approx(1.0)
