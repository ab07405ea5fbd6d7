"""ESPCN: super-resolution with a sub-pixel convolution at the end."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_model_input, check_sizes

__all__ = ["ESPCN"]


class ESPCN(nn.Module):
    r"""Efficient sub-pixel CNN (Shi et al. 2016): all convolutions at low resolution.

    Three convolutions run on the low-resolution input; the last one outputs
    :math:`C r^2` channels, which a *pixel shuffle* rearranges into an image :math:`r`
    times larger:

    .. math:: \mathrm{PS}(T)_{c,\; y,\; x} =
       T_{c r^2 + r\,(y \bmod r) + (x \bmod r),\; \lfloor y/r \rfloor,\; \lfloor x/r \rfloor}

    (``torch.nn.PixelShuffle``). Layers as in the paper: 5x5 conv to 64 channels, tanh;
    3x3 conv to 32, tanh; 3x3 conv to :math:`C r^2`; pixel shuffle. Zero padding keeps
    the size at every step, so any ``H, W`` works, odd ones included. The output is not
    clipped.

    Parameters
    ----------
    scale : int
        Upscaling factor :math:`r` (2, 3 or 4 in the paper; any int >= 1 works).
    channels : int
        Image channels (the paper super-resolves the luma channel only: 1).
    features : (int, int)
        Channels of the two hidden layers (64, 32).

    Shapes: ``(N, channels, H, W) -> (N, channels, scale * H, scale * W)``.

    Parameter counts (``sum(p.numel() for p in model.parameters())``), 1 channel:
    scale 2: **21,284**; scale 3: **22,729**; scale 4: **24,752**
    (1,664 + 18,464 + (288 + 1) r^2).

    References
    ----------
    W. Shi, J. Caballero, F. Huszar, J. Totz, A. P. Aitken, R. Bishop, D. Rueckert,
    Z. Wang, "Real-time single image and video super-resolution using an efficient
    sub-pixel convolutional neural network", CVPR 2016.
    """

    def __init__(self, scale: int = 2, channels: int = 1,
                 features: tuple[int, int] = (64, 32)) -> None:
        super().__init__()
        for name, value in (("scale", scale), ("channels", channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        if not isinstance(features, (tuple, list)) or len(features) != 2:
            raise ValueError(f"features must be a pair of ints (f1, f2); got {features!r}.")
        f1, f2 = features
        check_sizes("ESPCN", **{"features[0]": f1, "features[1]": f2})
        self.scale, self.channels = scale, channels
        self.body = nn.Sequential(
            nn.Conv2d(channels, f1, 5, padding=2), nn.Tanh(),
            nn.Conv2d(f1, f2, 3, padding=1), nn.Tanh(),
            nn.Conv2d(f2, channels * scale**2, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_model_input(x, "ESPCN", self.channels)
        return self.shuffle(self.body(x))
