"""Shared helpers of the exercise checks: fresh random cases and feedback.

Every check draws its cases from :func:`fresh_generator` (a new seed each call unless
one is given), so an answer cannot be tuned to fixed numbers.
"""

from __future__ import annotations

import secrets

import torch

__all__ = ["fresh_generator"]


def fresh_generator(seed: int | None) -> torch.Generator:
    """A CPU generator seeded with ``seed``, or with fresh OS randomness when ``None``."""
    return torch.Generator().manual_seed(secrets.randbits(31) if seed is None else seed)
