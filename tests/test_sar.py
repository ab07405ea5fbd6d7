"""Tests for lossbook.sar.

References and tolerances:
- speckle moments: Gamma(L, 1/L) has mean 1 and variance 1/L; Monte-Carlo means within
  4 standard errors (the standard error of the sample variance uses the Gamma's fourth
  central moment 3/L^2 + 6/L^3);
- log-speckle moments: scipy.special.digamma / polygamma (independent of torch.special)
  to 1e-12 (trigamma: 1e-8 relative), the tables of Xie, Pierce & Ulaby (2002) / DESIGN
  section 5 to their 4 digits, and Monte-Carlo of ln(s) within 4 standard errors;
- ENL of pure speckle on 256 x 256: within 5 % of L; numpy for masked statistics;
- the Lee filter: ENL rises on flat areas; a step edge keeps a larger jump than under a
  box filter of the same window (scipy.ndimage.uniform_filter).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import scipy.special as sps
import scipy.stats as stats
import torch

from lossbook import sar

LOOKS = (1, 2.5, 4, 10)


# ---------------------------------------------------------------------------- speckle
@pytest.mark.parametrize("looks", LOOKS)
def test_speckle_mean_and_variance_monte_carlo(looks):
    g = torch.Generator().manual_seed(int(10 * looks))
    n = 200_000
    s = sar.gamma_speckle((n,), looks, g, dtype=torch.float64)
    var = 1.0 / looks
    se_mean = math.sqrt(var / n)
    mu4 = 3.0 / looks**2 + 6.0 / looks**3  # 4th central moment of Gamma(L, 1/L)
    se_var = math.sqrt((mu4 - var**2) / n)
    assert abs(float(s.mean()) - 1.0) < 4 * se_mean
    assert abs(float(s.var()) - var) < 4 * se_var
    assert bool((s > 0).all())


@pytest.mark.parametrize("looks", LOOKS)
def test_log_speckle_monte_carlo(looks):
    g = torch.Generator().manual_seed(7 + int(looks))
    n = 200_000
    ls = sar.gamma_speckle((n,), looks, g, dtype=torch.float64).log()
    m, v = sar.log_speckle_mean(looks), sar.log_speckle_var(looks)
    assert abs(float(ls.mean()) - m) < 4 * math.sqrt(v / n)
    # Var of the sample variance ~ (mu4 - v^2)/n; mu4 of ln s = psi'''(L) + 3 psi'(L)^2
    mu4 = float(sps.polygamma(3, looks)) + 3 * v**2
    assert abs(float(ls.var()) - v) < 4 * math.sqrt((mu4 - v**2) / n)


def test_add_speckle_is_multiplicative_and_reproducible():
    x = torch.linspace(0.1, 1.0, 64 * 64).reshape(1, 1, 64, 64)
    a = sar.add_speckle(x, 4, torch.Generator().manual_seed(3))
    b = sar.add_speckle(x, 4, torch.Generator().manual_seed(3))
    c = sar.add_speckle(x, 4, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and a.dtype == x.dtype
    s = a / x
    s2 = sar.add_speckle(torch.ones_like(x), 4, torch.Generator().manual_seed(3))
    assert torch.allclose(s, s2, rtol=1e-5)  # same noise field, scaled by x
    assert torch.equal(sar.add_speckle(torch.zeros(3, 3), 1), torch.zeros(3, 3))


def test_amplitude_speckle_is_sqrt_of_intensity_speckle():
    x = torch.full((1, 1, 100, 100), 2.0, dtype=torch.float64)
    amp = sar.add_speckle(x, 1, torch.Generator().manual_seed(5), amplitude=True)
    inten = sar.add_speckle(x**2, 1, torch.Generator().manual_seed(5))
    assert torch.allclose(amp**2, inten)
    # Rayleigh amplitude for L=1: E[A] = sqrt(pi)/2 * sqrt(E[I]); within 4 s.e.
    n = x.numel()
    se = 2.0 * math.sqrt((1 - math.pi / 4) / n)
    assert abs(float(amp.mean()) - 2.0 * math.sqrt(math.pi) / 2) < 4 * se


# ----------------------------------------------------------------------- log moments
@pytest.mark.parametrize("looks", [0.7, 1, 2, 4, 10, 33.3])
def test_log_moments_match_scipy(looks):
    assert sar.log_speckle_mean(looks) == pytest.approx(
        sps.digamma(looks) - math.log(looks), abs=1e-12)
    # torch's trigamma is accurate to about 1e-9 relative (digamma to 1e-16)
    assert sar.log_speckle_var(looks) == pytest.approx(sps.polygamma(1, looks), rel=1e-8)
    k = 10 / math.log(10)
    assert sar.log_speckle_mean(looks, db=True) == pytest.approx(
        k * (sps.digamma(looks) - math.log(looks)), abs=1e-10)
    assert sar.log_speckle_var(looks, db=True) == pytest.approx(
        k**2 * sps.polygamma(1, looks), rel=1e-8)


@pytest.mark.parametrize(
    "looks, mean, var", [(1, -0.5772, 1.6449), (4, -0.1302, 0.2838), (10, -0.0508, 0.1052)])
def test_log_moments_match_design_table(looks, mean, var):
    assert sar.log_speckle_mean(looks) == pytest.approx(mean, abs=5e-5)
    assert sar.log_speckle_var(looks) == pytest.approx(var, abs=5e-5)


def test_log_moments_db_single_look():
    assert sar.log_speckle_mean(1, db=True) == pytest.approx(-2.507, abs=5e-4)
    assert math.sqrt(sar.log_speckle_var(1, db=True)) == pytest.approx(5.570, abs=5e-4)


# tolerances: 4 standard errors of the sample skewness / excess kurtosis at n = 400 000,
# measured by repeating the draw 20 times (L = 1: 0.0093 and 0.067; L = 4: 0.0044 and
# 0.015; L = 10: 0.0041 and 0.0090)
@pytest.mark.parametrize("looks, tol_skew, tol_kurt", [(1, 0.04, 0.27), (4, 0.02, 0.06),
                                                       (10, 0.02, 0.04)])
def test_log_speckle_shape_against_scipy_and_monte_carlo(looks, tol_skew, tol_kurt):
    # scipy.stats.loggamma is the law of ln G, G ~ Gamma(L, 1): ln s = ln G - ln L
    skew, kurt = (float(v) for v in stats.loggamma(looks).stats(moments="sk"))
    assert sar.log_speckle_skewness(looks) == pytest.approx(skew, rel=1e-6)
    assert sar.log_speckle_excess_kurtosis(looks) == pytest.approx(kurt, rel=1e-6)
    ls = sar.gamma_speckle((400_000,), looks, torch.Generator().manual_seed(3 + looks),
                           dtype=torch.float64).log().numpy()
    assert stats.skew(ls) == pytest.approx(sar.log_speckle_skewness(looks), abs=tol_skew)
    assert stats.kurtosis(ls) == pytest.approx(sar.log_speckle_excess_kurtosis(looks),
                                               abs=tol_kurt)


def test_log_speckle_shape_closed_forms_single_look():
    zeta3, zeta4 = 1.2020569031595942, math.pi**4 / 90
    assert sar.log_speckle_skewness(1) == pytest.approx(-2 * zeta3 / (math.pi**2 / 6) ** 1.5)
    assert sar.log_speckle_excess_kurtosis(1) == pytest.approx(6 * zeta4 / (math.pi**2 / 6) ** 2)
    assert sar.log_speckle_excess_kurtosis(1) == pytest.approx(2.4)
    # towards a Gaussian as looks grow, never reaching it
    sk = [sar.log_speckle_skewness(L) for L in (1, 4, 16, 64)]
    assert all(a < b < 0 for a, b in zip(sk, sk[1:]))
    with pytest.raises(ValueError, match="looks"):
        sar.log_speckle_skewness(0)


def test_debias_log_recovers_log_intensity():
    g = torch.Generator().manual_seed(11)
    x = torch.full((1, 1, 200, 200), 0.3, dtype=torch.float64)
    y = sar.add_speckle(x, 4, g)
    biased = sar.to_db(y).mean()
    fixed = sar.debias_log(sar.to_db(y), 4, db=True).mean()
    truth = 10 * math.log10(0.3)
    sd = math.sqrt(sar.log_speckle_var(4, db=True) / x.numel())
    assert abs(float(biased) - truth) > 10 * sd  # the bias is real
    assert abs(float(fixed) - truth) < 4 * sd
    assert torch.allclose(sar.debias_log(torch.zeros(2), 1), torch.full((2,), 0.5772156649,
                                                                        dtype=torch.float32))


# --------------------------------------------------------------------------- decibels
def test_db_round_trip_and_floor():
    x = torch.tensor([1e-3, 0.5, 1.0, 10.0, 1234.5], dtype=torch.float64)
    assert torch.allclose(sar.from_db(sar.to_db(x)), x, rtol=1e-12)
    np.testing.assert_allclose(sar.to_db(x).numpy(), 10 * np.log10(x.numpy()), rtol=1e-12)
    assert float(sar.to_db(torch.tensor([0.0]))) == pytest.approx(-100.0)
    assert float(sar.to_db(torch.tensor([0.0]), floor=1e-3)) == pytest.approx(-30.0)
    assert float(sar.from_db(torch.tensor(20.0))) == pytest.approx(100.0)


# -------------------------------------------------------------------------------- ENL
@pytest.mark.parametrize("looks", [1, 4])
def test_enl_of_pure_speckle(looks):
    y = sar.add_speckle(torch.full((1, 1, 256, 256), 0.5), looks,
                        torch.Generator().manual_seed(looks))
    assert float(sar.enl(y)[0]) == pytest.approx(looks, rel=0.05)


def test_enl_uses_masked_pixels_only(gen):
    x = torch.rand(2, 1, 16, 16, generator=gen, dtype=torch.float64) + 0.5
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[2:9, 3:12] = True
    vals = x[:, 0][:, mask].numpy()
    ref = vals.mean(1) ** 2 / vals.var(1, ddof=1)
    np.testing.assert_allclose(sar.enl(x, mask).numpy(), ref, rtol=1e-12)
    x2 = x.clone()
    x2[..., ~mask] = 100.0  # outside the mask: no effect
    np.testing.assert_allclose(sar.enl(x2, mask).numpy(), ref, rtol=1e-12)


def test_homogeneous_mask_finds_flat_halves():
    clean = torch.full((1, 1, 96, 96), 0.2)
    clean[..., 48:] = 0.8
    y = sar.add_speckle(clean, 4, torch.Generator().manual_seed(2))
    m = sar.homogeneous_mask(y, looks=4, size=11)
    assert m.dtype == torch.bool and m.shape == y.shape
    assert float(m[..., :, 10:38].float().mean()) > 0.9  # flat interiors
    assert float(m[..., :, 46:50].float().mean()) < 0.1  # the edge
    mc = sar.homogeneous_mask(clean, max_cv=0.05, size=11)
    assert bool(mc[..., :, :40].all()) and not bool(mc[..., :, 47:49].any())


# -------------------------------------------------------------------------- Lee filter
def test_lee_filter_raises_enl_and_keeps_edges():
    clean = torch.full((1, 1, 128, 128), 0.2, dtype=torch.float64)
    clean[..., 64:] = 0.8
    y = sar.add_speckle(clean, 4, torch.Generator().manual_seed(9))
    lee = sar.lee_filter(y, size=7, looks=4)
    box = torch.from_numpy(ndi.uniform_filter(y[0, 0].numpy(), size=7, mode="mirror"))
    flat = torch.zeros(128, 128, dtype=torch.bool)
    flat[8:-8, 8:56] = True
    assert float(sar.enl(lee, flat)[0]) > 3 * float(sar.enl(y, flat)[0])
    # edge sharpness: the mean jump across the edge between columns 63 and 64
    jump = lambda img: float((img[..., 64] - img[..., 63]).mean())  # noqa: E731
    assert jump(lee[0, 0]) > 1.5 * jump(box)
    assert jump(lee[0, 0]) > 0.4  # true jump is 0.6
    # a box filter equals Lee with k = 0 everywhere: check our box against scipy
    np.testing.assert_allclose(sar.box_filter(y, 7)[0, 0].numpy(), box.numpy(), atol=1e-12)


# ----------------------------------------------------------------------------- ENL loss
def test_enl_loss_ignores_pixels_outside_mask(gen):
    x = torch.rand(1, 1, 24, 24, generator=gen, dtype=torch.float64) + 0.5
    t = torch.rand(1, 1, 24, 24, generator=gen, dtype=torch.float64) + 0.5
    mask = torch.zeros(1, 1, 24, 24, dtype=torch.bool)
    mask[..., 4:20, 4:14] = True
    for size in (7, None):
        base = sar.enl_loss(x, t, mask, size=size)
        x2, t2 = x.clone(), t.clone()
        x2[~mask] = 0.0
        t2[~mask] = 50.0
        assert float(sar.enl_loss(x2, t2, mask, size=size)) == pytest.approx(float(base),
                                                                            rel=1e-10)
        assert float(base) > 0
        assert float(sar.enl_loss(x, x.clone(), mask, size=size)) == pytest.approx(0.0,
                                                                                abs=1e-20)


def test_enl_loss_global_matches_numpy(gen):
    x = torch.rand(2, 1, 12, 12, generator=gen, dtype=torch.float64) + 0.2
    mask = torch.zeros(12, 12, dtype=torch.bool)
    mask[3:10, 2:8] = True
    eps = 1e-4
    v = x[:, 0][:, mask].numpy()
    enl_np = v.mean(1) ** 2 / (v.var(1) + eps * v.mean(1) ** 2)
    ref = np.mean((np.log(enl_np) - np.log(4.0)) ** 2)
    assert float(sar.enl_loss(x, 4.0, mask, size=None, eps=eps)) == pytest.approx(ref,
                                                                                 rel=1e-10)


def test_enl_loss_local_matches_numpy_loop(gen):
    x = torch.rand(1, 1, 9, 9, generator=gen, dtype=torch.float64) + 0.2
    mask = torch.zeros(9, 9, dtype=torch.bool)
    mask[1:7, 2:9] = True
    size, r, eps = 5, 2, 1e-4
    a, m = x[0, 0].numpy(), mask.numpy()
    errs = []
    for i in range(9):
        for j in range(9):
            if not m[i, j]:
                continue
            win = a[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            wm = m[max(i - r, 0):i + r + 1, max(j - r, 0):j + r + 1]
            v = win[wm]
            e = v.mean() ** 2 / (v.var() + eps * v.mean() ** 2)
            errs.append((math.log(e) - math.log(2.0)) ** 2)
    got = sar.enl_loss(x, 2.0, mask, size=size, eps=eps)
    assert float(got) == pytest.approx(np.mean(errs), rel=1e-9)


def test_enl_loss_gradcheck(gen):
    x = (torch.rand(1, 1, 6, 6, generator=gen, dtype=torch.float64) + 0.5).requires_grad_()
    t = torch.rand(1, 1, 6, 6, generator=gen, dtype=torch.float64) + 0.5
    mask = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    mask[..., 1:5, 0:4] = True
    assert torch.autograd.gradcheck(lambda v: sar.enl_loss(v, t, mask, size=3), (x,),
                                    fast_mode=True)
    x.grad = None
    sar.enl_loss(x, t, mask, size=3).backward()
    assert torch.isfinite(x.grad).all()
    assert float(x.grad[~mask].abs().max()) == 0.0


# ------------------------------------------------------------------------------- errors
def test_errors():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="looks must be positive"):
        sar.add_speckle(x, 0)
    with pytest.raises(ValueError, match="looks must be positive"):
        sar.log_speckle_mean(-1)
    with pytest.raises(ValueError, match="looks must be positive"):
        sar.log_speckle_var(0.0)
    with pytest.raises(TypeError, match="looks must be a positive number"):
        sar.lee_filter(x, 7, looks="4")
    with pytest.raises(ValueError, match="non-negative intensity"):
        sar.add_speckle(x - 0.5, 1)
    with pytest.raises(ValueError, match="non-negative intensity.*from_db"):
        sar.to_db(torch.tensor([-1.0, 2.0]))
    with pytest.raises(ValueError, match="floor must be a positive finite number"):
        sar.to_db(x, floor=0)
    with pytest.raises(TypeError, match="floating-point"):
        sar.add_speckle(torch.ones(2, 2, dtype=torch.int64), 1)
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        sar.from_db([1.0])
    with pytest.raises(TypeError, match="log_x must be a torch.Tensor"):
        sar.debias_log(1.0, 1)
    empty = torch.zeros(16, 16, dtype=torch.bool)
    with pytest.raises(ValueError, match="fewer than 2 pixels"):
        sar.enl(x, empty)
    with pytest.raises(ValueError, match="fewer than 2 pixels"):
        sar.enl_loss(x, 1.0, empty)
    with pytest.raises(TypeError, match="dtype torch.bool"):
        sar.enl(x, torch.ones(16, 16))
    with pytest.raises(ValueError, match="does not broadcast"):
        sar.enl(x, torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="odd int >= 3"):
        sar.lee_filter(x, size=4)
    with pytest.raises(ValueError, match="exactly one of looks"):
        sar.homogeneous_mask(x)
    with pytest.raises(ValueError, match="max_cv must be a positive finite number"):
        sar.homogeneous_mask(x, max_cv=-1.0)
    with pytest.raises(ValueError, match="target must be a positive finite number"):
        sar.enl_loss(x, 0.0, torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps must be a positive finite number"):
        sar.enl_loss(x, 1.0, torch.ones(16, 16, dtype=torch.bool), eps=0)
    with pytest.raises(ValueError, match="larger than half the window"):
        sar.box_filter(torch.rand(1, 1, 3, 3), 7)
    with pytest.raises(ValueError, match="NaN"):
        sar.enl(torch.full((1, 1, 4, 4), float("nan")))


def test_metrics_reexports_enl():
    from lossbook import metrics

    assert metrics.enl is sar.enl


# ---------------------------------------------------------------------- unit dB scale
def test_to_unit_db_maps_the_floor_to_0_and_0_db_to_1():
    """Reference: numpy's (10 log10(max(x, 10^(f/10))) - f) / -f, to float32 rounding."""
    x = torch.tensor([0.0, 1e-5, 1e-3, 0.01, 0.5, 1.0, 4.0])
    for floor_db in (-30.0, -20, -50.0):
        floor = 10 ** (floor_db / 10)
        ref = (10 * np.log10(np.maximum(x.double().numpy(), floor)) - floor_db) / -floor_db
        np.testing.assert_allclose(sar.to_unit_db(x, floor_db).numpy(), ref, atol=1e-6)
    t = sar.to_unit_db(x)
    assert float(t[0]) == 0.0 and float(t[2]) == pytest.approx(0.0, abs=1e-7)
    assert float(t[5]) == 1.0 and float(t[6]) > 1.0  # speckle peaks go above 1


