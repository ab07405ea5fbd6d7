"""A convolutional autoencoder: squeeze the image through a small code, then rebuild it."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_pyramid_input

__all__ = ["ConvAutoencoder"]


class ConvAutoencoder(nn.Module):
    r"""A convolutional autoencoder with a spatial bottleneck and no skip connections.

    Encoder: ``levels`` 3x3 convolutions with stride 2 (each halves ``H`` and ``W`` and
    doubles the channels, starting from ``base``), each followed by ReLU, then a 1x1
    convolution to ``latent_channels``. Decoder: a 1x1 convolution back, ``levels``
    transposed 4x4 convolutions with stride 2 (each doubling the size), ReLU between
    them, and a final 3x3 convolution with a sigmoid so the output lies in ``(0, 1)``.

    The code has ``latent_channels * H * W / 4**levels`` numbers: with the defaults and
    a 64 x 64 gray image, 16 x 8 x 8 = 1,024 numbers for 4,096 pixels. Everything the
    decoder draws must pass through it, so the reconstruction loss decides which details
    survive (Chapter 8 onwards).

    Parameters
    ----------
    channels : int
        Image channels in and out.
    base : int
        Channels after the first down-sampling.
    levels : int
        Number of 2x down-samplings (>= 1); ``H`` and ``W`` must be divisible by
        ``2**levels``.
    latent_channels : int
        Channels of the code.

    Shapes: ``(N, channels, H, W) -> (N, channels, H, W)``; :meth:`encode` gives
    ``(N, latent_channels, H / 2**levels, W / 2**levels)``.

    Parameter counts (``sum(p.numel() for p in model.parameters())``): the defaults
    (1 channel, base 32, 3 levels, 16 latent channels) have **277,553** parameters.

    References
    ----------
    G. E. Hinton, R. R. Salakhutdinov, "Reducing the dimensionality of data with neural
    networks", Science 313(5786):504-507, 2006; I. Goodfellow, Y. Bengio, A. Courville,
    *Deep Learning*, MIT Press 2016, chapter 14.
    """

    def __init__(self, channels: int = 1, *, base: int = 32, levels: int = 3,
                 latent_channels: int = 16) -> None:
        super().__init__()
        for name, value in (("channels", channels), ("base", base), ("levels", levels),
                            ("latent_channels", latent_channels)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        self.channels, self.levels = channels, levels
        widths = [base * 2**level for level in range(levels)]
        enc: list[nn.Module] = []
        c = channels
        for w in widths:
            enc += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = w
        enc.append(nn.Conv2d(c, latent_channels, 1))
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = [nn.Conv2d(latent_channels, c, 1), nn.ReLU(inplace=True)]
        for w in reversed([base, *widths[:-1]]):
            dec += [nn.ConvTranspose2d(c, w, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
            c = w
        dec += [nn.Conv2d(c, channels, 3, padding=1), nn.Sigmoid()]
        self.decoder = nn.Sequential(*dec)

    def _check(self, x: torch.Tensor) -> None:
        check_pyramid_input(x, "ConvAutoencoder", self.channels, self.levels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code ``(N, latent_channels, H / 2**levels, W / 2**levels)``."""
        self._check(x)
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """An image ``(N, channels, H, W)`` in ``(0, 1)`` from a code."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
