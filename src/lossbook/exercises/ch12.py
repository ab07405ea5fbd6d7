"""Checks for Chapter 12 (a practical guide): name a reconstruction's symptom, and pick
weights that balance a combined loss."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import diagnose as D
from ..data import TEST_IMAGES, TRAIN_IMAGES, gaussian_blur, load_images
from ._common import fresh_generator as _fresh_generator

__all__ = ["SYMPTOMS", "make_symptom_case", "reference_symptom", "check_symptom",
           "check_balanced_weights"]

SYMPTOMS = ("blur", "noise", "shift", "checkerboard", "none")
"""The answers :func:`check_symptom` accepts."""

_HINTS = {
    ("blur", "none"): "Blur keeps the mean and the structure but lowers the high-frequency "
                      "share relative to the target: compare with the target "
                      "(diagnose.blur, spectral.sharpness_ratio).",
    ("noise", "none"): "Compare the high-frequency energy of output and target in flat "
                       "regions (diagnose.noise).",
    ("shift", "none"): "Structure and sharpness are intact, but compare the means "
                       "(diagnose.shift).",
    ("checkerboard", "noise"): "A checkerboard is high-frequency too, but all of it sits at "
                               "the upsampling frequencies (0.5 cycles/pixel): test for a "
                               "spectral peak (diagnose.checkerboard) before calling it noise.",
    ("noise", "checkerboard"): "Noise spreads over all high frequencies; a checkerboard is a "
                               "peak at 0.5 cycles/pixel: look at the peak ratio, not only at "
                               "the energy.",
    ("noise", "blur"): "Noise raises the high-frequency share above the target's (ratio > 1); "
                       "blur lowers it.",
    ("blur", "noise"): "Blur lowers the high-frequency share below the target's (ratio < 1); "
                       "noise raises it.",
    ("none", "blur"): "An untouched image has a sharpness ratio of about 1: use a threshold "
                      "(diagnose.blur fires below 0.7), not 'any ratio below 1'.",
}


def _images(gen: torch.Generator, n: int = 2) -> torch.Tensor:
    names = list(TEST_IMAGES) + list(TRAIN_IMAGES)
    pick = torch.randperm(len(names), generator=gen)[:n].tolist()
    x = load_images([names[i] for i in pick], 64)
    if bool(torch.rand(1, generator=gen) < 0.5):
        x = x.flip(-1)
    return x.rot90(int(torch.randint(0, 4, (1,), generator=gen)), dims=(-2, -1))


def make_symptom_case(symptom: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``(pred, target)`` pair of two 64 x 64 gray images showing ``symptom``.

    ``"blur"``: Gaussian blur of 1 to 2 pixels; ``"noise"``: white noise of 0.03 to 0.06;
    ``"shift"``: a brightness offset of 0.06 to 0.12 (either sign); ``"checkerboard"``: a
    period-2 pattern of amplitude 0.03 to 0.06 (a transposed convolution's artefact);
    ``"none"``: the target itself with noise of 0.002.
    """
    if symptom not in SYMPTOMS:
        raise ValueError(f"symptom must be one of {SYMPTOMS}; got {symptom!r}.")
    target = _images(gen)
    u = float(torch.rand(1, generator=gen))
    if symptom == "blur":
        pred = gaussian_blur(target, 1.0 + u)
    elif symptom == "noise":
        pred = target + (0.03 + 0.03 * u) * torch.randn(target.shape, generator=gen)
    elif symptom == "shift":
        sign = 1.0 if bool(torch.rand(1, generator=gen) < 0.5) else -1.0
        pred = target + sign * (0.06 + 0.06 * u)
    elif symptom == "checkerboard":
        j = torch.arange(64)
        board = ((j[:, None] + j[None, :]) % 2).float() * 2 - 1
        pred = target + (0.03 + 0.03 * u) * board
    else:
        pred = target + 0.002 * torch.randn(target.shape, generator=gen)
    return pred, target


