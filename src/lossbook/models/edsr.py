"""A small EDSR: residual blocks without BatchNorm, residual scaling, sub-pixel upsampler."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EDSR", "ResidualBlock"]


class ResidualBlock(nn.Module):
    r"""EDSR's residual block: :math:`x + s\,\mathrm{conv}(\mathrm{ReLU}(\mathrm{conv}(x)))`.

    Two 3x3 convolutions, no BatchNorm (Lim et al. found that BatchNorm normalises away the
    range flexibility SR needs and costs memory), and the residual branch scaled by
    ``res_scale`` :math:`s` (0.1 in EDSR's widest model), which keeps training stable
    when many blocks add up. Shapes: ``(N, F, H, W) -> (N, F, H, W)``.
    """

    def __init__(self, features: int, res_scale: float = 1.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.conv2(F.relu(self.conv1(x)))


def _upsampler(features: int, scale: int) -> nn.Sequential:
    """EDSR's upsampler: for scale 2**k, k stages of (conv to 4F, pixel shuffle x2); for 3,
    one stage (conv to 9F, pixel shuffle x3); any other integer: one stage of r**2 F."""
    layers: list[nn.Module] = []
    if scale & (scale - 1) == 0 and scale > 1:  # a power of two
        for _ in range(scale.bit_length() - 1):
            layers += [nn.Conv2d(features, 4 * features, 3, padding=1), nn.PixelShuffle(2)]
    else:
        layers += [nn.Conv2d(features, scale**2 * features, 3, padding=1),
                   nn.PixelShuffle(scale)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    r"""A small EDSR-style super-resolution network (Lim et al. 2017).

    .. math::
        h_0 = \mathrm{conv}(x - m), \quad
        h = h_0 + \mathrm{conv}\big(B_n \circ \dots \circ B_1 (h_0)\big), \quad
        \hat y = \mathrm{conv}\big(\mathrm{PS}_r(\mathrm{conv}(h))\big) + m
                 \;[+\ \mathrm{bicubic}_r(x)]

    A head convolution, ``blocks`` :class:`ResidualBlock` s (no BatchNorm, residual branch
    scaled by ``res_scale``) with a long skip connection around them, and a sub-pixel
    upsampler (convolution to :math:`r^2 F` channels, then a pixel shuffle ``PS``; two
    x2 stages for x4) followed by a tail convolution to ``channels``. All convolutions
    but the tail's run at low resolution. EDSR subtracts the data set's mean colour
    :math:`m` at the input and adds it back at the output (DIV2K's
    ``(0.4488, 0.4371, 0.4040)``, the default here).

    ``bicubic_skip=True`` (default False) adds the bicubic enlargement of the input to
    the output, so the network only learns the *missing detail* (a global residual,
    as in VDSR, Kim et al. 2016); EDSR itself does not do this. It does not change what
    the network can represent, but it starts training from the bicubic answer instead
    of from the mean colour, so it pays off in short runs; the mean shift is then
    unnecessary and is not applied.

    The full EDSR has 32 blocks of 256 features (43 M parameters, ``res_scale=0.1``);
    its baseline 16 blocks of 64 (1.5 M, ``res_scale=1``). The defaults here, 8 blocks
    of 32, fit CPU training.

    Parameters
    ----------
    scale : int
        Upscaling factor :math:`r` >= 1 (2, 3, 4 usual; 1 keeps the size).
    channels : int
        Image channels (3 for RGB, 1 for gray).
    features : int
        Width :math:`F` of every hidden layer. Default 32.
    blocks : int
        Number of residual blocks. Default 8.
    res_scale : float
        Residual scaling :math:`s`. Default 0.1.
    mean : float or sequence of float
        :math:`m`, one value or one per channel. Default DIV2K's RGB mean (0.45 for one
        channel).
    bicubic_skip : bool
        Add the bicubic enlargement of the input (see above).

    Shapes: ``(N, channels, H, W) -> (N, channels, scale * H, scale * W)``; the output is
    not clipped.

    Parameter count (``sum(p.numel() for p in m.parameters())``), 3 channels, F=32,
    8 blocks, scale 2: **195,971**; the same at scale 4: **232,963**.

    References
    ----------
    B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, "Enhanced deep residual networks for single
    image super-resolution", CVPR Workshops (NTIRE) 2017. W. Shi et al., "Real-time single
    image and video super-resolution using an efficient sub-pixel convolutional neural
    network", CVPR 2016 (the pixel shuffle). J. Kim, J. K. Lee, K. M. Lee, "Accurate image
    super-resolution using very deep convolutional networks", CVPR 2016 (VDSR, global
    residual).
    """

    DIV2K_MEAN = (0.4488, 0.4371, 0.4040)

    def __init__(self, scale: int = 2, channels: int = 3, features: int = 32,
                 blocks: int = 8, res_scale: float = 0.1,
                 mean: float | Sequence[float] | None = None,
                 bicubic_skip: bool = False) -> None:
        super().__init__()
        for name, value, low in (("scale", scale, 1), ("channels", channels, 1),
                                 ("features", features, 1), ("blocks", blocks, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
        if mean is None:
            mean = self.DIV2K_MEAN if channels == 3 else (0.45,) * channels
        m = torch.as_tensor(mean, dtype=torch.float32).flatten()
        if m.numel() == 1:
            m = m.repeat(channels)
        if m.numel() != channels:
            raise ValueError(f"mean must have 1 or channels={channels} values; got "
                             f"{m.numel()}.")
        self.scale, self.channels, self.bicubic_skip = scale, channels, bool(bicubic_skip)
        self.register_buffer("mean", m.view(1, channels, 1, 1), persistent=False)
        self.head = nn.Conv2d(channels, features, 3, padding=1)
        self.body = nn.Sequential(*[ResidualBlock(features, res_scale) for _ in range(blocks)],
                                  nn.Conv2d(features, features, 3, padding=1))
        self.upsample = _upsampler(features, scale) if scale > 1 else nn.Identity()
        self.tail = nn.Conv2d(features, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"EDSR expects images of shape (N, {self.channels}, H, W); got "
                             f"{tuple(x.shape)}.")
        shift = 0.0 if self.bicubic_skip else self.mean
        h = self.head(x - shift)
        h = h + self.body(h)
        y = self.tail(self.upsample(h))
        if self.bicubic_skip:
            if self.scale == 1:
                return y + x
            size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
            return y + F.interpolate(x, size=size, mode="bicubic", align_corners=False)
        return y + self.mean
