"""The smallest useful image-to-image network, for quick demonstrations."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_model_input, check_sizes

__all__ = ["TinyCNN"]


class TinyCNN(nn.Module):
    """A plain stack of 3x3 convolutions with ReLU, predicting a correction to the input.

    ``out = x + f(x)`` where ``f`` has ``depth`` convolutions of ``width`` channels, so its
    receptive field is ``2 * depth + 1`` pixels wide. With ``residual=False`` the output
    is ``f(x)`` itself: the network must learn the whole mapping, which matters in
    experiments where the input already is (or is close to) one of the answers being
    compared (an untrained residual network returns its input).

    Parameters
    ----------
    channels : int
        Image channels in and out.
    width : int
        Feature channels of the hidden layers.
    depth : int
        Number of convolutions (>= 2).
    residual : bool
        Add the input to the output (default True).

    Shapes: ``(N, channels, H, W) -> (N, channels, H, W)``. With the defaults
    (1, 32, 5) it has 28,353 parameters.
    """

    def __init__(self, channels: int = 1, width: int = 32, depth: int = 5,
                 residual: bool = True) -> None:
        super().__init__()
        if not isinstance(residual, bool):
            raise TypeError(f"TinyCNN: residual must be True or False; got {residual!r}.")
        self.residual = residual
        check_sizes("TinyCNN", channels=channels, width=width, depth=depth)
        if depth < 2:
            raise ValueError(f"TinyCNN: depth must be >= 2; got {depth}.")
        self.channels = channels
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_model_input(x, "TinyCNN", self.channels)
        return x + self.body(x) if self.residual else self.body(x)