def reference_symptom(pred: torch.Tensor, target: torch.Tensor) -> str:
    """The package's answer: the first detector of :mod:`lossbook.diagnose` that fires,
    in the order checkerboard, blur, noise, shift (a strong blur also lowers the coarse
    contrast that ``shift`` watches); ``"none"`` if none does."""
    if D.checkerboard(pred, target).flagged:
        return "checkerboard"
    if D.blur(pred, target).flagged:
        return "blur"
    if D.noise(pred, target).flagged:
        return "noise"
    if D.shift(pred, target).flagged:
        return "shift"
    return "none"


def check_symptom(fn: Callable, *, n_cases: int = 10, seed: int | None = None) -> str:
    """Check ``fn(pred, target) -> str``, which names a reconstruction's symptom.

    Each case is a fresh pair of 64 x 64 gray images (``(2, 1, 64, 64)`` float tensors in
    about ``[0, 1]``) showing one of :data:`SYMPTOMS`; every symptom appears at least
    once. The answer must be one of those strings.
    """
    gen = _fresh_generator(seed)
    order = list(SYMPTOMS) * math.ceil(n_cases / len(SYMPTOMS))
    perm = torch.randperm(len(order), generator=gen).tolist()
    order = [order[i] for i in perm][: max(n_cases, len(SYMPTOMS))]
    for s in SYMPTOMS:  # make sure every symptom is there
        if s not in order:
            order[order.index(max(set(order), key=order.count))] = s
    for case, truth in enumerate(order):
        pred, target = make_symptom_case(truth, gen)
        got = fn(pred.clone(), target.clone())
        if not isinstance(got, str) or got not in SYMPTOMS:
            raise AssertionError(f"case {case}: answer one of {SYMPTOMS} as a string; got "
                                 f"{got!r}.")
        if got != truth:
            hint = _HINTS.get((truth, got), "")
            raise AssertionError(f"case {case}: this output shows {truth!r}, you said {got!r}. "
                                 + hint)
    return f"All {len(order)} cases named correctly."


def check_balanced_weights(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    """Check ``fn(grad_norms) -> weights``: weights (a list of floats summing to 1) with
    which every term's weighted gradient norm is the same, as
    :func:`lossbook.diagnose.loss_balance` computes them."""
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        k = int(torch.randint(2, 5, (1,), generator=gen))
        norms = (10 ** (4 * torch.rand(k, generator=gen, dtype=torch.float64) - 3)).tolist()
        got = fn(list(norms))
        try:
            got = [float(w) for w in got]
        except TypeError:
            raise AssertionError(f"case {case}: return one weight per term (a list of "
                                 f"floats); got {type(got).__name__}.") from None
        if len(got) != k:
            raise AssertionError(f"case {case}: {k} terms but {len(got)} weights.")
        inv = [1 / g for g in norms]
        want = [v / sum(inv) for v in inv]
        if all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, want, strict=True)):
            continue
        hint = ""
        prop = [g / sum(norms) for g in norms]
        weighted = [w * g for w, g in zip(got, norms, strict=True)]
        if all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(got, prop, strict=True)):
            hint = (" Your weights grow with the gradient norm: that makes the strongest "
                    "term stronger. Use the inverse of each norm.")
        elif not math.isclose(sum(got), 1.0, rel_tol=1e-6) and max(weighted) > 0 and \
                math.isclose(min(weighted), max(weighted), rel_tol=1e-6):
            hint = (f" The weighted norms are equal, but the weights sum to {sum(got):.4g}: "
                    "normalise them to sum to 1.")
        raise AssertionError(f"case {case}: gradient norms {[f'{g:.3g}' for g in norms]}: "
                             f"expected weights {[f'{w:.4g}' for w in want]}, got "
                             f"{[f'{w:.4g}' for w in got]}.{hint}")
    return f"All {n_cases} weight checks passed."
