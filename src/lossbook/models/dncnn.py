"""DnCNN: a plain deep CNN that denoises by predicting the noise (residual learning)."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_model_input

__all__ = ["DnCNN"]


class DnCNN(nn.Module):
    r"""The denoising CNN of Zhang et al. (2017), returning the clean estimate.

    The network :math:`R` predicts the *noise* (the residual) and the model returns the
    input minus it:

    .. math:: \hat{x} = y - R(y)

    :math:`R` is ``depth`` 3x3 convolutions of ``width`` channels: Conv + ReLU, then
    ``depth - 2`` blocks of Conv + BatchNorm + ReLU, then a final Conv back to
    ``channels``. Convolutions followed by BatchNorm have no bias (BatchNorm's shift
    replaces it). The receptive field is ``2 * depth + 1`` pixels (35 for depth 17).
    Zero padding keeps the size, so any ``H, W`` works, odd ones included.

    Parameters
    ----------
    channels : int
        Image channels in and out (1 gray, 3 colour).
    depth : int
        Number of convolutions (>= 2). The paper uses 17 for known-noise-level Gaussian
        denoising (DnCNN-S) and 20 for blind denoising (DnCNN-B).
    width : int
        Feature channels of the hidden layers (64 in the paper).
    batch_norm : bool
        BatchNorm in the middle blocks (the paper's choice). Without it, the middle
        convolutions get a bias instead.

    Shapes: ``(N, channels, H, W) -> (N, channels, H, W)``.

    Parameter counts (``sum(p.numel() for p in model.parameters())``):
    the defaults (1, 17, 64, BatchNorm) have **556,097** parameters
    (640 + 15 x 36,992 + 577); ``batch_norm=False`` has 555,137; a light
    ``DnCNN(depth=8, width=32)`` has 56,289.

    Notes
    -----
    The paper initialises with He/Kaiming (orthogonal in the authors' code) and trains
    with Adam on 40x40 patches at :math:`\sigma \in \{15, 25, 50\}`; this module keeps
    PyTorch's default initialisation except for zeroing the last layer's bias.

    References
    ----------
    K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser: residual
    learning of deep CNN for image denoising", IEEE TIP 26(7):3142-3155, 2017.
    """

    def __init__(self, channels: int = 1, depth: int = 17, width: int = 64, *,
                 batch_norm: bool = True) -> None:
        super().__init__()
        for name, value, low in (("channels", channels, 1), ("depth", depth, 2),
                                 ("width", width, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}; got {value!r}.")
        self.channels, self.depth, self.width = channels, depth, width
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(width, width, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU(inplace=True))
        layers.append(nn.Conv2d(width, channels, 3, padding=1))
        self.body = nn.Sequential(*layers)
        nn.init.zeros_(self.body[-1].bias)

    def residual(self, y: torch.Tensor) -> torch.Tensor:
        """The predicted noise :math:`R(y)`, shape like ``y``."""
        return self.body(y)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        check_model_input(y, "DnCNN", self.channels, name="y")
        return y - self.body(y)
