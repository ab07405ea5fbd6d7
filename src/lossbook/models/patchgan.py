"""The PatchGAN discriminator: a real/fake score for every overlapping image patch."""

from __future__ import annotations

import torch
from torch import nn

from ._checks import check_model_input

__all__ = ["PatchGANDiscriminator"]

_NORMS = ("batch", "instance", "none")


class PatchGANDiscriminator(nn.Module):
    r"""PatchGAN discriminator of pix2pix (Isola et al. 2017): one logit per patch.

    A fully convolutional classifier: 4x4 convolutions with stride 2 (``n_layers`` of
    them, channels ``base, 2 base, 4 base, ...`` capped at ``8 base``), then one 4x4
    convolution with stride 1 and a final 4x4 convolution to one channel. LeakyReLU
    (slope 0.2) after every hidden convolution; normalisation after all but the first.
    Each output value judges one ``receptive_field x receptive_field`` patch of the input
    (70 x 70 for the default ``n_layers=3``: the paper's "70 x 70 PatchGAN"), so the
    discriminator penalises structure at the scale of patches, and the adversarial loss
    is the mean over patches. Outputs are logits (no sigmoid): pair them with
    ``BCEWithLogitsLoss`` or a hinge/least-squares GAN loss.

    Parameters
    ----------
    in_channels : int
        Input channels. For a conditional discriminator (pix2pix) concatenate the input
        and the (real or generated) output: ``in_channels = C_in + C_out``.
    base : int
        Channels of the first layer (64 in the paper).
    n_layers : int
        Number of stride-2 convolutions (>= 1).
    norm : {"batch", "instance", "none"}
        Normalisation layer ("batch" in the paper; "none" for WGAN-GP style penalties).

    Shapes: ``(N, in_channels, H, W) -> (N, 1, H', W')`` with, for the default
    ``n_layers=3``, ``H' = floor(H / 8) - 2`` (30 x 30 for a 256 x 256 input); ``H`` and
    ``W`` must be at least 24 (see :meth:`output_size`).

    Parameter counts (``sum(p.numel() for p in model.parameters())``): the defaults
    (1 input channel, base 64, 3 layers, BatchNorm) have **2,763,585** parameters; with
    ``in_channels=6`` (pix2pix for RGB pairs), 2,768,705.

    References
    ----------
    P. Isola, J.-Y. Zhu, T. Zhou, A. A. Efros, "Image-to-image translation with
    conditional adversarial networks", CVPR 2017.
    """

    def __init__(self, in_channels: int = 1, *, base: int = 64, n_layers: int = 3,
                 norm: str = "batch") -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("base", base),
                            ("n_layers", n_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1; got {value!r}.")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(map(repr, _NORMS))}; got {norm!r}.")
        self.in_channels, self.n_layers = in_channels, n_layers

        def block(cin: int, cout: int, stride: int, normed: bool) -> list[nn.Module]:
            use_norm = normed and norm != "none"
            # a bias before BatchNorm is redundant; pix2pix keeps it for InstanceNorm
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride=stride, padding=1,
                                                 bias=not (use_norm and norm == "batch"))]
            if use_norm:
                layers.append(nn.BatchNorm2d(cout) if norm == "batch"
                              else nn.InstanceNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        layers = block(in_channels, base, 2, normed=False)
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            layers += block(base * prev, base * mult, 2, normed=True)
        prev, mult = mult, min(2**n_layers, 8)
        layers += block(base * prev, base * mult, 1, normed=True)
        layers.append(nn.Conv2d(base * mult, 1, 4, stride=1, padding=1))
        self.body = nn.Sequential(*layers)

    @property
    def receptive_field(self) -> int:
        r"""Side of the input patch that one output value sees:
        :math:`1 + \sum_l (k_l - 1) \prod_{m < l} s_m` (70 for ``n_layers=3``)."""
        rf, jump = 1, 1
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                rf += (m.kernel_size[0] - 1) * jump
                jump *= m.stride[0]
        return rf

    def output_size(self, size: int) -> int:
        """Output side for an input side ``size`` (each 4x4 conv with padding 1 maps
        ``n -> floor((n - 2) / s) + 1``)."""
        for m in self.body:
            if isinstance(m, nn.Conv2d):
                size = (size + 2 - 4) // m.stride[0] + 1
        return size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_model_input(x, "PatchGANDiscriminator", self.in_channels)
        h, w = x.shape[-2:]
        if self.output_size(h) < 1 or self.output_size(w) < 1:
            need = next(s for s in range(1, 4096) if self.output_size(s) >= 1)
            raise ValueError(
                f"input {h} x {w} is too small for a PatchGAN with n_layers={self.n_layers}: "
                f"H and W must be at least {need}. Use larger images or fewer layers."
            )
        return self.body(x)
