r"""Statistics for comparing methods: paired bootstrap, confidence intervals, rank correlation.

A table of mean PSNRs says which method scored higher on *these* test images; it does
not say whether the ranking would survive another draw of test images. The functions
here answer that question the way a reviewer would ask it:

- :func:`paired_bootstrap`: an interval for the mean difference :math:`a - b` of a
  metric between two methods scored on the *same* images (the pairing removes the
  image-to-image variation that both methods share);
- :func:`mean_ci`: Student's *t* interval for one mean;
- :func:`spearman`, :func:`kendall`: rank correlation between a metric and, for
  example, a subjective quality scale (scipy's estimates, with a bootstrap interval);
- :func:`format_interval`: one result as a short string for prose and tables;
- :func:`compare_methods`: paired comparisons of several methods, each with a sentence
  that calls a difference only when its interval excludes zero.

Every function takes 1-D array-likes (lists, NumPy arrays, or CPU/GPU tensors, which
are copied to NumPy) and returns a plain ``dict``. Randomness comes only from the
``seed`` argument, so the same call gives the same interval.

References
----------
B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall,
1993 (percentile intervals, ch. 13).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as _sps

__all__ = [
    "paired_bootstrap",
    "mean_ci",
    "spearman",
    "kendall",
    "format_interval",
    "compare_methods",
]

FEW_IMAGES = 10
"""Below this many test images, :func:`compare_methods` says that no interval is
trustworthy (the bootstrap has too few distinct resamples)."""

# Bootstrap resamples are drawn in blocks of at most this many numbers, so that a large
# test set does not allocate n_resamples * n indices at once.
_BLOCK_ELEMENTS = 4_000_000


def _as_1d(x: object, name: str) -> np.ndarray:
    """Return ``x`` as a finite 1-D float64 array, or raise a helpful error."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch.Tensor, without importing torch
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"{name} must be a 1-D sequence of numbers (list, NumPy array or tensor), one "
            f"value per test image; got {type(x).__name__} that cannot be converted ({err})."
        ) from None
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one value per test image); got shape {arr.shape}. "
            "Pass per-image scores, e.g. psnr(x, y, reduction='none'), or flatten with .ravel()."
        )
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(
            f"{name} holds {bad} non-finite value(s) (NaN or inf) among {arr.size}. A PSNR of "
            "inf means an image was reproduced exactly; drop or cap such images explicitly "
            "and say so in the text."
        )
    return arr


def _check_confidence(confidence: object) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)):
        raise TypeError(
            f"confidence must be a number in (0, 1), e.g. 0.95; got {type(confidence).__name__}."
        )
    c = float(confidence)
    if not 0.0 < c < 1.0:
        hint = " (give a fraction: 0.95, not 95)" if 1.0 < c <= 100.0 else ""
        raise ValueError(f"confidence must lie strictly between 0 and 1; got {confidence}{hint}.")
    return c


def _check_resamples(n_resamples: object) -> int:
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)):
        raise TypeError(
            f"n_resamples must be an integer (10_000 is a good default); got "
            f"{type(n_resamples).__name__}."
        )
    if n_resamples < 100:
        raise ValueError(
            f"n_resamples must be at least 100 for a usable interval; got {n_resamples}. "
            "Use 10_000 for reported numbers."
        )
    return int(n_resamples)


