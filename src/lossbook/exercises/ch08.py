"""Checks for Chapter 8 (feature, texture and adversarial losses): the Gram matrix and
the discriminator's loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..losses import adversarial, perceptual
from ._common import fresh_generator as _fresh_generator

__all__ = ["check_gram_matrix", "check_discriminator_loss"]


def _close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-6) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol * 1e-3))


def check_gram_matrix(fn: Callable, *, n_cases: int = 5, seed: int | None = None) -> str:
    """Check a student's ``fn(features) -> (N, C, C)`` Gram matrix (Chapter 8).

    ``features`` is a float64 ``(N, C, H, W)`` tensor of random (non-negative, like ReLU
    outputs) values with random sizes; the answer must equal
    :func:`lossbook.losses.gram_matrix`, :math:`F F^\\top / (C H W)`.
    """
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        n, c, h, w = (int(torch.randint(lo, hi, (1,), generator=gen))
                      for lo, hi in ((1, 4), (2, 9), (3, 12), (3, 12)))
        f = torch.rand(n, c, h, w, generator=gen, dtype=torch.float64)
        want = perceptual.gram_matrix(f)
        got = fn(f.clone())
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"case {case}: return a tensor; got {type(got).__name__}.")
        if got.shape != want.shape:
            hint = ""
            if tuple(got.shape) == (n, h * w, h * w):
                hint = " You computed F^T F (positions x positions); the Gram matrix is F F^T."
            elif tuple(got.shape) == (c, c):
                hint = " Keep the batch dimension: one C x C matrix per image (torch.bmm)."
            raise AssertionError(f"case {case}: features of shape {(n, c, h, w)} need a Gram "
                                 f"matrix of shape {tuple(want.shape)}; got "
                                 f"{tuple(got.shape)}.{hint}")
        got = got.to(want.dtype)
        if not _close(got, want):
            hint = ""
            for factor, what in ((c * h * w, "divide by C * H * W"),
                                 (c, "divide by C as well as by H * W"),
                                 (h * w, "divide by H * W as well as by C")):
                if _close(got, want * factor):
                    hint = f" Your values are {factor} times too large: {what}."
            if _close(got, want / (c * h * w)):
                hint = " You divided by (C H W) twice."
            raise AssertionError(f"case {case}: features of shape {(n, c, h, w)}: your Gram "
                                 f"matrix differs from F F^T / (C H W) (largest difference "
                                 f"{float((got - want).abs().max()):.3g}).{hint}")
    return f"All {n_cases} Gram-matrix checks passed."


def check_discriminator_loss(fn: Callable, kind: str = "nonsaturating", *, n_cases: int = 5,
                             seed: int | None = None) -> str:
    """Check a student's ``fn(real_logits, fake_logits) -> scalar`` discriminator loss.

    ``kind`` is ``"nonsaturating"`` (binary cross-entropy on logits), ``"hinge"`` or
    ``"lsgan"``; logits are float64 PatchGAN-like maps ``(N, 1, h, w)``, and the answer
    must equal :func:`lossbook.losses.discriminator_loss` (mean over all logits).
    """
    if kind not in ("nonsaturating", "hinge", "lsgan"):
        raise ValueError(f"kind must be 'nonsaturating', 'hinge' or 'lsgan'; got {kind!r}.")
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        shape = (int(torch.randint(1, 5, (1,), generator=gen)), 1,
                 int(torch.randint(2, 7, (1,), generator=gen)),
                 int(torch.randint(2, 7, (1,), generator=gen)))
        real = 1.0 + 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
        fake = -0.5 + 2.0 * torch.randn(shape, generator=gen, dtype=torch.float64)
        want = float(adversarial.discriminator_loss(real, fake, kind=kind))
        got = float(fn(real.clone(), fake.clone()))
        if abs(got - want) <= 1e-6 * max(1.0, abs(want)):
            continue
        hint = ""
        swapped = float(adversarial.discriminator_loss(fake, real, kind=kind))
        n = real.numel()
        if abs(got - swapped) <= 1e-6 * max(1.0, abs(swapped)):
            hint = " You swapped real and fake: real logits should be pushed up, fakes down."
        elif abs(got - want * n) <= 1e-6 * max(1.0, abs(want * n)):
            hint = " You summed over the logits; take the mean (over every patch and image)."
        elif kind == "nonsaturating":
            sig = float(adversarial.discriminator_loss(torch.sigmoid(real), torch.sigmoid(fake)))
            if abs(got - sig) <= 1e-6 * max(1.0, abs(sig)):
                hint = (" You applied a sigmoid before a loss that expects logits "
                        "(BCEWithLogits / softplus already include it).")
        raise AssertionError(f"case {case}: logits of shape {shape}: expected {want:.6f}, got "
                             f"{got:.6f} for the {kind} discriminator loss.{hint}")
    return f"All {n_cases} {kind} discriminator-loss checks passed."