def test_from_unit_db_inverts_to_unit_db_above_the_floor():
    g = torch.Generator().manual_seed(7)
    x = 1e-3 + 3 * torch.rand(1, 1, 16, 16, generator=g, dtype=torch.float64)
    for floor_db in (-30.0, -40.0):
        torch.testing.assert_close(sar.from_unit_db(sar.to_unit_db(x, floor_db), floor_db), x)
    assert float(sar.from_unit_db(torch.tensor(0.0))) == pytest.approx(1e-3)
    assert float(sar.from_unit_db(torch.tensor(1.0))) == pytest.approx(1.0)


def test_to_unit_db_is_the_chapter_6_transform():
    """Chapter 6 defined t(y) = (to_db(y, 1e-3) + 30) / 30: bitwise the same."""
    x = 2 * torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    assert torch.equal(sar.to_unit_db(x), (sar.to_db(x, 1e-3) + 30) / 30)
    assert torch.equal(sar.from_unit_db(x), sar.from_db(30 * x - 30))


@pytest.mark.parametrize("bad", [0, 10.0, float("nan"), float("-inf"), "-30", True])
def test_unit_db_refuses_a_floor_that_is_not_negative(bad):
    with pytest.raises(ValueError, match="floor_db must be a negative number"):
        sar.to_unit_db(torch.ones(1, 1, 4, 4), bad)
    with pytest.raises(ValueError, match="floor_db must be a negative number"):
        sar.from_unit_db(torch.ones(1, 1, 4, 4), bad)


