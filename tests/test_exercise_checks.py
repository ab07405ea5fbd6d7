"""The exercise checks of Chapters 2-7 (lossbook.exercises.chNN).

For every check: a correct answer written from the formula (not by calling the package)
passes; typical wrong answers are rejected with the feedback that names the mistake; an
answer that returns a constant or echoes its input cannot pass. Each check draws fresh
random cases, so the tests also run them with a few fixed seeds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from lossbook import exercises
from lossbook.losses import mse, ssim

SEEDS = [None, 0, 1]


def _reject(check, answer, *needles, **kw):
    with pytest.raises(AssertionError) as err:
        check(answer, **kw)
    for needle in needles:
        assert needle in str(err.value), f"feedback lacks {needle!r}: {err.value}"
    return str(err.value)


# ---------------------------------------------------------------------------- Chapter 2


def _moments(x, y, ddof=0):
    n = x.numel()
    mx, my = x.mean(), y.mean()
    vx = ((x - mx) ** 2).sum() / (n - ddof)
    vy = ((y - my) ** 2).sum() / (n - ddof)
    cxy = ((x - mx) * (y - my)).sum() / (n - ddof)
    return mx, my, vx, vy, cxy


def global_ssim(x, y, L, ddof=0, squared=True):
    mx, my, vx, vy, cxy = _moments(x, y, ddof)
    c1, c2 = ((0.01 * L) ** 2, (0.03 * L) ** 2) if squared else (0.01 * L, 0.03 * L)
    return float((2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))


def ssim_gradient(x, y, L):
    n = x.numel()
    mx, my, vx, vy, cxy = _moments(x, y)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    a1, a2 = 2 * mx * my + c1, 2 * cxy + c2
    b1, b2 = mx**2 + my**2 + c1, vx + vy + c2
    s = a1 * a2 / (b1 * b2)
    return 2 / (n * b1 * b2) * (my * a2 + a1 * (y - my) - s * (mx * b2 + b1 * (x - mx)))


@pytest.mark.parametrize("seed", SEEDS)
def test_global_ssim_accepts_the_formula(seed):
    assert "passed" in exercises.check_global_ssim(global_ssim, seed=seed)


def test_global_ssim_rejects_typical_mistakes():
    _reject(exercises.check_global_ssim, lambda x, y, L: global_ssim(x, y, L, ddof=1),
            "population", seed=3)
    _reject(exercises.check_global_ssim, lambda x, y, L: global_ssim(x, y, L, squared=False),
            "squared", seed=3)
    _reject(exercises.check_global_ssim, lambda x, y, L: global_ssim(x, y, 1.0),
            "data range", seed=3)
    _reject(exercises.check_global_ssim, lambda x, y, L: 1.0)
    _reject(exercises.check_global_ssim, lambda x, y, L: float(x.mean()))


@pytest.mark.parametrize("seed", SEEDS)
def test_ssim_gradient_accepts_the_quotient_rule(seed):
    assert "passed" in exercises.check_ssim_gradient(ssim_gradient, seed=seed)


def test_ssim_gradient_rejects_typical_mistakes():
    _reject(exercises.check_ssim_gradient, lambda x, y, L: -ssim_gradient(x, y, L),
            "sign is flipped", seed=2)
    _reject(exercises.check_ssim_gradient, lambda x, y, L: x.numel() * ssim_gradient(x, y, L),
            "1/n", seed=2)
    _reject(exercises.check_ssim_gradient, lambda x, y, L: torch.zeros_like(x))
    _reject(exercises.check_ssim_gradient, lambda x, y, L: x)
    _reject(exercises.check_ssim_gradient, lambda x, y, L: 0.0, "same shape")


# ---------------------------------------------------------------------------- Chapter 3


def balance(pred, target):
    p = pred.clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(mse(p, target), p)
    p = pred.clone().requires_grad_(True)
    (g2,) = torch.autograd.grad(1 - ssim(p, target), p)
    return float(g1.norm() / (g1.norm() + g2.norm()))


@pytest.mark.parametrize("seed", SEEDS)
def test_balance_weight_accepts_gradient_balance(seed):
    assert "passed" in exercises.check_balance_weight(balance, seed=seed)


def test_balance_weight_rejects_typical_mistakes():
    def by_values(pred, target):
        a, b = float(mse(pred, target)), float(1 - ssim(pred, target))
        return a / (a + b)

    _reject(exercises.check_balance_weight, by_values, "VALUES", seed=0)
    _reject(exercises.check_balance_weight, lambda p, t: 1 - balance(p, t), "MSE term",
            seed=0)
    _reject(exercises.check_balance_weight, lambda p, t: 0.5)
    _reject(exercises.check_balance_weight, lambda p, t: 0.84)


@pytest.mark.parametrize("seed", SEEDS)
def test_uncertainty_minimiser_accepts_log_l(seed):
    assert "passed" in exercises.check_uncertainty_minimiser(math.log, seed=seed)


def test_uncertainty_minimiser_rejects_typical_mistakes():
    _reject(exercises.check_uncertainty_minimiser, lambda v: v, "LOG-variance")  # echo
    _reject(exercises.check_uncertainty_minimiser, lambda v: 0.5 * math.log(v), "log sigma")
    _reject(exercises.check_uncertainty_minimiser, lambda v: -math.log(v), "sign")
    _reject(exercises.check_uncertainty_minimiser, lambda v: 0.0)


# ---------------------------------------------------------------------------- Chapter 4


@pytest.mark.parametrize("seed", SEEDS)
def test_one_step_lr_accepts_half_n(seed):
    assert "passed" in exercises.check_one_step_lr(lambda n: n / 2, seed=seed)


def test_one_step_lr_rejects_typical_mistakes():
    _reject(exercises.check_one_step_lr, lambda n: n, "factor 2/n")  # also the echo
    _reject(exercises.check_one_step_lr, lambda n: 0.5, "grow with the number")
    _reject(exercises.check_one_step_lr, lambda n: 128.0)


def luminance(mx, my, L):
    c1 = (0.01 * L) ** 2
    return (2 * mx * my + c1) / (mx**2 + my**2 + c1)


@pytest.mark.parametrize("seed", SEEDS)
def test_luminance_accepts_the_formula(seed):
    assert "passed" in exercises.check_luminance(luminance, seed=seed)
    # the equivalent 1 - delta^2 / (...) form is accepted too
    assert "passed" in exercises.check_luminance(
        lambda a, b, L: 1 - (a - b) ** 2 / (a**2 + b**2 + (0.01 * L) ** 2), seed=seed)


def test_luminance_rejects_typical_mistakes():
    _reject(exercises.check_luminance,
            lambda a, b, L: (2 * a * b + 0.01 * L) / (a**2 + b**2 + 0.01 * L), "squared")
    _reject(exercises.check_luminance, lambda a, b, L: 2 * a * b / (a**2 + b**2), "Keep C1")
    _reject(exercises.check_luminance, lambda a, b, L: luminance(a, b, 1.0), "data range")
    _reject(exercises.check_luminance, lambda a, b, L: 1.0)
    _reject(exercises.check_luminance, lambda a, b, L: a)


# ---------------------------------------------------------------------------- Chapter 5


def aniso_tv(x):
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum((1, 2, 3))
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum((1, 2, 3))
    return dx + dy


@pytest.mark.parametrize("seed", SEEDS)
def test_anisotropic_tv_accepts_forward_differences(seed):
    assert "passed" in exercises.check_anisotropic_tv(aniso_tv, seed=seed)


def test_anisotropic_tv_rejects_typical_mistakes():
    def wrap(x):
        return ((torch.roll(x, -1, -1) - x).abs() + (torch.roll(x, -1, -2) - x).abs()).sum(
            (1, 2, 3))

    _reject(exercises.check_anisotropic_tv, wrap, "wrap around")
    _reject(exercises.check_anisotropic_tv, lambda x: aniso_tv(x) / (x.shape[-1] * x.shape[-2]),
            "SUM")
    _reject(exercises.check_anisotropic_tv,
            lambda x: (x[..., :, 1:] - x[..., :, :-1]).abs().sum((1, 2, 3)), "AND vertical")
    _reject(exercises.check_anisotropic_tv, lambda x: torch.zeros(x.shape[0]))
    _reject(exercises.check_anisotropic_tv, lambda x: x, "shape")


@pytest.mark.parametrize("seed", SEEDS)
def test_tv_weight_accepts_n_h_w(seed):
    assert "passed" in exercises.check_tv_weight(lambda w, n, h, w_: w * n * h * w_, seed=seed)


def test_tv_weight_rejects_typical_mistakes():
    _reject(exercises.check_tv_weight, lambda w, n, h, w_: w / (n * h * w_), "MULTIPLIED")
    _reject(exercises.check_tv_weight, lambda w, n, h, w_: w * h * w_, "batch counts")
    _reject(exercises.check_tv_weight, lambda w, n, h, w_: w)  # echo
    _reject(exercises.check_tv_weight, lambda w, n, h, w_: 1.18)


# ---------------------------------------------------------------------------- Chapter 6


def log_speckle_db(L):
    k = 10 / math.log(10)
    return k * (special.digamma(L) - math.log(L)), k * math.sqrt(special.polygamma(1, L))


@pytest.mark.parametrize("seed", SEEDS)
def test_log_speckle_db_accepts_digamma_trigamma(seed):
    assert "passed" in exercises.check_log_speckle_db(log_speckle_db, seed=seed)


def test_log_speckle_db_rejects_typical_mistakes():
    k = 10 / math.log(10)
    _reject(exercises.check_log_speckle_db,
            lambda L: (special.digamma(L) - math.log(L), math.sqrt(special.polygamma(1, L))),
            "nepers")
    _reject(exercises.check_log_speckle_db,
            lambda L: (log_speckle_db(L)[0], k**2 * special.polygamma(1, L)),
            "standard deviation")
    _reject(exercises.check_log_speckle_db,
            lambda L: tuple(2 * v for v in log_speckle_db(L)), "20 log10")
    _reject(exercises.check_log_speckle_db, lambda L: (-2.507, 5.570))
    _reject(exercises.check_log_speckle_db, lambda L: (L, L))
    _reject(exercises.check_log_speckle_db, lambda L: -2.5, "two numbers")


@pytest.mark.parametrize("seed", SEEDS)
def test_enl_accepts_mean_squared_over_variance(seed):
    def enl(v):
        n = v.numel()
        mu = v.sum() / n
        return float(mu**2 / (((v - mu) ** 2).sum() / (n - 1)))

    assert "passed" in exercises.check_enl(enl, seed=seed)


def test_enl_rejects_typical_mistakes():
    _reject(exercises.check_enl, lambda v: float(v.mean() ** 2 / v.var(unbiased=False)),
            "n - 1")
    _reject(exercises.check_enl, lambda v: float(v.mean() ** 2 / v.std()),
            "standard deviation")
    _reject(exercises.check_enl, lambda v: float(v.var() / v.mean() ** 2), "inverse")
    _reject(exercises.check_enl, lambda v: 1.0)
    _reject(exercises.check_enl, lambda v: float(v[0]))


# ---------------------------------------------------------------------------- Chapter 7


def psnr_two_ways(outputs, targets, L):
    per_mse = ((outputs - targets) ** 2).mean((1, 2, 3))
    per = 10 * torch.log10(L**2 / per_mse)
    return float(per.mean()), float(10 * torch.log10(L**2 / per_mse.mean()))


@pytest.mark.parametrize("seed", SEEDS)
def test_psnr_averages_accepts_both_averages(seed):
    assert "passed" in exercises.check_psnr_averages(psnr_two_ways, seed=seed)


def test_psnr_averages_rejects_typical_mistakes():
    _reject(exercises.check_psnr_averages, lambda o, t, L: psnr_two_ways(o, t, L)[::-1],
            "swapped")
    _reject(exercises.check_psnr_averages, lambda o, t, L: (psnr_two_ways(o, t, L)[0],) * 2,
            "equal")
    _reject(exercises.check_psnr_averages, lambda o, t, L: (30.0, 29.0))
    _reject(exercises.check_psnr_averages, lambda o, t, L: (o, t))


def sign_test(d):
    d = np.asarray(d)
    plus, minus = int((d > 0).sum()), int((d < 0).sum())
    n = plus + minus
    k = min(plus, minus)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


@pytest.mark.parametrize("seed", SEEDS)
def test_sign_test_accepts_the_binomial_formula(seed):
    assert "passed" in exercises.check_sign_test(sign_test, seed=seed)


def test_sign_test_rejects_typical_mistakes():
    def with_ties(d):
        d = np.asarray(d)
        return stats.binomtest(int((d > 0).sum()), d.size, 0.5).pvalue

    def one_sided(d):
        d = np.asarray(d)
        plus, minus = int((d > 0).sum()), int((d < 0).sum())
        return stats.binomtest(plus, plus + minus, 0.5, alternative="greater").pvalue

    msg = _reject(exercises.check_sign_test, with_ties, seed=5)
    assert "Drop the zero" in msg or "one-sided" in msg
    _reject(exercises.check_sign_test, one_sided, "one-sided", seed=5)
    _reject(exercises.check_sign_test, lambda d: 0.05)
    _reject(exercises.check_sign_test, lambda d: float(np.mean(d)))


def test_every_chapter_has_at_least_two_checks():
    from lossbook.exercises import _MODULES

    by_chapter = {m.__name__.rsplit(".", 1)[-1]: m.__all__ for m in _MODULES}
    for chapter in ("ch01", "ch02", "ch03", "ch04", "ch05", "ch06", "ch07"):
        checks = [n for n in by_chapter.get(chapter, []) if n.startswith("check_")]
        assert len(checks) >= 2, f"{chapter} has {len(checks)} checks"


def test_no_two_chapters_export_the_same_check():
    """``lossbook.exercises`` re-exports every chapter module: a repeated name would let one
    chapter's check silently replace another's."""
    from lossbook.exercises import _MODULES

    seen: dict[str, str] = {}
    for module in _MODULES:
        for name in module.__all__:
            assert name not in seen, f"{name} is exported by {seen.get(name)} and {module}"
            seen[name] = module.__name__
