r"""Feature (perceptual), texture (Gram) and content + style losses.

A feature loss compares two images through the activations :math:`\phi_l` of a fixed
network (VGG16 in torchvision's layout, :mod:`lossbook.models.vgg`) instead of pixel by
pixel:

.. math:: \mathcal{L}_{feat}(x, y) = \sum_l w_l \, \frac{1}{C_l H_l W_l}
          \big\| \phi_l(x) - \phi_l(y) \big\|_p^p, \qquad p \in \{1, 2\}

(Johnson et al. 2016 use :math:`p = 2` at ``relu2_2``; SRGAN a deep layer). A texture
loss compares the *Gram matrices* of the features, the channel-by-channel correlations
averaged over positions:

.. math:: G_l(x) = \frac{F_l F_l^\top}{C_l H_l W_l} \in \mathbb{R}^{C_l \times C_l},
          \qquad \mathcal{L}_{tex}(x, y) = \sum_l w_l \big\| G_l(x) - G_l(y) \big\|_F^2,

where :math:`F_l` is :math:`\phi_l(x)` reshaped to :math:`C_l \times H_l W_l`. Because
the Gram matrix sums over positions it ignores *where* features occur: any rearrangement
of the feature positions leaves it unchanged (Gatys, Ecker, Bethge 2015).

Every function takes images ``(N, C, H, W)`` in ``[0, 1]`` (1 or 3 channels: the network
repeats gray to RGB and applies the ImageNet normalisation itself) and returns a scalar,
or one value per image with ``reduction="none"``. The feature network is frozen: the
gradient flows to the images only.

References
----------
L. A. Gatys, A. S. Ecker, M. Bethge, "Texture synthesis using convolutional neural
networks", NeurIPS 2015.
J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual losses for real-time style transfer and
super-resolution", ECCV 2016.
C. Ledig et al., "Photo-realistic single image super-resolution using a generative
adversarial network" (SRGAN), CVPR 2017.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .._validate import check_finite, check_image, check_pair, check_reduction
from ..models.vgg import VGG16Features, load_feature_net

__all__ = [
    "gram_matrix",
    "feature_loss",
    "texture_loss",
    "PerceptualLoss",
    "TextureLoss",
    "ContentStyleLoss",
    "JOHNSON_CONTENT_LAYERS",
    "JOHNSON_STYLE_LAYERS",
]

JOHNSON_CONTENT_LAYERS = ("relu2_2",)
JOHNSON_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")

FeatureNet = VGG16Features | str


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    r"""Gram matrices :math:`G = F F^\top / (C H W)` of a feature batch.

    Parameters
    ----------
    features : tensor, shape ``(N, C, H, W)``

    Returns
    -------
    tensor, shape ``(N, C, C)``
        Symmetric and positive semi-definite; entry :math:`(i, j)` is the mean over
        positions of :math:`f_i f_j`, divided by :math:`C` (Johnson et al. 2016's
        normalisation).
    """
    check_image(features, "features")
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return torch.bmm(f, f.transpose(1, 2)) / (c * h * w)


def _layer_weights(layers: Sequence[str], weights: Sequence[float] | Mapping | None
                   ) -> dict[str, float]:
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    if weights is None:
        return {name: 1.0 for name in layers}
    if isinstance(weights, Mapping):
        missing = [n for n in layers if n not in weights]
        if missing:
            raise ValueError(f"weights has no entry for layer(s) {missing}; give one weight per "
                             "layer.")
        return {n: float(weights[n]) for n in layers}
    weights = tuple(float(v) for v in weights)
    if len(weights) != len(layers):
        raise ValueError(f"got {len(weights)} weights for {len(layers)} layers {layers}; give "
                         "one weight per layer (or None for equal weights).")
    return dict(zip(layers, weights, strict=True))


def _resolve_net(net: FeatureNet) -> VGG16Features:
    if isinstance(net, VGG16Features):
        return net
    if isinstance(net, str):
        return load_feature_net(net)
    raise TypeError(f"net must be a VGG16Features or 'auto'/'imagenet'/'offline'; got "
                    f"{type(net).__name__}. Build one with lossbook.models.load_feature_net().")


def _features(net: VGG16Features, x: torch.Tensor, y: torch.Tensor, layers: Sequence[str]
              ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    check_pair(x, y)
    check_finite(x, "x")
    check_finite(y, "y")
    both = net(torch.cat([x, y]), layers=layers)
    n = x.shape[0]
    return {k: v[:n] for k, v in both.items()}, {k: v[n:] for k, v in both.items()}


def _feature_distance(fx: dict, fy: dict, weights: dict[str, float], kind: str) -> torch.Tensor:
    total = 0.0
    for name, w in weights.items():
        d = fx[name] - fy[name]
        per = d.abs() if kind == "l1" else d.square()
        total = total + w * per.flatten(1).mean(dim=1)
    return total


def _texture_distance(fx: dict, fy: dict, weights: dict[str, float]) -> torch.Tensor:
    total = 0.0
    for name, w in weights.items():
        total = total + w * (gram_matrix(fx[name]) - gram_matrix(fy[name])).square().sum((1, 2))
    return total


def _check_kind(kind: str) -> str:
    if kind not in ("l1", "l2"):
        raise ValueError(f"kind must be 'l1' or 'l2' (the penalty on feature differences); "
                         f"got {kind!r}.")
    return kind


def _reduce(per_image: torch.Tensor, reduction: str) -> torch.Tensor:
    return per_image.mean() if reduction == "mean" else per_image


def feature_loss(x: torch.Tensor, y: torch.Tensor, net: VGG16Features, *,
                 layers: Sequence[str] = JOHNSON_CONTENT_LAYERS,
                 weights: Sequence[float] | Mapping | None = None, kind: str = "l2",
                 reduction: str = "mean") -> torch.Tensor:
    r"""Feature (perceptual) loss :math:`\sum_l w_l \operatorname{mean}|\phi_l(x)-\phi_l(y)|^p`.

    Parameters
    ----------
    x, y : tensor, shape ``(N, 1 or 3, H, W)``, values in ``[0, 1]``
    net : VGG16Features
        The frozen feature network (:func:`lossbook.models.load_feature_net`).
    layers : sequence of str
        Named layers (default Johnson et al.'s content layer ``relu2_2``).
    weights : sequence or mapping of float, optional
        One weight per layer (default 1 each).
    kind : {"l2", "l1"}
        Squared (Johnson et al.) or absolute feature differences; both averaged over
        :math:`C_l H_l W_l` (normalised by the feature size).
    reduction : {"mean", "none"}
        Scalar, or one value per image ``(N,)``.
    """
    check_reduction(reduction)
    _check_kind(kind)
    w = _layer_weights(net.check_layers(layers), weights)
    fx, fy = _features(net, x, y, tuple(w))
    return _reduce(_feature_distance(fx, fy, w, kind), reduction)


def texture_loss(x: torch.Tensor, y: torch.Tensor, net: VGG16Features, *,
                 layers: Sequence[str] = JOHNSON_STYLE_LAYERS,
                 weights: Sequence[float] | Mapping | None = None,
                 reduction: str = "mean") -> torch.Tensor:
    r"""Texture (style) loss :math:`\sum_l w_l \|G_l(x) - G_l(y)\|_F^2` on Gram matrices.

    Parameters as :func:`feature_loss`; default layers Johnson et al.'s style layers
    ``relu1_2, relu2_2, relu3_3, relu4_3``. ``x`` and ``y`` must have the same shape
    here (:class:`TextureLoss` accepts a texture of another size).
    """
    check_reduction(reduction)
    w = _layer_weights(net.check_layers(layers), weights)
    fx, fy = _features(net, x, y, tuple(w))
    return _reduce(_texture_distance(fx, fy, w), reduction)


class PerceptualLoss(nn.Module):
    """Feature (perceptual) loss as a module; see :func:`feature_loss`.

    Parameters
    ----------
    net : VGG16Features or {"auto", "imagenet", "offline"}
        The feature network, or how to get one (:func:`load_feature_net`). Default
        ``"auto"``.
    layers, weights, kind, reduction
        As :func:`feature_loss` (defaults ``("relu2_2",)``, equal, ``"l2"``, ``"mean"``).

    The network is a submodule (``.to(device)`` moves it) and stays frozen.
    """

    def __init__(self, net: FeatureNet = "auto", *,
                 layers: Sequence[str] = JOHNSON_CONTENT_LAYERS,
                 weights: Sequence[float] | Mapping | None = None, kind: str = "l2",
                 reduction: str = "mean") -> None:
        super().__init__()
        self.net = _resolve_net(net)
        self.weights = _layer_weights(self.net.check_layers(layers), weights)
        self.kind = _check_kind(kind)
        self.reduction = check_reduction(reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        fx, fy = _features(self.net, x, y, tuple(self.weights))
        return _reduce(_feature_distance(fx, fy, self.weights, self.kind), self.reduction)

    def extra_repr(self) -> str:
        return f"layers={self.weights}, kind={self.kind!r}, net={self.net.source!r}"


class TextureLoss(nn.Module):
    """Texture (Gram) loss as a module; see :func:`texture_loss`.

    ``forward(x, y)`` compares ``x`` with ``y``; ``y`` may have a different spatial size
    than ``x`` (Gram matrices are ``C x C`` whatever the size), e.g. a large texture
    exemplar and a small synthesis. A fixed exemplar can be given once as ``target``:
    its Gram matrices are computed then and ``forward(x)`` compares with them.
    """

    def __init__(self, net: FeatureNet = "auto", *,
                 layers: Sequence[str] = JOHNSON_STYLE_LAYERS,
                 weights: Sequence[float] | Mapping | None = None,
                 target: torch.Tensor | None = None, reduction: str = "mean") -> None:
        super().__init__()
        self.net = _resolve_net(net)
        self.weights = _layer_weights(self.net.check_layers(layers), weights)
        self.reduction = check_reduction(reduction)
        self._target: dict[str, torch.Tensor] | None = None
        if target is not None:
            with torch.no_grad():
                self._target = self.grams(target)

    def grams(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gram matrices of ``x`` at every layer of the loss."""
        check_image(x, "x")
        check_finite(x, "x")
        return {k: gram_matrix(v) for k, v in self.net(x, layers=tuple(self.weights)).items()}

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            if self._target is None:
                raise ValueError("TextureLoss needs a target: call loss(x, y) or build it with "
                                 "TextureLoss(..., target=exemplar).")
            gy = {k: v.to(x.device) for k, v in self._target.items()}
        else:
            check_image(y, "y")
            if y.shape[1] != x.shape[1]:
                raise ValueError(f"x and y must have the same channels; got {x.shape[1]} and "
                                 f"{y.shape[1]}.")
            gy = self.grams(y)
        gx = self.grams(x)
        n = x.shape[0]
        total = 0.0
        for name, w in self.weights.items():
            g = gy[name]
            if g.shape[0] == 1 and n > 1:
                g = g.expand(n, -1, -1)
            elif g.shape[0] != n:
                raise ValueError(f"x holds {n} images but the target {g.shape[0]}; give one "
                                 "target or one per image.")
            total = total + w * (gx[name] - g).square().sum((1, 2))
        return _reduce(total, self.reduction)

    def extra_repr(self) -> str:
        return f"layers={self.weights}, net={self.net.source!r}"


class ContentStyleLoss(nn.Module):
    r"""Pixel + content (features) + style (Gram) loss, with every term reported.

    .. math:: \mathcal{L} = \lambda_{pix}\,\mathcal{L}_{pix}(x, y)
              + \lambda_{c}\,\mathcal{L}_{feat}(x, y)
              + \lambda_{s}\,\mathcal{L}_{tex}(x, y)

    The combination the super-resolution notes build from a "content" and a "style"
    term; here the content term is Johnson et al.'s feature loss (``relu2_2``) and the
    style term their Gram loss (``relu1_2 ... relu4_3``), computed from one pass of the
    feature network, plus an optional pixel term (L1 or L2) that anchors colours and
    low frequencies.

    Parameters
    ----------
    net : VGG16Features or {"auto", "imagenet", "offline"}
    content_layers, style_layers : sequence of str
    pixel_weight, content_weight, style_weight : float
        :math:`\lambda_{pix}, \lambda_c, \lambda_s` (defaults 1, 1, 1; a weight of 0
        drops the term). The sizes of the terms depend on the feature network: check
        the components that :meth:`forward` returns and balance them for your data.
    pixel : {"l1", "l2"}
        The pixel term's penalty (mean over pixels).
    kind : {"l2", "l1"}
        The content term's penalty on feature differences.

    Returns (``forward``)
    ---------------------
    ``(total, {"pixel": ..., "content": ..., "style": ...})`` -- the form
    :func:`lossbook.train.fit` logs term by term; with ``reduction="none"`` the total
    is ``(N,)``.
    """

    def __init__(self, net: FeatureNet = "auto", *,
                 content_layers: Sequence[str] = JOHNSON_CONTENT_LAYERS,
                 style_layers: Sequence[str] = JOHNSON_STYLE_LAYERS,
                 pixel_weight: float = 1.0, content_weight: float = 1.0,
                 style_weight: float = 1.0, pixel: str = "l1", kind: str = "l2",
                 reduction: str = "mean") -> None:
        super().__init__()
        self.net = _resolve_net(net)
        self.content = _layer_weights(self.net.check_layers(content_layers), None)
        self.style = _layer_weights(self.net.check_layers(style_layers), None)
        for name, v in (("pixel_weight", pixel_weight), ("content_weight", content_weight),
                        ("style_weight", style_weight)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"{name} must be a number >= 0; got {v!r}.")
        self.pixel_weight, self.content_weight = float(pixel_weight), float(content_weight)
        self.style_weight = float(style_weight)
        self.pixel = _check_kind(pixel)
        self.kind = _check_kind(kind)
        self.reduction = check_reduction(reduction)

    def forward(self, x: torch.Tensor, y: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        layers = tuple(dict.fromkeys((*self.content, *self.style)))
        fx, fy = _features(self.net, x, y, layers)
        d = x - y
        pix = (d.abs() if self.pixel == "l1" else d.square()).flatten(1).mean(dim=1)
        content = _feature_distance(fx, fy, self.content, self.kind)
        style = _texture_distance(fx, fy, self.style)
        total = (self.pixel_weight * pix + self.content_weight * content
                 + self.style_weight * style)
        parts = {"pixel": float(pix.mean().detach()), "content": float(content.mean().detach()),
                 "style": float(style.mean().detach())}
        return _reduce(total, self.reduction), parts

    def extra_repr(self) -> str:
        return (f"pixel={self.pixel!r}: {self.pixel_weight:g}, content={tuple(self.content)}: "
                f"{self.content_weight:g}, style={tuple(self.style)}: {self.style_weight:g}, "
                f"net={self.net.source!r}")