def test_to_unit_db_refuses_negative_intensities():
    with pytest.raises(ValueError):
        sar.to_unit_db(-torch.ones(1, 1, 4, 4))


# ------------------------------------------------------------------ reliability (issue 8)


@pytest.mark.parametrize("scale", [0.0, 1e-30, 1e-20, 1.0, 1e20])
def test_enl_loss_is_finite_with_finite_gradients_at_any_scale(scale):
    """ENL is scale-free, so the loss must not depend on the scale; zeros give 1/eps."""
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(12, 12, dtype=torch.bool)
    base = sar.add_speckle(torch.ones(2, 1, 12, 12), 4, g)
    for size in (5, None):
        x = (base * scale).requires_grad_(True)
        loss = sar.enl_loss(x, 4.0, mask, size=size)
        (grad,) = torch.autograd.grad(loss, x)
        loss = loss.detach()
        assert torch.isfinite(loss) and torch.isfinite(grad).all()
        if scale > 0:  # reference: the same image at scale 1
            ref = sar.enl_loss(base, 4.0, mask, size=size)
            assert float(loss) == pytest.approx(float(ref), rel=1e-4)
        else:  # a region of zeros is constant: ENL 1/eps = 1e4 against a target of 4
            assert float(loss) == pytest.approx((math.log(1e4) - math.log(4.0)) ** 2,
                                                rel=1e-4)


