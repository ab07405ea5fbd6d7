"""Input checks shared by the encoder-decoder models (U-Net, autoencoder)."""

from __future__ import annotations

import torch


def check_pyramid_input(x: torch.Tensor, model: str, channels: int, levels: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(N, channels, H, W)`` with ``2**levels | H, W``."""
    m = 2**levels
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{model} expects images of shape (N, {channels}, H, W); got "
                         f"{tuple(x.shape)}.")
    h, w = x.shape[-2:]
    if h % m or w % m:
        raise ValueError(
            f"{model} with levels={levels} needs H and W divisible by 2**levels = {m}; "
            f"got {h} x {w}. Crop or pad the input (e.g. to {h - h % m} x {w - w % m}) "
            "or use fewer levels."
        )
