"""Checks for Chapter 10 (signal to image): the travel time of a straight ray through a disc."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ._common import as_float, close, diagnose, fresh_generator

__all__ = ["check_disc_travel_time"]


def _chord(offset: float, radius: float) -> float:
    return 2.0 * math.sqrt(radius**2 - offset**2) if offset < radius else 0.0


def check_disc_travel_time(fn: Callable, *, n_cases: int = 8, seed: int | None = None) -> str:
    r"""Check ``fn(distance, offset, disc_radius, speed_in, speed_out) -> seconds``.

    A straight ray of length ``distance`` (m) crosses a medium of speed ``speed_out``
    (m/s) and passes at ``offset`` (m) from the centre of a disc of radius
    ``disc_radius`` and speed ``speed_in``, which lies between its two ends. Travel time
    is the integral of the slowness along the ray:

    .. math:: t = \frac{D - \ell}{c_\text{out}} + \frac{\ell}{c_\text{in}}, \qquad
              \ell = 2\sqrt{r^2 - b^2}\ \text{if}\ b < r,\ \text{else}\ 0.

    Cases include rays that miss the disc (``offset >= disc_radius``) and speeds of soft
    tissue, fat and water (1400-1650 m/s). Tolerance: 1e-9 relative.
    """
    gen = fresh_generator(seed)
    for case in range(n_cases):
        u = torch.rand(5, generator=gen, dtype=torch.float64).tolist()
        distance = 0.05 + 0.05 * u[0]
        radius = 0.003 + 0.012 * u[1]
        offset = radius * (1.3 * u[2] if case % 4 else 1.2 + 0.5 * u[2])  # every 4th misses
        c_in, c_out = 1400 + 250 * u[3], 1400 + 250 * u[4]
        chord = _chord(offset, radius)
        want = (distance - chord) / c_out + chord / c_in
        got = as_float(fn(distance, offset, radius, c_in, c_out), "the travel time")
        if not math.isfinite(got):
            raise AssertionError(
                f"case {case}: got {got}. For a ray that misses the disc (offset {offset:.4g} m "
                f">= radius {radius:.4g} m) the square root is of a negative number: the chord "
                "is 0 there."
            )
        if close(got, want, rel=1e-9, abs_=1e-15):
            continue
        half = chord / 2
        mean_speed = (chord * c_in + (distance - chord) * c_out) / distance
        hint = diagnose(got, want, {
            "Your chord is half as long as it should be: it is 2 sqrt(r^2 - b^2).":
                (distance - half) / c_out + half / c_in,
            "You added the time inside the disc without removing that stretch from the "
            "outside part: the ray spends D - chord in the background.":
                distance / c_out + chord / c_in,
            "You averaged the SPEEDS along the ray; travel time adds up the SLOWNESS 1/c "
            "(the harmonic, not the arithmetic, mean speed).":
                distance / mean_speed,
            "You used the disc's diameter for every ray; the chord depends on the offset.":
                (distance - 2 * radius) / c_out + 2 * radius / c_in,
            "You swapped the two speeds.": (distance - chord) / c_in + chord / c_out,
            "That is the time in the homogeneous background only: the disc is missing.":
                distance / c_out,
            "Seconds, please: your answer looks like microseconds.": want * 1e6,
        }, rel=1e-8)
        raise AssertionError(
            f"case {case}: D={distance:.4g} m, offset {offset:.4g} m, disc radius "
            f"{radius:.4g} m, speeds {c_in:.1f} (in) / {c_out:.1f} (out) m/s: expected "
            f"{want:.9e} s, got {got:.9e} s.{hint}"
        )
    return f"All {n_cases} travel-time checks passed (rays through and past the disc)."
