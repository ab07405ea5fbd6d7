"""Checks for Chapter 9 (super-resolution): the pixel shuffle and the Y-channel PSNR."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import metrics
from ._common import as_float, diagnose
from ._common import fresh_generator as _fresh_generator

__all__ = ["check_pixel_shuffle", "check_y_psnr"]


def _shuffle_variants(t: torch.Tensor, r: int) -> dict[str, torch.Tensor]:
    """What typical wrong pixel shuffles produce on ``t`` ``(N, C r^2, H, W)``."""
    n, cr2, h, w = t.shape
    c = cr2 // (r * r)
    # sub-pixel offsets swapped: channel c r^2 + r (x mod r) + (y mod r)
    swapped = t.view(n, c, r, r, h, w).permute(0, 1, 4, 3, 5, 2).reshape(n, c, h * r, w * r)
    # channel-major grouping: channel k C + c instead of c r^2 + k
    grouped = F.pixel_shuffle(t.view(n, r * r, c, h, w).transpose(1, 2).reshape(n, cr2, h, w), r)
    return {
        "The sub-pixel offsets are swapped: channel c*r^2 + r*(y mod r) + (x mod r) fills row "
        "offset y mod r and column offset x mod r, not the other way round.": swapped,
        "The channels are grouped the wrong way: output channel c uses input channels "
        "c*r^2 ... c*r^2 + r^2 - 1 (consecutive), not c, c + C, c + 2C, ...": grouped,
    }


def check_pixel_shuffle(fn: Callable, *, n_cases: int = 5, seed: int | None = None) -> str:
    r"""Check a student's ``fn(t, r) -> tensor``: the pixel shuffle of Chapter 9.

    ``t`` has shape ``(N, C r^2, H, W)``; the answer must have shape ``(N, C, r H, r W)``
    with :math:`\mathrm{out}_{c, y, x} = t_{c r^2 + r (y \bmod r) + (x \bmod r),\ \lfloor
    y / r \rfloor,\ \lfloor x / r \rfloor}` (``torch.nn.PixelShuffle``). Cases vary ``r``
    (2 to 4), ``C`` (1 to 3) and odd sizes.
    """
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        r = int(torch.randint(2, 5, (1,), generator=gen))
        c = int(torch.randint(1, 4, (1,), generator=gen))
        h, w = (int(v) for v in torch.randint(2, 7, (2,), generator=gen))
        n = int(torch.randint(1, 3, (1,), generator=gen))
        t = torch.rand(n, c * r * r, h, w, generator=gen, dtype=torch.float64)
        want = F.pixel_shuffle(t, r)
        got = fn(t.clone(), r)
        if not isinstance(got, torch.Tensor):
            raise AssertionError(f"case {case}: return a tensor; got {type(got).__name__}.")
        if tuple(got.shape) != tuple(want.shape):
            raise AssertionError(
                f"case {case}: input {tuple(t.shape)} with r={r} must give shape "
                f"{tuple(want.shape)} (N, C, r*H, r*W) with C = {c * r * r} / r^2 = {c}; got "
                f"{tuple(got.shape)}.")
        if torch.allclose(got.double(), want, atol=1e-12):
            continue
        hint = ""
        for text, value in _shuffle_variants(t, r).items():
            if torch.allclose(got.double(), value, atol=1e-12):
                hint = " " + text
                break
        raise AssertionError(
            f"case {case}: r={r}, C={c}, LR {h}x{w}: the values are in the wrong places "
            f"(largest difference {float((got.double() - want).abs().max()):.3g}).{hint}")
    return f"All {n_cases} pixel-shuffle checks passed."


def _y_full_range(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _y_709(x: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.2125, 0.7154, 0.0721], dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def check_y_psnr(fn: Callable, *, n_cases: int = 5, seed: int | None = None) -> str:
    r"""Check a student's ``fn(x, y, shave) -> float``: PSNR on the BT.601 luma (Chapter 9).

    ``x`` (output) and ``y`` (truth) are RGB float64 tensors ``(1, 3, H, W)`` in
    ``[0, 1]``. The answer is :func:`lossbook.metrics.sr_psnr` with ``channel="y"``:
    :math:`Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255`, ``shave`` pixels removed
    from every border, then :math:`10 \log_{10}(1 / \mathrm{MSE})`.
    """
    gen = _fresh_generator(seed)
    for case in range(n_cases):
        h, w = (int(v) for v in torch.randint(20, 40, (2,), generator=gen))
        shave = int(torch.randint(2, 5, (1,), generator=gen))
        y = torch.rand(1, 3, h, w, generator=gen, dtype=torch.float64)
        # errors concentrated at the border make a forgotten shave visible
        noise = 0.02 * torch.randn(y.shape, generator=gen, dtype=torch.float64)
        noise[..., :shave, :] *= 8
        noise[..., :, -shave:] *= 8
        x = (y + noise).clamp(0, 1)
        want = float(metrics.sr_psnr(x, y, channel="y", shave=shave))
        got = as_float(fn(x.clone(), y.clone(), shave), "your PSNR")
        if math.isclose(got, want, rel_tol=0, abs_tol=1e-6):
            continue

        def p(a: torch.Tensor, b: torch.Tensor, s: int = shave) -> float:
            a, b = a[..., s:a.shape[-2] - s, s:a.shape[-1] - s], b[..., s:b.shape[-2] - s,
                                                                   s:b.shape[-1] - s]
            return float(metrics.psnr(a, b))

        yx, yy = metrics.rgb_to_y(x), metrics.rgb_to_y(y)
        mistakes = {
            "You did not shave the border: remove `shave` rows and columns on every side.":
                p(yx, yy, 0),
            "You shaved only one side of each axis (or only rows or only columns); shave "
            "all four borders.": float(metrics.psnr(yx[..., shave:, shave:],
                                                    yy[..., shave:, shave:])),
            "This is the full-range luma 0.299 R + 0.587 G + 0.114 B; SR papers use BT.601's "
            "studio-swing Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 (MATLAB's "
            "rgb2ycbcr), whose range is 219/255 of RGB's.": p(_y_full_range(x),
                                                             _y_full_range(y)),
            "These are the BT.709 (rgb2gray) weights; use BT.601's 65.481, 128.553, 24.966 "
            "(divided by 255) plus the offset 16/255.": p(_y_709(x), _y_709(y)),
            "You compared all RGB channels; convert both images to Y first.": p(x, y),
        }
        hint = diagnose(got, want, mistakes, rel=1e-6)
        raise AssertionError(
            f"case {case}: {h}x{w} RGB images, shave={shave}: expected {want:.6f} dB, got "
            f"{got:.6f} dB.{hint}")
    return f"All {n_cases} Y-channel PSNR checks passed."
