"""Shared helpers of the exercise checks: fresh random cases and feedback.

Every check draws its cases from :func:`fresh_generator` (a new seed each call unless
one is given), so an answer cannot be tuned to fixed numbers.
"""

from __future__ import annotations

import secrets

import torch

__all__ = ["fresh_generator", "as_float", "close", "diagnose"]


def fresh_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with fresh OS randomness when ``None``."""
    return torch.Generator().manual_seed(secrets.randbits(31) if seed is None else seed)


def as_float(value: object, what: str) -> float:
    """A student's number as a Python float, with a clear error for anything else."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise AssertionError(f"{what} should be a single number; got a tensor of shape "
                                 f"{tuple(value.shape)}.")
        value = value.item()
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AssertionError(f"{what} should be a number; got {type(value).__name__}.") from None


def close(got: float, want: float, *, rel: float = 1e-6, abs_: float = 1e-9) -> bool:
    """``got`` within ``rel`` (relative) or ``abs_`` (absolute) of ``want``."""
    return abs(got - want) <= max(abs_, rel * abs(want))


def diagnose(got: float, want: float, mistakes: dict[str, float], *, rel: float = 1e-4) -> str:
    """The hint of the first typical mistake whose value ``got`` matches, else ``""``.

    ``mistakes`` maps a hint to the value that mistake would produce on this case.
    """
    for hint, value in mistakes.items():
        if close(got, value, rel=rel, abs_=1e-12) and not close(value, want, rel=rel,
                                                               abs_=1e-12):
            return " " + hint
    return ""
