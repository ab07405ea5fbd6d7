"""A small U-Net: an encoder-decoder with skip connections at every scale."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_pyramid_input

__all__ = ["UNet"]


def _double_conv(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c_in in (cin, cout):
        layers.append(nn.Conv2d(c_in, cout, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    r"""A small U-Net (Ronneberger, Fischer & Brox 2015) for image-to-image regression.

    Encoder: a double 3x3 convolution block at ``base`` channels, then ``levels`` times
    2x2 max-pooling followed by a double convolution that doubles the channels. Decoder:
    ``levels`` times a 2x2 transposed convolution (stride 2) that halves the channels,
    concatenation with the encoder features of the same scale (the *skip connection*),
    and a double convolution. A final 1x1 convolution maps to ``out_channels``.

    Unlike the original (unpadded convolutions that shrink the image and need cropped
    skips), the convolutions are zero-padded, so the output has the input's size.
    With ``residual=True`` the network predicts a correction of its input: :math:`z + f(z)`
    (needs ``in_channels == out_channels``), which helps restoration tasks converge.

    Parameters
    ----------
    in_channels, out_channels : int
        Image channels in and out (``out_channels=None`` means ``in_channels``).
    base : int
        Channels at the finest scale; scale ``l`` has ``base * 2**l``.
    levels : int
        Number of 2x down-samplings (>= 1). ``H`` and ``W`` must be divisible by
        ``2**levels``.
    batch_norm : bool
        BatchNorm after every 3x3 convolution (default ``False``).
    residual : bool
        Return ``x + f(x)`` instead of ``f(x)`` (default ``False``).

    Shapes: ``(N, in_channels, H, W) -> (N, out_channels, H, W)``.

    Parameter counts (``sum(p.numel() for p in model.parameters())``): the defaults
    (1 channel, base 32, 3 levels, no BatchNorm) have **1,925,025** parameters;
    ``UNet(base=16, levels=2)`` has 116,753.

    References
    ----------
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: convolutional networks for biomedical
    image segmentation", MICCAI 2015, LNCS 9351:234-241.
    """

    def __init__(self, in_channels: int = 1, out_channels: int | None = None, *,
                 base: int = 32, levels: int = 3, batch_norm: bool = False,
                 residual: bool = False) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("base", base), ("levels", levels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        if residual and in_channels != out_channels:
            raise ValueError(
                f"residual=True adds the input to the output, so in_channels must equal "
                f"out_channels; got {in_channels} and {out_channels}."
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.levels, self.residual = levels, residual
        widths = [base * 2**level for level in range(levels + 1)]
        self.down = nn.ModuleList([_double_conv(in_channels, widths[0], batch_norm)])
        self.down.extend(_double_conv(widths[i], widths[i + 1], batch_norm)
                         for i in range(levels))
        self.pool = nn.MaxPool2d(2)
        self.upconv = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2)
                                    for i in reversed(range(levels)))
        self.up = nn.ModuleList(_double_conv(2 * widths[i], widths[i], batch_norm)
                                for i in reversed(range(levels)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_pyramid_input(x, "UNet", self.in_channels, self.levels)
        skips = []
        z = x
        for i, block in enumerate(self.down):
            z = block(z if i == 0 else self.pool(z))
            skips.append(z)
        skips.pop()  # the bottleneck is not a skip
        for upconv, block in zip(self.upconv, self.up, strict=True):
            z = block(torch.cat([skips.pop(), upconv(z)], dim=1))
        out = self.head(z)
        return x + out if self.residual else out