def _resample_means(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples of ``d`` (drawn with replacement)."""
    n = d.size
    out = np.empty(n_resamples)
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n_resamples, block):
        stop = min(n_resamples, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        out[start:stop] = d[idx].mean(axis=1)
    return out


def paired_bootstrap(
    a: object,
    b: object,
    *,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int | np.random.Generator | None = None,
) -> dict[str, Any]:
    r"""Paired bootstrap interval for the mean difference of a metric between two methods.

    With per-image scores :math:`a_i` and :math:`b_i` of two methods on the same
    :math:`n` test images, the statistic is the mean paired difference

    .. math:: \bar d = \frac{1}{n} \sum_{i=1}^{n} (a_i - b_i).

    The test images are resampled with replacement ``n_resamples`` times (the same
    images for both methods, which keeps the pairing), :math:`\bar d^{*}` is computed
    on each resample, and the percentile interval is

    .. math:: [\,q_{(1-c)/2}(\bar d^{*}),\; q_{(1+c)/2}(\bar d^{*})\,]

    for confidence :math:`c` (Efron & Tibshirani 1993, ch. 13). Call a difference
    only when the interval excludes zero (``excludes_zero``); ``p_opposite``, the
    share of resamples whose mean difference has the opposite sign to :math:`\bar d`
    (a resample mean of exactly zero counts one half), says how often another draw
    of test images could reverse the ranking.

    Parameters
    ----------
    a, b : array-like of shape (n,)
        Per-image scores of the two methods on the same images, in the same order
        (lists, NumPy arrays or tensors), e.g. ``psnr(x, y, reduction="none")``.
        At least 2 images.
    confidence : float
        Coverage of the interval, in (0, 1). Default 0.95.
    n_resamples : int
        Number of bootstrap resamples (at least 100). Default 10 000.
    seed : int, numpy.random.Generator or None
        Seed of the resampling; the same seed gives the same interval. ``None`` draws
        fresh randomness (pass a seed for anything you report).

    Returns
    -------
    dict
        ``mean`` (:math:`\bar d`), ``low``, ``high`` (the interval), ``p_opposite``,
        ``excludes_zero`` (bool), ``std`` (bootstrap standard error of :math:`\bar d`),
        ``mean_a``, ``mean_b``, ``n``, ``confidence``, ``n_resamples``, ``seed`` and
        ``method`` (``"paired percentile bootstrap"``).

    Notes
    -----
    The percentile interval is slightly too narrow for very few images (about 93 %
    actual coverage for a nominal 95 % at :math:`n = 20`); with fewer than about 10
    test images no interval is trustworthy, and the text should say so.

    Examples
    --------
    >>> r = paired_bootstrap([30.1, 28.4, 31.0, 29.5], [29.8, 28.0, 30.9, 29.0], seed=0)
    >>> round(r["mean"], 3)
    0.325
    """
    a_arr = _as_1d(a, "a")
    b_arr = _as_1d(b, "b")
    if a_arr.shape != b_arr.shape:
        raise ValueError(
            f"a and b must hold one score per test image for the same images; got {a_arr.size} "
            f"and {b_arr.size} values. Score both methods on the same test set."
        )
    if a_arr.size < 2:
        raise ValueError(
            f"paired_bootstrap needs at least 2 paired scores; got {a_arr.size}. Evaluate on "
            "more test images (an interval from fewer than about 10 is not trustworthy)."
        )
    c = _check_confidence(confidence)
    n_res = _check_resamples(n_resamples)
    rng = np.random.default_rng(seed)

    d = a_arr - b_arr
    mean = float(d.mean())
    boot = _resample_means(d, n_res, rng)
    low, high = np.quantile(boot, [(1.0 - c) / 2.0, (1.0 + c) / 2.0])
    if mean > 0:
        p_opposite = float(np.mean(boot < 0) + 0.5 * np.mean(boot == 0))
    elif mean < 0:
        p_opposite = float(np.mean(boot > 0) + 0.5 * np.mean(boot == 0))
    else:
        p_opposite = 0.5
    low, high = float(low), float(high)
    return {
        "mean": mean,
        "low": low,
        "high": high,
        "p_opposite": p_opposite,
        "excludes_zero": bool(low > 0 or high < 0),
        "std": float(boot.std(ddof=1)),
        "mean_a": float(a_arr.mean()),
        "mean_b": float(b_arr.mean()),
        "n": int(d.size),
        "confidence": c,
        "n_resamples": n_res,
        "seed": seed if (seed is None or isinstance(seed, (int, np.integer))) else "generator",
        "method": "paired percentile bootstrap",
    }


def mean_ci(x: object, *, confidence: float = 0.95) -> dict[str, Any]:
    r"""Student's *t* confidence interval for a mean.

    .. math:: \bar x \pm t_{(1+c)/2,\,n-1}\, \frac{s}{\sqrt{n}}

    with :math:`s` the sample standard deviation (``ddof=1``) and :math:`t` the
    quantile of Student's *t* distribution with :math:`n-1` degrees of freedom.
    Exact for normally distributed values, approximate otherwise.

    Parameters
    ----------
    x : array-like of shape (n,)
        The values, at least 2.
    confidence : float
        Coverage of the interval, in (0, 1). Default 0.95.

    Returns
    -------
    dict
        ``mean``, ``low``, ``high``, ``std`` (sample standard deviation), ``sem``
        (standard error :math:`s/\sqrt n`), ``n``, ``confidence``, ``method``
        (``"t"``).
    """
    arr = _as_1d(x, "x")
    if arr.size < 2:
        raise ValueError(f"mean_ci needs at least 2 values; got {arr.size}.")
    c = _check_confidence(confidence)
    n = arr.size
    mean = float(arr.mean())
    std = float(arr.std(ddof=1))
    sem = std / np.sqrt(n)
    half = float(_sps.t.ppf((1.0 + c) / 2.0, df=n - 1)) * sem
    return {
        "mean": mean,
        "low": mean - half,
        "high": mean + half,
        "std": std,
        "sem": float(sem),
        "n": int(n),
        "confidence": c,
        "method": "t",
    }


def _check_xy(x: object, y: object) -> tuple[np.ndarray, np.ndarray]:
    xa = _as_1d(x, "x")
    ya = _as_1d(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(
            f"x and y must have one value per item each; got {xa.size} and {ya.size} values."
        )
    if xa.size < 3:
        raise ValueError(f"a rank correlation needs at least 3 items; got {xa.size}.")
    if np.ptp(xa) == 0 or np.ptp(ya) == 0:
        which = "x" if np.ptp(xa) == 0 else "y"
        raise ValueError(
            f"{which} is constant, so its ranks carry no order and the correlation is "
            "undefined. Check that the scores were computed on different items."
        )
    return xa, ya


def _spearman_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (average ranks for ties); NaN for a constant row."""
    rx = _sps.rankdata(xs, axis=1)
    ry = _sps.rankdata(ys, axis=1)
    rx = rx - rx.mean(axis=1, keepdims=True)
    ry = ry - ry.mean(axis=1, keepdims=True)
    num = (rx * ry).sum(axis=1)
    den = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _kendall_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair; NaN for a constant row."""
    sx = np.sign(xs[:, :, None] - xs[:, None, :])
    sy = np.sign(ys[:, :, None] - ys[:, None, :])
    num = (sx * sy).sum(axis=(1, 2))
    den = np.sqrt((sx * sx).sum(axis=(1, 2)) * (sy * sy).sum(axis=(1, 2)))
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def _correlation(
    x: object,
    y: object,
    *,
    name: str,
    confidence: float,
    n_resamples: int,
    seed: int | np.random.Generator | None,
) -> dict[str, Any]:
    xa, ya = _check_xy(x, y)
    c = _check_confidence(confidence)
    n_res = _check_resamples(n_resamples)
    if name == "rho":
        res = _sps.spearmanr(xa, ya)
        rows = _spearman_rows
    else:
        res = _sps.kendalltau(xa, ya)
        rows = _kendall_rows
    value, p_value = float(res.statistic), float(res.pvalue)
    rng = np.random.default_rng(seed)
    n = xa.size
    block = max(1, _BLOCK_ELEMENTS // (n * (n if name == "tau" else 1)))
    boot = np.empty(n_res)
    for start in range(0, n_res, block):
        stop = min(n_res, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        boot[start:stop] = rows(xa[idx], ya[idx])
    # A resample that repeats one item n times has no order; it carries no information
    # about the correlation and is left out of the quantiles.
    low, high = np.nanquantile(boot, [(1.0 - c) / 2.0, (1.0 + c) / 2.0])
    return {
        name: value,
        "statistic": value,
        "p_value": p_value,
        "low": float(low),
        "high": float(high),
        "n": int(n),
        "confidence": c,
        "n_resamples": n_res,
        "method": f"{'Spearman' if name == 'rho' else 'Kendall tau-b'} (scipy); "
        "percentile bootstrap interval",
    }


def spearman(
    x: object,
    y: object,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int | np.random.Generator | None = None,
) -> dict[str, Any]:
    r"""Spearman's rank correlation :math:`\rho` with a bootstrap interval.

    :math:`\rho` is Pearson's correlation of the ranks of ``x`` and ``y`` (ties get
    their average rank); the estimate and its p-value (null hypothesis: no
    association) are scipy's :func:`scipy.stats.spearmanr`. The interval is a
    percentile bootstrap over items (resamples in which every item is the same are
    skipped).

    Parameters
    ----------
    x, y : array-like of shape (n,)
        Paired values, e.g. a metric and a subjective quality scale for the same
        stimuli; at least 3, neither constant.
    confidence : float
        Coverage of the interval, in (0, 1). Default 0.95.
    n_resamples : int
        Bootstrap resamples (at least 100). Default 2 000.
    seed : int, numpy.random.Generator or None
        Seed of the resampling.

    Returns
    -------
    dict
        ``rho`` (also under ``statistic``), ``p_value``, ``low``, ``high``, ``n``,
        ``confidence``, ``n_resamples``, ``method``.

    References
    ----------
    C. Spearman, "The proof and measurement of association between two things",
    *Am. J. Psychol.* 15 (1904).
    """
    return _correlation(x, y, name="rho", confidence=confidence, n_resamples=n_resamples, seed=seed)


def kendall(
    x: object,
    y: object,
    *,
    confidence: float = 0.95,
    n_resamples: int = 2_000,
    seed: int | np.random.Generator | None = None,
) -> dict[str, Any]:
    r"""Kendall's rank correlation :math:`\tau_b` with a bootstrap interval.

    .. math:: \tau_b = \frac{n_c - n_d}{\sqrt{(n_0 - n_x)(n_0 - n_y)}}

    with :math:`n_c`, :math:`n_d` the concordant and discordant pairs of items,
    :math:`n_0 = n(n-1)/2`, and :math:`n_x`, :math:`n_y` the pairs tied in ``x`` or
    ``y``. The estimate and p-value are scipy's :func:`scipy.stats.kendalltau`; the
    interval is a percentile bootstrap over items.

    Parameters
    ----------
    x, y : array-like of shape (n,)
        Paired values; at least 3, neither constant.
    confidence, n_resamples, seed
        As in :func:`spearman`.

    Returns
    -------
    dict
        ``tau`` (also under ``statistic``), ``p_value``, ``low``, ``high``, ``n``,
        ``confidence``, ``n_resamples``, ``method``.

    References
    ----------
    M. G. Kendall, "A new measure of rank correlation", *Biometrika* 30 (1938).
    """
    return _correlation(x, y, name="tau", confidence=confidence, n_resamples=n_resamples, seed=seed)


def format_interval(
    result: dict[str, Any],
    unit: str = "",
    *,
    digits: int = 2,
    signed: bool | None = None,
) -> str:
    """Format a result of this module as a short string for prose and tables.

    Parameters
    ----------
    result : dict
        A result of :func:`paired_bootstrap`, :func:`mean_ci`, :func:`spearman` or
        :func:`kendall` (any dict with ``low``, ``high``, ``confidence`` and ``mean``
        or ``statistic``).
    unit : str
        Appended to the numbers with a space, e.g. ``"dB"``.
    digits : int
        Decimal places. Default 2.
    signed : bool or None
        Show a ``+`` on positive numbers. ``None`` (default): only for paired
        differences (results of :func:`paired_bootstrap`).

    Returns
    -------
    str
        E.g. ``"+0.42 dB (95% CI +0.31 to +0.55 dB)"``.
    """
    if not isinstance(result, dict) or not {"low", "high", "confidence"} <= result.keys():
        raise TypeError(
            "result must be a dict returned by lossbook.stats (with 'low', 'high' and "
            f"'confidence'); got {type(result).__name__}."
        )
    key = "mean" if "mean" in result else "statistic"
    if key not in result:
        raise TypeError("result has neither 'mean' nor 'statistic'; pass a lossbook.stats result.")
    if signed is None:
        signed = "p_opposite" in result
    sign = "+" if signed else ""
    suffix = f" {unit}" if unit else ""
    fmt = f"{{:{sign}.{int(digits)}f}}"
    value, low, high = (fmt.format(float(result[k])) for k in (key, "low", "high"))
    pct = f"{100 * float(result['confidence']):g}%"
    return f"{value}{suffix} ({pct} CI {low} to {high}{suffix})"


def compare_methods(
    scores: dict[str, Any],
    pairs: list[tuple[str, str]] | None = None,
    *,
    metric: str = "PSNR",
    unit: str = "dB",
    higher_is_better: bool = True,
    confidence: float = 0.95,
    n_resamples: int = 10_000,
    seed: int = 0,
    digits: int = 2,
) -> list[dict[str, Any]]:
    """Paired bootstrap comparisons of methods, each with a sentence that says what holds.

    Parameters
    ----------
    scores : dict of str to array-like
        Per-image scores of each method on the same test images, in the same order.
    pairs : list of (str, str), optional
        The comparisons ``(a, b)`` (difference ``a - b``); default: every pair of methods
        in the order given.
    metric, unit : str
        Used in the sentences (e.g. ``"PSNR"``, ``"dB"``).
    higher_is_better : bool
        False for errors such as MAE.
    confidence, n_resamples, seed
        Passed to :func:`paired_bootstrap` (the same seed for every pair).
    digits : int
        Decimal places in the sentences.

    Returns
    -------
    list of dict
        One :func:`paired_bootstrap` result per pair, plus ``a``, ``b``, ``better``
        (the method the interval favours, or ``None`` when it includes zero) and
        ``sentence``.
    """
    names = list(scores)
    if pairs is None:
        pairs = [(names[i], names[j]) for i in range(len(names)) for j in range(i + 1, len(names))]
    out = []
    for a, b in pairs:
        for m in (a, b):
            if m not in scores:
                raise KeyError(f"no scores for method {m!r}; have {names}.")
        r = paired_bootstrap(
            scores[a], scores[b], confidence=confidence, n_resamples=n_resamples, seed=seed
        )
        text = format_interval(r, unit, digits=digits)
        if r["excludes_zero"]:
            a_wins = (r["mean"] > 0) == higher_is_better
            better, worse = (a, b) if a_wins else (b, a)
            sentence = (
                f"{better} beats {worse} on {metric}: {a} - {b} = {text}; the interval "
                f"excludes 0 on these {r['n']} test images."
            )
        else:
            better = None
            sentence = (
                f"{a} vs {b} on {metric}: {a} - {b} = {text}; the interval includes 0, so "
                f"these {r['n']} test images do not rank them."
            )
        if r["n"] < FEW_IMAGES:
            sentence += (
                f" Only {r['n']} test images: too few for a trustworthy interval "
                "(evaluate on more images before claiming either way)."
            )
        out.append({**r, "a": a, "b": b, "better": better, "sentence": sentence})
    return out
