"""Input checks shared by every loss and metric.

Each check raises ``TypeError`` or ``ValueError`` with a message that says
what was given, what is expected and how to fix it. The checks are cheap
(shape and dtype look-ups) except :func:`check_finite`, which reads the data
once.
"""

from __future__ import annotations

import numbers

import torch

try:  # numpy's bool is not a subclass of bool; numbers.Real would accept it otherwise
    from numpy import bool_ as np_bool
except ImportError:  # pragma: no cover - numpy comes with torch's usual installs
    np_bool = bool

__all__ = [
    "check_image",
    "check_pair",
    "check_data_range",
    "check_finite",
    "check_reduction",
    "check_number",
    "check_int",
    "check_finite_result",
]


def _describe(x: object) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    return f"an object of type {type(x).__name__}"


def check_image(x: object, name: str = "x", *, ndim: int = 4) -> torch.Tensor:
    """Check that ``x`` is a floating-point image tensor of ``ndim`` dimensions.

    Parameters
    ----------
    x : object
        The value to check; expected a ``torch.Tensor`` of shape ``(N, C, H, W)``.
    name : str
        The argument's name, used in the error message.
    ndim : int
        The expected number of dimensions (4 for image batches).

    Returns
    -------
    torch.Tensor
        ``x`` itself, so the call can be used inline.
    """
    if not isinstance(x, torch.Tensor):
        hint = ""
        if hasattr(x, "__array__"):
            hint = f" Convert it with torch.as_tensor({name}, dtype=torch.float32)."
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (N, C, H, W); got {_describe(x)}.{hint}"
        )
    if x.ndim != ndim:
        fix = ""
        if ndim == 4 and x.ndim == 2:
            fix = f" For a single gray image use {name}[None, None]."
        elif ndim == 4 and x.ndim == 3:
            fix = f" For a single image use {name}[None] (or {name}.unsqueeze(0))."
        raise ValueError(
            f"{name} must have {ndim} dimensions (N, C, H, W); got {x.ndim} "
            f"(shape {tuple(x.shape)}).{fix}"
        )
    if not torch.is_floating_point(x):
        raise TypeError(
            f"{name} must be a floating-point tensor; got dtype {x.dtype}. "
            f"Convert it with {name}.float() (and divide 8-bit images by 255, "
            "or pass data_range=255)."
        )
    if x.numel() == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(x.shape)}); every image batch needs at least one "
            "image, one channel and one pixel. Check the slicing or cropping that made it."
        )
    return x


def check_pair(x: object, y: object, names: tuple[str, str] = ("x", "y")) -> None:
    """Check that ``x`` and ``y`` are image batches of the same shape and dtype."""
    check_image(x, names[0])
    check_image(y, names[1])
    if x.shape != y.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape; got {tuple(x.shape)} "
            f"and {tuple(y.shape)}. Resize or crop one of them so that they match."
        )
    if x.dtype != y.dtype:
        raise TypeError(
            f"{names[0]} and {names[1]} must have the same dtype; got {x.dtype} and {y.dtype}. "
            f"Convert one with .to({x.dtype})."
        )
    if x.device != y.device:
        raise ValueError(
            f"{names[0]} and {names[1]} must be on the same device; got {x.device} and "
            f"{y.device}. Move one with .to({names[0]}.device)."
        )


def check_data_range(data_range: object) -> float:
    """Check that ``data_range`` is a positive finite number and return it as float."""
    if isinstance(data_range, torch.Tensor):
        if data_range.numel() != 1:
            raise ValueError(
                f"data_range must be a single number; got a tensor of shape "
                f"{tuple(data_range.shape)}."
            )
        data_range = data_range.item()
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float)):
        raise TypeError(
            f"data_range must be a number (1.0 for images in [0, 1], 255 for 8-bit images); "
            f"got {type(data_range).__name__}."
        )
    value = float(data_range)
    if not value > 0 or value == float("inf"):
        raise ValueError(
            f"data_range must be positive and finite (the width of the value range: 1.0 for "
            f"images in [0, 1], 255 for 8-bit images); got {data_range}."
        )
    return value


