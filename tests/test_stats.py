"""lossbook.stats against closed forms, scipy, and coverage on simulated data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps

from lossbook import stats
from lossbook.stats import (
    _kendall_rows,
    _spearman_rows,
    compare_methods,
    format_interval,
    kendall,
    mean_ci,
    paired_bootstrap,
    spearman,
)

# ---------------------------------------------------------------- paired_bootstrap


def test_paired_bootstrap_keys_and_mean_closed_form():
    rng = np.random.default_rng(0)
    a = rng.normal(30, 2, size=25)
    b = a - rng.normal(0.3, 0.5, size=25)
    r = paired_bootstrap(a, b, seed=1)
    for key in ("mean", "low", "high", "p_opposite", "n", "confidence", "excludes_zero", "std"):
        assert key in r
    assert r["mean"] == pytest.approx(np.mean(a - b), abs=1e-12)
    assert r["mean_a"] == pytest.approx(a.mean()) and r["mean_b"] == pytest.approx(b.mean())
    assert r["n"] == 25 and r["confidence"] == 0.95 and r["n_resamples"] == 10_000
    assert r["low"] < r["mean"] < r["high"]


def test_paired_bootstrap_constant_difference_is_a_point():
    a = np.array([1.0, 2.0, 5.0, 7.0])
    r = paired_bootstrap(a + 0.25, a, seed=0, n_resamples=500)
    assert r["mean"] == pytest.approx(0.25)
    assert r["low"] == pytest.approx(0.25) and r["high"] == pytest.approx(0.25)
    assert r["p_opposite"] == 0.0 and r["excludes_zero"]
    assert r["std"] == pytest.approx(0.0, abs=1e-12)


def test_paired_bootstrap_standard_error_matches_closed_form():
    # The bootstrap distribution of a mean has variance mean((d - dbar)^2) / n exactly;
    # with 20 000 resamples the estimate is within a few per cent.
    rng = np.random.default_rng(3)
    d = rng.normal(0.0, 1.5, size=40)
    r = paired_bootstrap(d, np.zeros_like(d), seed=4, n_resamples=20_000)
    expected = np.sqrt(np.mean((d - d.mean()) ** 2) / d.size)
    assert r["std"] == pytest.approx(expected, rel=0.03)


def test_paired_bootstrap_is_paired_not_two_sample():
    # Large shared image-to-image variation, small consistent difference: the paired
    # interval must be narrow (an unpaired one would be ~20x wider and include zero).
    rng = np.random.default_rng(5)
    base = rng.normal(30, 4, size=30)
    a = base + 0.2 + rng.normal(0, 0.1, size=30)
    b = base
    r = paired_bootstrap(a, b, seed=0)
    assert r["excludes_zero"] and r["low"] > 0.1
    assert r["high"] - r["low"] < 0.2


def test_paired_bootstrap_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(7)
    a = rng.gamma(2.0, 1.0, size=30)
    b = a - rng.normal(0.4, 1.0, size=30)
    ours = paired_bootstrap(a, b, seed=0, n_resamples=20_000)
    ref = sps.bootstrap(
        (a - b,),
        np.mean,
        confidence_level=0.95,
        n_resamples=20_000,
        method="percentile",
        random_state=np.random.default_rng(1),
    )
    se = ref.standard_error
    assert ours["low"] == pytest.approx(ref.confidence_interval.low, abs=0.1 * se)
    assert ours["high"] == pytest.approx(ref.confidence_interval.high, abs=0.1 * se)
    assert ours["std"] == pytest.approx(se, rel=0.03)


def test_paired_bootstrap_seeded_and_antisymmetric():
    rng = np.random.default_rng(11)
    a, b = rng.normal(size=15), rng.normal(size=15)
    r1 = paired_bootstrap(a, b, seed=42, n_resamples=1000)
    r2 = paired_bootstrap(a, b, seed=42, n_resamples=1000)
    r3 = paired_bootstrap(a, b, seed=43, n_resamples=1000)
    assert r1 == r2
    assert (r1["low"], r1["high"]) != (r3["low"], r3["high"])
    swapped = paired_bootstrap(b, a, seed=42, n_resamples=1000)
    assert swapped["mean"] == pytest.approx(-r1["mean"])
    assert swapped["low"] == pytest.approx(-r1["high"])
    assert swapped["high"] == pytest.approx(-r1["low"])
    assert swapped["p_opposite"] == pytest.approx(r1["p_opposite"])


def test_paired_bootstrap_p_opposite_matches_normal_approximation():
    rng = np.random.default_rng(13)
    d = rng.normal(0.0, 1.0, size=200)
    d = d - d.mean() + 0.1  # observed mean 0.1, se ~ 0.07
    r = paired_bootstrap(d, np.zeros_like(d), seed=0, n_resamples=20_000)
    se = np.sqrt(np.mean((d - d.mean()) ** 2) / d.size)
    assert r["p_opposite"] == pytest.approx(sps.norm.cdf(-0.1 / se), abs=0.02)
    assert 0.0 < r["p_opposite"] < 0.5


@pytest.mark.parametrize(
    ("confidence", "draw"),
    [
        (0.95, lambda rng, n: rng.normal(0.5, 1.0, size=n)),
        (0.90, lambda rng, n: rng.exponential(1.0, size=n) - 0.5),  # skewed, mean 0.5
    ],
)
def test_paired_bootstrap_coverage_near_nominal(confidence, draw):
    # 400 simulated test sets of 30 images with true mean difference 0.5: the interval
    # should cover 0.5 close to its nominal rate (the percentile interval runs a little
    # short at this n). Binomial sd of the rate is ~0.011 (0.95) / 0.015 (0.90).
    rng = np.random.default_rng(2024)
    hits = 0
    trials = 400
    for _ in range(trials):
        d = draw(rng, 30)
        r = paired_bootstrap(d, np.zeros(30), confidence=confidence, n_resamples=1000, seed=rng)
        hits += r["low"] <= 0.5 <= r["high"]
    rate = hits / trials
    assert confidence - 0.06 <= rate <= confidence + 0.03, rate


def test_paired_bootstrap_accepts_tensors_and_lists():
    a = torch.tensor([30.0, 31.0, 29.0, 32.0])
    b = [29.0, 30.5, 29.5, 31.0]
    r = paired_bootstrap(a, b, seed=0, n_resamples=200)
    assert r["mean"] == pytest.approx(0.5)


def test_paired_bootstrap_large_n_is_blocked(monkeypatch):
    monkeypatch.setattr(stats, "_BLOCK_ELEMENTS", 1000)
    rng = np.random.default_rng(0)
    d = rng.normal(size=300)
    small = paired_bootstrap(d, np.zeros(300), seed=9, n_resamples=500)
    assert small["low"] < small["mean"] < small["high"]


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0]}, ValueError, "same test set"),
        ({"a": [1.0], "b": [2.0]}, ValueError, "at least 2"),
        ({"a": [1.0, float("nan")], "b": [1.0, 2.0]}, ValueError, "non-finite"),
        ({"a": [[1.0, 2.0]], "b": [[1.0, 2.0]]}, ValueError, "1-D"),
        ({"a": ["x", "y"], "b": [1.0, 2.0]}, TypeError, "sequence of numbers"),
        ({"a": [1.0, 2.0], "b": [1.0, 3.0], "confidence": 95}, ValueError, "0.95, not 95"),
        ({"a": [1.0, 2.0], "b": [1.0, 3.0], "n_resamples": 10}, ValueError, "at least 100"),
        ({"a": [1.0, 2.0], "b": [1.0, 3.0], "n_resamples": 1e4}, TypeError, "integer"),
    ],
)
def test_paired_bootstrap_bad_input(kwargs, exc, match):
    a = kwargs.pop("a")
    b = kwargs.pop("b")
    with pytest.raises(exc, match=match):
        paired_bootstrap(a, b, **kwargs)


# ---------------------------------------------------------------- mean_ci


def test_mean_ci_matches_scipy_t_interval():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=12)
    r = mean_ci(x, confidence=0.9)
    low, high = sps.t.interval(0.9, df=11, loc=x.mean(), scale=sps.sem(x))
    assert r["low"] == pytest.approx(low) and r["high"] == pytest.approx(high)
    assert r["sem"] == pytest.approx(sps.sem(x)) and r["std"] == pytest.approx(x.std(ddof=1))


def test_mean_ci_closed_form_two_points():
    # x = (0, 2): mean 1, s = sqrt(2), sem = 1, t_{0.975, 1} = 12.706...
    r = mean_ci([0.0, 2.0])
    assert r["mean"] == 1.0
    assert r["high"] - 1.0 == pytest.approx(12.706204736, rel=1e-8)


def test_mean_ci_coverage_on_normal_data():
    rng = np.random.default_rng(8)
    hits = sum(
        (r := mean_ci(rng.normal(2.0, 1.0, size=8)))["low"] <= 2.0 <= r["high"] for _ in range(2000)
    )
    assert abs(hits / 2000 - 0.95) < 0.015


def test_mean_ci_bad_input():
    with pytest.raises(ValueError, match="at least 2"):
        mean_ci([1.0])


# ---------------------------------------------------------------- rank correlation


def test_spearman_and_kendall_match_scipy():
    rng = np.random.default_rng(2)
    x = rng.normal(size=20)
    y = x + rng.normal(scale=0.8, size=20)
    s = spearman(x, y, seed=0)
    k = kendall(x, y, seed=0)
    ref_s = sps.spearmanr(x, y)
    ref_k = sps.kendalltau(x, y)
    assert s["rho"] == pytest.approx(ref_s.statistic) and s["statistic"] == s["rho"]
    assert s["p_value"] == pytest.approx(ref_s.pvalue)
    assert k["tau"] == pytest.approx(ref_k.statistic)
    assert k["p_value"] == pytest.approx(ref_k.pvalue)
    assert s["low"] < s["rho"] < s["high"] and k["low"] < k["tau"] < k["high"]


def test_rank_correlation_closed_forms():
    x = np.arange(10.0)
    assert spearman(x, x**3, seed=0)["rho"] == pytest.approx(1.0)
    assert kendall(x, -np.exp(x), seed=0)["tau"] == pytest.approx(-1.0)
    # one swapped neighbour pair among n=5: tau = (9 - 1) / 10, rho = 1 - 6*2/(5*24)
    y = np.array([1.0, 0.0, 2.0, 3.0, 4.0])
    assert kendall(np.arange(5.0), y, seed=0)["tau"] == pytest.approx(0.8)
    assert spearman(np.arange(5.0), y, seed=0)["rho"] == pytest.approx(0.9)


def test_vectorised_rank_rows_match_scipy_with_ties():
    rng = np.random.default_rng(4)
    xs = rng.integers(0, 5, size=(30, 12)).astype(float)  # many ties
    ys = xs + rng.integers(-2, 3, size=(30, 12))
    rho = _spearman_rows(xs, ys)
    tau = _kendall_rows(xs, ys)
    for i in range(30):
        assert rho[i] == pytest.approx(sps.spearmanr(xs[i], ys[i]).statistic)
        assert tau[i] == pytest.approx(sps.kendalltau(xs[i], ys[i]).statistic)


def test_rank_correlation_bad_input():
    with pytest.raises(ValueError, match="constant"):
        spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="at least 3"):
        kendall([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="one value per item"):
        kendall([1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])


# ---------------------------------------------------------------- format_interval


def test_format_interval():
    r = {"mean": 0.4213, "low": -0.05, "high": 0.9, "confidence": 0.95, "p_opposite": 0.04}
    assert format_interval(r, "dB") == "+0.42 dB (95% CI -0.05 to +0.90 dB)"
    m = {"mean": 30.0, "low": 29.5, "high": 30.5, "confidence": 0.9}
    assert format_interval(m, digits=1) == "30.0 (90% CI 29.5 to 30.5)"
    k = kendall(np.arange(6.0), np.array([0.0, 2, 1, 3, 5, 4]), seed=0)
    assert format_interval(k).startswith(f"{k['tau']:.2f} (95% CI")
    with pytest.raises(TypeError, match="lossbook.stats"):
        format_interval((1.0, 2.0))


# ---------------------------------------------------------------- compare_methods


def test_compare_methods_sentences_follow_the_intervals():
    rng = np.random.default_rng(0)
    base = rng.normal(28, 3, size=40)
    scores = {
        "good": base + 0.5 + rng.normal(0, 0.2, 40),
        "twin": base + 0.5 + rng.normal(0, 0.2, 40),
        "bad": base,
    }
    res = {(r["a"], r["b"]): r for r in compare_methods(scores, seed=1)}
    assert set(res) == {("good", "twin"), ("good", "bad"), ("twin", "bad")}
    assert res[("good", "bad")]["better"] == "good"
    assert res[("good", "bad")]["sentence"].startswith("good beats bad on PSNR")
    assert res[("good", "twin")]["better"] is None
    assert "do not rank them" in res[("good", "twin")]["sentence"]
    assert res[("good", "bad")]["mean"] == pytest.approx(np.mean(scores["good"] - base))
    assert "trustworthy" not in res[("good", "bad")]["sentence"]
    # lower is better (an error such as MAE): the method with the smaller value wins
    err = compare_methods(scores, [("bad", "good")], metric="MAE", unit="", higher_is_better=False)
    assert err[0]["better"] == "bad"


def test_compare_methods_warns_about_few_images_and_unknown_names():
    r = compare_methods({"a": [30.0, 31.0, 29.5], "b": [29.0, 30.5, 29.0]}, seed=0)
    assert "Only 3 test images" in r[0]["sentence"]
    with pytest.raises(KeyError, match="no scores for method 'c'"):
        compare_methods({"a": [1.0, 2.0], "b": [1.0, 2.0]}, [("a", "c")])