def test_enl_of_a_constant_region_is_inf_never_nan():
    for value in (0.0, 0.3):
        out = sar.enl(torch.full((2, 1, 8, 8), value))
        assert torch.isinf(out).all() and (out > 0).all()


def test_infinite_and_meaningless_parameters_are_refused():
    x = torch.rand(1, 1, 16, 16)
    with pytest.raises(ValueError, match="floor must be a positive finite"):
        sar.to_db(x, floor=float("inf"))
    with pytest.raises(ValueError, match="eps must be at most 1"):
        sar.enl_loss(x, 1.0, torch.ones(16, 16, dtype=torch.bool), eps=2.0)
    with pytest.raises(ValueError, match="target must be a positive finite"):
        sar.enl_loss(x, float("inf"), torch.ones(16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="margin must be a non-negative finite"):
        sar.homogeneous_mask(x, looks=1, margin=-0.5)
    with pytest.raises(TypeError, match="dtype must be a floating-point"):
        sar.gamma_speckle((2, 2), 1, dtype=torch.int64)
    with pytest.raises(ValueError, match="1 NaN"):
        sar.box_filter(torch.where(x > 2, x, x).index_put_(
            (torch.tensor([0]),) * 4, torch.tensor(float("nan"))))
    with pytest.raises(ValueError, match="too large for the dtype"):
        sar.from_db(torch.tensor([400.0]))
    with pytest.raises(ValueError, match="is empty"):
        sar.lee_filter(torch.rand(0, 1, 8, 8))
