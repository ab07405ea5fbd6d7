"""Input checks shared by the models: one clear lossbook error instead of conv2d's.

Every model's ``forward`` calls :func:`check_model_input` first, so a list, a numpy
array, an integer tensor, a wrong channel count or an empty batch is refused with a
message that says what was given and how to fix it.
"""

from __future__ import annotations

import torch


def check_model_input(x: object, model: str, channels: int, *, name: str = "x") -> None:
    """Raise TypeError/ValueError unless ``x`` is a non-empty float ``(N, channels, H, W)``."""
    if not isinstance(x, torch.Tensor):
        hint = (" Convert it with torch.from_numpy(x).float() (and add the batch and "
                "channel axes)." if hasattr(x, "__array__") else
                " Stack the images into one tensor, e.g. torch.stack(images).")
        raise TypeError(f"{model} expects a torch.Tensor of shape (N, {channels}, H, W); got "
                        f"{type(x).__name__}.{hint}")
    if x.ndim != 4 or x.shape[1] != channels:
        fix = ""
        if x.ndim == 3 and x.shape[0] == channels:
            fix = f" For a single image use {name}[None]."
        elif x.ndim == 2:
            fix = f" For a single gray image use {name}[None, None]."
        elif x.ndim == 4:
            fix = (f" This {model} was built for {channels} channel(s); build it with "
                   f"channels={x.shape[1]} or convert the images (e.g. to gray).")
        raise ValueError(f"{model} expects images of shape (N, {channels}, H, W); got "
                         f"{tuple(x.shape)}.{fix}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{model} expects floating-point images; got dtype {x.dtype}. "
                        f"Convert with {name}.float() (and divide 8-bit images by 255).")
    if x.numel() == 0:
        raise ValueError(f"{model} got an empty batch (shape {tuple(x.shape)}); give at least "
                         "one image of at least one pixel.")


def check_sizes(model: str, **values: object) -> None:
    """Constructor arguments that count things (channels, widths, layers) are ints >= 1."""
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{model}: {key} must be an int >= 1; got {value!r}.")


def check_pyramid_input(x: torch.Tensor, model: str, channels: int, levels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, channels, H, W)`` with ``2**levels | H, W``."""
    check_model_input(x, model, channels)
    m = 2**levels
    h, w = x.shape[-2:]
    if h % m or w % m:
        raise ValueError(
            f"{model} with levels={levels} needs H and W divisible by 2**levels = {m}; "
            f"got {h} x {w}. Crop or pad the input (e.g. to {h - h % m} x {w - w % m}) "
            "or use fewer levels."
        )
