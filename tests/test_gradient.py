"""Tests for lossbook.losses.gradient.

References: scipy.ndimage.sobel / laplace (independent implementations; exact up to
float64 rounding, atol 1e-10), hand-computed total variation of steps, ramps and
checkerboards (closed forms, float64, atol 1e-10), TensorFlow's definition of
``total_variation`` re-derived by numpy, and torch.autograd.gradcheck in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from lossbook.losses import (
    GradientLoss,
    LaplacianLoss,
    TVLoss,
    gradient,
    gradient_loss,
    laplacian,
    laplacian_loss,
    sobel,
    total_variation,
)

KINDS = ("anisotropic", "isotropic")


def _rand(gen, *shape):
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------------------ sobel
def test_sobel_matches_scipy_interior_and_border(gen):
    x = _rand(gen, 2, 3, 9, 11)
    gx, gy = sobel(x)
    gxv, gyv = sobel(x, padding="valid")
    a = x.numpy()
    # ndimage.sobel on a 4-D array would smooth along batch/channels too: go image by image
    ref_x = np.stack([[ndi.sobel(a[n, c], axis=1, mode="nearest") for c in range(3)]
                      for n in range(2)])
    ref_y = np.stack([[ndi.sobel(a[n, c], axis=0, mode="nearest") for c in range(3)]
                      for n in range(2)])
    np.testing.assert_allclose(gx.numpy(), ref_x, atol=1e-10)
    np.testing.assert_allclose(gy.numpy(), ref_y, atol=1e-10)
    np.testing.assert_allclose(gxv.numpy(), ref_x[..., 1:-1, 1:-1], atol=1e-10)
    np.testing.assert_allclose(gyv.numpy(), ref_y[..., 1:-1, 1:-1], atol=1e-10)


def test_sobel_sign_and_normalisation_on_ramp():
    cols = torch.arange(8, dtype=torch.float64)
    ramp = (0.5 * cols).expand(6, 8)[None, None]  # increases to the right
    gx, gy = sobel(ramp, padding="valid")
    assert torch.allclose(gx, torch.full_like(gx, 8 * 0.5))
    assert torch.allclose(gy, torch.zeros_like(gy))
    gx, gy = sobel(ramp.transpose(-1, -2), padding="valid", normalized=True)
    assert torch.allclose(gy, torch.full_like(gy, 0.5))  # increases downwards
    assert torch.allclose(gx, torch.zeros_like(gx))


def test_laplacian_matches_scipy(gen):
    x = _rand(gen, 1, 1, 10, 7)
    ref = ndi.laplace(x[0, 0].numpy(), mode="nearest")
    np.testing.assert_allclose(laplacian(x)[0, 0].numpy(), ref, atol=1e-10)
    np.testing.assert_allclose(laplacian(x, padding="valid")[0, 0].numpy(), ref[1:-1, 1:-1],
                               atol=1e-10)


# ------------------------------------------------------------------- gradient losses
@pytest.mark.parametrize("p", [1, 2])
def test_gradient_losses_zero_for_equal_and_offset_images(gen, p):
    x = _rand(gen, 2, 1, 12, 12)
    assert float(gradient_loss(x, x.clone(), p)) == 0.0
    assert float(laplacian_loss(x, x.clone(), p)) == 0.0
    assert float(gradient_loss(x, x + 0.3, p)) == pytest.approx(0.0, abs=1e-12)
    assert float(laplacian_loss(x, x + 0.3, p)) == pytest.approx(0.0, abs=1e-12)
    assert float(gradient_loss(x, torch.zeros_like(x), p)) > 0


@pytest.mark.parametrize("W", [6, 13])
def test_gradient_loss_closed_form_on_ramps(W):
    a, b = 0.7, 0.2
    cols = torch.arange(W, dtype=torch.float64)
    x = (a * cols).expand(5, W)[None, None].contiguous()
    y = (b * cols).expand(5, W)[None, None].contiguous()
    # interior columns: |a - b|; replicate border columns: |a - b| / 2 (one-sided)
    assert float(gradient_loss(x, y, 1)) == pytest.approx(abs(a - b) * (W - 1) / W, rel=1e-12)
    assert float(gradient_loss(x, y, 2)) == pytest.approx(
        (a - b) ** 2 * (W - 2 + 0.5) / W, rel=1e-12)
    assert float(gradient_loss(x, y, 1, padding="valid")) == pytest.approx(abs(a - b))
    assert float(gradient_loss(x, y, 1, normalized=False, padding="valid")) == pytest.approx(
        8 * abs(a - b))
    # a ramp has no curvature: the Laplacian loss sees only the replicate border
    assert float(laplacian_loss(x, y, padding="valid")) == pytest.approx(0.0, abs=1e-12)
    assert float(laplacian_loss(x, y)) == pytest.approx(2 * abs(a - b) / W, rel=1e-12)


def test_laplacian_loss_closed_form_on_parabola():
    c = 0.05
    cols = torch.arange(9, dtype=torch.float64)
    x = (c * cols**2).expand(7, 9)[None, None].contiguous()
    z = torch.zeros_like(x)
    assert float(laplacian_loss(x, z, padding="valid")) == pytest.approx(2 * c, rel=1e-12)
    assert float(laplacian_loss(x, z, 2, padding="valid")) == pytest.approx(4 * c * c,
                                                                            rel=1e-12)


def test_reduction_none_and_modules(gen):
    x, y = _rand(gen, 3, 2, 8, 8), _rand(gen, 3, 2, 8, 8)
    per = gradient_loss(x, y, reduction="none")
    assert per.shape == (3,)
    assert torch.allclose(per.mean(), gradient_loss(x, y))
    assert torch.allclose(GradientLoss(p=2)(x, y), gradient_loss(x, y, 2))
    assert torch.allclose(LaplacianLoss()(x, y), laplacian_loss(x, y))
    assert torch.allclose(TVLoss("isotropic", "sum")(x, y), total_variation(x, "isotropic",
                                                                             "sum"))
    assert "p=2" in repr(GradientLoss(p=2))


# ---------------------------------------------------------------------- total variation
def _tv_numpy(a: np.ndarray, kind: str) -> np.ndarray:
    """Independent per-image TV sums (Neumann boundary), plain numpy."""
    dx = np.zeros_like(a)
    dy = np.zeros_like(a)
    dx[..., :, :-1] = a[..., :, 1:] - a[..., :, :-1]
    dy[..., :-1, :] = a[..., 1:, :] - a[..., :-1, :]
    per = np.abs(dx) + np.abs(dy) if kind == "anisotropic" else np.sqrt(dx**2 + dy**2)
    return per.reshape(a.shape[0], -1).sum(axis=1)


def _step(h=6, w=8, height=0.5):
    x = torch.zeros(1, 1, h, w, dtype=torch.float64)
    x[..., w // 2:] = height
    return x


def _checker(h=4, w=6):
    i, j = np.indices((h, w))
    return torch.tensor(((i + j) % 2).astype(float))[None, None]


@pytest.mark.parametrize("kind", KINDS)
def test_tv_hand_computed(kind):
    # tolerance 1e-6: the isotropic eps (1e-8) shifts each pixel by less than eps
    # vertical step of height 0.5 on 6 rows: 6 jumps of 0.5 (both kinds)
    assert float(total_variation(_step(), kind, "sum")) == pytest.approx(3.0, abs=1e-6)
    # ramp rising 0.1 per column, 5 x 4: 3 horizontal differences per row
    ramp = (0.1 * torch.arange(4, dtype=torch.float64)).expand(5, 4)[None, None]
    assert float(total_variation(ramp, kind, "sum")) == pytest.approx(5 * 3 * 0.1, abs=1e-6)
    # diagonal ramp x_ij = i + j on 3 x 3: anisotropic counts both directions
    diag = torch.tensor(np.add.outer(np.arange(3.0), np.arange(3.0)))[None, None]
    expected = {"anisotropic": 12.0, "isotropic": 4 * np.sqrt(2) + 4 * 1.0}[kind]
    assert float(total_variation(diag, kind, "sum")) == pytest.approx(expected, abs=1e-6)
    # checkerboard 4 x 6 of contrast 1
    cb = _checker()
    expected = {"anisotropic": 4 * 5 + 6 * 3,
                "isotropic": 3 * 5 * np.sqrt(2) + 3 + 5}[kind]
    assert float(total_variation(cb, kind, "sum")) == pytest.approx(expected, abs=1e-6)
    assert float(total_variation(torch.ones(2, 3, 5, 5), kind, "sum")) == 0.0


@pytest.mark.parametrize("kind", KINDS)
def test_tv_reductions(gen, kind):
    x = _rand(gen, 3, 2, 5, 7)  # eps=0: the exact TV, compared at float64 rounding
    ref = _tv_numpy(x.numpy(), kind)
    none = total_variation(x, kind, "none", eps=0.0)
    assert none.shape == (3,)
    np.testing.assert_allclose(none.numpy(), ref, atol=1e-6)
    assert float(total_variation(x, kind, "sum", eps=0.0)) == pytest.approx(ref.sum(), abs=1e-6)
    per_pixel_mean = ref.mean() / 35  # per-image sums / (H W), averaged over the batch
    assert float(total_variation(x, kind, "mean", eps=0.0)) == pytest.approx(per_pixel_mean)
    assert float(total_variation(x, kind, eps=0.0)) == pytest.approx(per_pixel_mean)


def test_tv_matches_tensorflow_definition(gen):
    # tf.image.total_variation: sum |x[1:, :] - x[:-1, :]| + sum |x[:, 1:] - x[:, :-1]| per
    # image, over channels; re-derived with numpy.diff.
    x = _rand(gen, 2, 3, 6, 5)
    a = x.numpy()
    tf_like = (np.abs(np.diff(a, axis=2)).sum(axis=(1, 2, 3))
               + np.abs(np.diff(a, axis=3)).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(total_variation(x, "anisotropic", "none").numpy(), tf_like,
                               atol=1e-10)


def test_isotropic_tv_gradient_finite_on_constant_image():
    x = torch.full((1, 1, 6, 6), 0.4, requires_grad=True)
    tv = total_variation(x, "isotropic")
    tv.backward()
    assert float(tv.detach()) == 0.0
    assert torch.isfinite(x.grad).all()
    x2 = torch.full((1, 1, 6, 6), 0.4, requires_grad=True)
    total_variation(x2, "isotropic", eps=0.0).backward()
    assert not torch.isfinite(x2.grad).all()  # why eps exists


# ------------------------------------------------------------------------- gradcheck
def test_gradcheck(gen):
    x = _rand(gen, 1, 1, 5, 5).requires_grad_()
    y = _rand(gen, 1, 1, 5, 5)
    assert torch.autograd.gradcheck(
        lambda t: total_variation(t, "isotropic", eps=1e-3), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: gradient_loss(t, y, 2), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: laplacian_loss(t, y, 2), (x,), fast_mode=True)
    assert torch.autograd.gradcheck(lambda t: laplacian_loss(t, y, 1), (x,), fast_mode=True)


# ----------------------------------------------------------------------------- errors
def test_errors():
    x = torch.rand(1, 1, 8, 8)
    with pytest.raises(ValueError, match="p must be 1"):
        gradient_loss(x, x, 3)
    with pytest.raises(ValueError, match="p must be 1"):
        GradientLoss(p=0)
    with pytest.raises(ValueError, match="padding must be one of"):
        sobel(x, padding="zeros")
    with pytest.raises(ValueError, match="too small for a 3x3 filter"):
        sobel(torch.rand(1, 1, 2, 8), padding="valid")
    with pytest.raises(ValueError, match="kind must be 'anisotropic'"):
        total_variation(x, "l2")
    with pytest.raises(ValueError, match="kind must be 'anisotropic'"):
        TVLoss("l2")
    with pytest.raises(ValueError, match="reduction must be one of 'mean', 'sum', 'none'"):
        total_variation(x, reduction="avg")
    with pytest.raises(ValueError, match="eps must be a non-negative finite number"):
        total_variation(x, "isotropic", eps=-1.0)
    with pytest.raises(ValueError, match="same shape"):
        laplacian_loss(x, torch.rand(1, 1, 8, 9))
    with pytest.raises(ValueError, match="4 dimensions"):
        total_variation(torch.rand(8, 8))
    with pytest.raises(ValueError, match="NaN"):
        total_variation(torch.full((1, 1, 4, 4), float("nan")))


# ------------------------------------------------------------------ reliability (issue 8)


def test_autocast_bf16_is_shielded():
    """Reference: the same losses in float32 without autocast. bf16 Sobel is 2-3 % off."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 24, 24, generator=g, requires_grad=True)
    y = torch.rand(2, 1, 24, 24, generator=g)
    for fn in (gradient.gradient_loss, gradient.laplacian_loss,
               lambda a, b: gradient.sobel(a)[0].pow(2).mean(),
               lambda a, b: gradient.total_variation(a, "isotropic")):
        ref = fn(x, y)
        (g_ref,) = torch.autograd.grad(ref, x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fn(x, y)
        (g_out,) = torch.autograd.grad(out, x)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=0)
        torch.testing.assert_close(g_out, g_ref, rtol=1e-6, atol=1e-9)


def test_half_inputs_are_computed_in_float32():
    x = torch.rand(1, 1, 8, 8).half()
    gx, gy = gradient.sobel(x)
    assert gx.dtype == torch.float32
    torch.testing.assert_close(gx, gradient.sobel(x.float())[0])


def test_nan_inf_and_empty_inputs_are_refused():
    bad = torch.rand(1, 1, 6, 6)
    bad[0, 0, 1, 1] = float("inf")
    for fn in (gradient.sobel, gradient.laplacian, gradient.total_variation):
        with pytest.raises(ValueError, match="1 infinite"):
            fn(bad)
        with pytest.raises(ValueError, match="is empty"):
            fn(torch.rand(0, 1, 6, 6))
    for fn in (gradient.gradient_loss, gradient.laplacian_loss):
        with pytest.raises(ValueError, match="is empty"):
            fn(torch.rand(2, 0, 6, 6), torch.rand(2, 0, 6, 6))


def test_infinite_eps_is_refused():
    x = torch.rand(1, 1, 6, 6)
    for eps in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="eps must be a non-negative finite number"):
            gradient.total_variation(x, "isotropic", eps=eps)
        with pytest.raises(ValueError, match="eps must be"):
            gradient.TVLoss("isotropic", eps=eps)