def check_finite(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` if ``x`` holds NaN or infinite values."""
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(
            f"{name} holds {n_nan} NaN and {n_inf} infinite values out of {x.numel()}; "
            "every value must be finite. Look for a division by zero or a diverging "
            "optimisation upstream, or clean the input with torch.nan_to_num."
        )


REDUCTIONS = ("mean", "none")


def check_reduction(reduction: object, allowed: tuple[str, ...] = REDUCTIONS) -> str:
    """Check that ``reduction`` is one of ``allowed``."""
    if reduction not in allowed:
        raise ValueError(
            f"reduction must be one of {', '.join(repr(a) for a in allowed)}; got {reduction!r}. "
            "'mean' gives one scalar for the batch, 'none' one value per image (shape (N,))."
        )
    return reduction  # type: ignore[return-value]


def check_number(
    value: object,
    name: str,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    finite: bool = True,
    low: float | None = None,
    high: float | None = None,
    meaning: str = "",
) -> float:
    """Check that ``value`` is a real number with the stated properties; return a float.

    One helper for every scalar parameter (``eps``, ``sigma``, ``delta``, ``k1`` ...):
    ``bool`` and non-numbers raise ``TypeError``; NaN always raises ``ValueError``;
    infinity raises unless ``finite=False`` (``+inf`` passes a plain ``not v > 0``
    check, which is why this helper exists). A one-element tensor is accepted.

    Parameters
    ----------
    value : object
        The value to check.
    name : str
        The argument's name, used in the message.
    positive, nonnegative : bool
        Require ``value > 0`` or ``value >= 0``.
    finite : bool
        Require a finite value (default).
    low, high : float, optional
        Inclusive bounds.
    meaning : str
        What the parameter means (appended to the message, e.g. "the noise level").
    """
    what = f" ({meaning})" if meaning else ""
    kind = ("a positive" if positive else "a non-negative" if nonnegative else "a") + (
        " finite" if finite else "")
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        value = value.item()
    if isinstance(value, (bool, np_bool)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {kind} number{what}; got {_describe(value)}.")
    v = float(value)
    bad = (v != v or (finite and v in (float("inf"), float("-inf")))
           or (positive and not v > 0) or (nonnegative and not v >= 0))
    if bad:
        raise ValueError(f"{name} must be {kind} number{what}; got {value!r}.")
    if low is not None and v < low:
        raise ValueError(f"{name} must be at least {low}{what}; got {value!r}.")
    if high is not None and v > high:
        raise ValueError(f"{name} must be at most {high}{what}; got {value!r}.")
    return v


def check_int(value: object, name: str, *, minimum: int | None = None, meaning: str = "") -> int:
    """Check that ``value`` is an ``int`` (not a ``bool``) of at least ``minimum``."""
    what = f" ({meaning})" if meaning else ""
    if isinstance(value, (bool, np_bool)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}{what} must be an int; got {_describe(value)}"
                        + (f" {value!r}" if isinstance(value, (float, str)) else "") + ".")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}{what} must be at least {minimum}; got {value}.")
    return int(value)


def check_finite_result(out: torch.Tensor, name: str, hint: str = "") -> torch.Tensor:
    """Raise ``ValueError`` if a computed result is NaN or infinite (e.g. overflow).

    Inputs are checked to be finite first; a non-finite result then means the values
    were too large (or too small) for the dtype: the message says so instead of
    returning ``inf`` or NaN silently.
    """
    if not bool(torch.isfinite(out).all()):
        raise ValueError(
            f"{name} is not finite ({out.flatten()[:4].tolist()}...) although its inputs "
            f"are: the values overflow {out.dtype}. "
            + (hint or "Rescale the images to their data range (e.g. [0, 1]).")
        )
    return out
