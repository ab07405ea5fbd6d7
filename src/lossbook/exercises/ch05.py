"""Checks for Chapter 5 (gradients and TV): anisotropic TV by hand, translating a TV weight."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..losses import total_variation
from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_anisotropic_tv", "check_tv_weight"]


def check_anisotropic_tv(fn: Callable, *, n_cases: int = 5, seed: int | None = None) -> str:
    r"""Check ``fn(x) -> tensor (N,)``: the anisotropic total variation of each image,

    .. math:: \mathrm{TV}(x) = \sum_{c,i,j} |x_{c,i,j+1} - x_{c,i,j}| + |x_{c,i+1,j} - x_{c,i,j}|

    over the pixels that HAVE a right / lower neighbour (no wrap-around), summed over
    channels. ``x`` is float64 ``(N, C, H, W)`` with ``H != W``. The reference is
    ``total_variation(x, "anisotropic", reduction="none")``.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        n, c = (int(v) for v in torch.randint(1, 4, (2,), generator=gen))
        h, w = (int(v) for v in torch.randint(3, 12, (2,), generator=gen))
        w = w + 1 if w == h else w
        x = torch.rand(n, c, h, w, generator=gen, dtype=torch.float64)
        want = total_variation(x, "anisotropic", reduction="none")
        got = fn(x.clone())
        if not isinstance(got, torch.Tensor) or got.shape != (n,):
            raise AssertionError(
                f"case {case}: return one value per image, a tensor of shape ({n},); got "
                + (f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor)
                   else type(got).__name__) + "."
            )
        got = got.to(torch.float64)
        if not torch.allclose(got, want, rtol=1e-9, atol=1e-9):
            dx = (x[..., :, 1:] - x[..., :, :-1]).abs().sum((1, 2, 3))
            dy = (x[..., 1:, :] - x[..., :-1, :]).abs().sum((1, 2, 3))
            wrap = ((torch.roll(x, -1, -1) - x).abs() + (torch.roll(x, -1, -2) - x).abs()
                    ).sum((1, 2, 3))
            iso = torch.sqrt((x[..., :-1, 1:] - x[..., :-1, :-1]) ** 2
                             + (x[..., 1:, :-1] - x[..., :-1, :-1]) ** 2).sum((1, 2, 3))
            hint = ""
            for name, value in (
                ("You averaged over pixels; TV is a SUM of absolute differences.",
                 want / (h * w)),
                ("Your differences wrap around the border (torch.roll): the last column and "
                 "row have no right/lower neighbour.", wrap),
                ("That is the isotropic form sqrt(dx^2 + dy^2); the anisotropic one adds "
                 "|dx| + |dy|.", iso),
                ("Only one direction counted: add the horizontal AND vertical differences.",
                 dx), ("Only one direction counted: add the horizontal AND vertical "
                       "differences.", dy),
            ):
                if torch.allclose(got, value, rtol=1e-6) and not torch.allclose(value, want):
                    hint = " " + name
                    break
            raise AssertionError(
                f"case {case}: x of shape {(n, c, h, w)}: expected {want.tolist()}, got "
                f"{got.tolist()}.{hint}"
            )
    return f"All {n_cases} total-variation checks passed."


def check_tv_weight(fn: Callable, *, n_cases: int = 6, seed: int | None = None) -> str:
    r"""Check ``fn(w_sum, n, h, w) -> w_mean``: translate a TV weight between reductions.

    A script adds ``w_sum * TV_sum`` where ``TV_sum`` sums the anisotropic TV over a batch
    of ``n`` images of ``h x w`` pixels (``tf.reduce_sum(tf.image.total_variation(...))``).
    The same objective with ``total_variation(x, reduction="mean")`` (each image's TV
    divided by :math:`hw`, then averaged over the batch) needs

    .. math:: w_\text{mean} = w_\text{sum}\; n\, h\, w .

    Verified numerically on a random batch as well.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        n = int(torch.randint(1, 9, (1,), generator=gen))
        h, w = (int(v) for v in torch.randint(4, 64, (2,), generator=gen))
        w_sum = float(10 ** torch.empty(1).uniform_(-7, -3, generator=gen))
        want = w_sum * n * h * w
        got = as_float(fn(w_sum, n, h, w), "the weight")
        x = torch.rand(n, 1, h, w, generator=gen, dtype=torch.float64)
        lhs = w_sum * float(total_variation(x, "anisotropic", reduction="sum"))
        rhs = got * float(total_variation(x, "anisotropic", reduction="mean"))
        if not close(got, want, rel=1e-9) or not close(lhs, rhs, rel=1e-9):
            hint = diagnose(got, want, {
                "The mean reduction divides by the pixels, so the weight must be MULTIPLIED "
                "by n h w, not divided.": w_sum / (n * h * w),
                "The batch counts too: reduce_sum adds the n images' TVs, our mean averages "
                "them (a factor n).": w_sum * h * w,
                "The mean reduction also divides by the h w pixels of each image.": w_sum * n,
                "The weight changes with the reduction: it is not the same number.": w_sum,
            })
            raise AssertionError(
                f"case {case}: w_sum={w_sum:.3g}, n={n}, h={h}, w={w}: expected "
                f"{want:.6g}, got {got:.6g} (objectives {lhs:.6g} vs {rhs:.6g}).{hint}"
            )
    return f"All {n_cases} TV-weight checks passed."
