r"""Adversarial (GAN) losses: non-saturating, hinge and least squares; the R1 penalty.

A discriminator :math:`D` outputs *logits* :math:`d` (no sigmoid), one per image or one per
patch (PatchGAN, :class:`lossbook.models.PatchGANDiscriminator`). With
:math:`r = D(y)` on real images and :math:`f = D(G(x))` on generated ones, and
:math:`\sigma` the logistic sigmoid (so :math:`-\log\sigma(d) = \operatorname{softplus}(-d)`):

- ``"nonsaturating"``: D loss :math:`\operatorname{softplus}(-r) + \operatorname{softplus}(f)`;
  G loss :math:`\operatorname{softplus}(-f) = -\log\sigma(f)`.
- ``"minimax"``: D loss as ``"nonsaturating"``; G loss
  :math:`-\operatorname{softplus}(f) = \log(1 - \sigma(f))`.
- ``"hinge"``: D loss :math:`\max(0, 1 - r) + \max(0, 1 + f)`; G loss :math:`-f`.
- ``"lsgan"``: D loss :math:`\tfrac12 (r - 1)^2 + \tfrac12 f^2`; G loss :math:`\tfrac12 (f - 1)^2`.

Each term is averaged over **all** logits (every image and every patch), so a PatchGAN
map and a single score per image use the same functions. ``"minimax"`` is Goodfellow et
al.'s original generator objective: its gradient vanishes when the discriminator
confidently rejects the fakes (:math:`\sigma(f) \to 0`), which is why the same paper
recommends the non-saturating :math:`-\log D(G(z))` in practice. ``"lsgan"`` is Mao et
al.'s least squares with targets :math:`a = 0` (fake), :math:`b = c = 1` (real); ``"hinge"``
is Lim & Ye's geometric GAN loss as used by SAGAN and BigGAN.

The R1 penalty (Mescheder et al. 2018) regularises the discriminator on real data:
:math:`\frac{\gamma}{2}\,\mathbb{E}_y \|\nabla_y D(y)\|^2`.

References
----------
I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014.
X. Mao et al., "Least squares generative adversarial networks", ICCV 2017.
J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894, 2017.
P. Isola et al., "Image-to-image translation with conditional adversarial networks",
CVPR 2017 (PatchGAN).
L. Mescheder, A. Geiger, S. Nowozin, "Which training methods for GANs do actually
converge?", ICML 2018 (R1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .._validate import check_finite, check_reduction

__all__ = ["GAN_KINDS", "discriminator_loss", "generator_loss", "r1_penalty"]

GAN_KINDS = ("nonsaturating", "minimax", "hinge", "lsgan")


def _check_kind(kind: str) -> str:
    if kind not in GAN_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, GAN_KINDS))}; got {kind!r}.")
    return kind


def _check_logits(t: object, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a tensor of discriminator logits; got "
                        f"{type(t).__name__}.")
    if t.ndim < 1 or t.numel() == 0:
        raise ValueError(f"{name} must have a batch dimension, shape (N,) or (N, 1, h, w) for a "
                         f"PatchGAN; got shape {tuple(t.shape)}.")
    if not torch.is_floating_point(t):
        raise TypeError(f"{name} must be floating point (raw logits); got {t.dtype}.")
    check_finite(t, name)
    return t


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).mean(dim=1)


def _reduce(real_term: torch.Tensor | None, fake_term: torch.Tensor, reduction: str
            ) -> torch.Tensor:
    if reduction == "mean":
        out = fake_term.mean()
        return out if real_term is None else real_term.mean() + out
    fake = _per_sample(fake_term)
    return fake if real_term is None else _per_sample(real_term) + fake


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, *,
                       kind: str = "nonsaturating", reduction: str = "mean") -> torch.Tensor:
    """The discriminator's loss on real and generated logits (see the module table).

    Parameters
    ----------
    real_logits, fake_logits : tensor
        Raw outputs of the discriminator, ``(N, ...)``: one score per image ``(N,)`` /
        ``(N, 1)``, or a PatchGAN map ``(N, 1, h, w)``. Both must have the same shape
        after the batch dimension. Detach the fakes (``D(G(x).detach())``) so the
        discriminator step does not update the generator.
    kind : {"nonsaturating", "minimax", "hinge", "lsgan"}
    reduction : {"mean", "none"}
        ``"mean"``: mean over all real logits plus mean over all fake logits (scalar).
        ``"none"``: per sample ``(N,)`` (needs equal batch sizes).
    """
    _check_kind(kind)
    check_reduction(reduction)
    r = _check_logits(real_logits, "real_logits")
    f = _check_logits(fake_logits, "fake_logits")
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(f"real_logits {tuple(r.shape)} and fake_logits {tuple(f.shape)} must have "
                         "the same shape after the batch dimension (the same discriminator on "
                         "images of the same size).")
    if reduction == "none" and r.shape[0] != f.shape[0]:
        raise ValueError(f"reduction='none' needs as many real as fake samples; got {r.shape[0]} "
                         f"and {f.shape[0]}.")
    if kind in ("nonsaturating", "minimax"):
        return _reduce(F.softplus(-r), F.softplus(f), reduction)
    if kind == "hinge":
        return _reduce(F.relu(1.0 - r), F.relu(1.0 + f), reduction)
    return _reduce(0.5 * (r - 1.0).square(), 0.5 * f.square(), reduction)


def generator_loss(fake_logits: torch.Tensor, *, kind: str = "nonsaturating",
                   reduction: str = "mean") -> torch.Tensor:
    """The generator's adversarial loss on the discriminator's logits for its outputs.

    Parameters
    ----------
    fake_logits : tensor
        ``D(G(x))`` (not detached), ``(N, ...)``.
    kind : {"nonsaturating", "minimax", "hinge", "lsgan"}
        See the module table.
    reduction : {"mean", "none"}
        Mean over all logits, or per sample ``(N,)``.
    """
    _check_kind(kind)
    check_reduction(reduction)
    f = _check_logits(fake_logits, "fake_logits")
    if kind == "nonsaturating":
        term = F.softplus(-f)
    elif kind == "minimax":
        term = -F.softplus(f)
    elif kind == "hinge":
        term = -f
    else:
        term = 0.5 * (f - 1.0).square()
    return _reduce(None, term, reduction)


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor, *,
               gamma: float = 10.0) -> torch.Tensor:
    r"""R1 gradient penalty :math:`\frac{\gamma}{2}\,\frac1N\sum_i \|\nabla_{y_i} D(y_i)\|^2`.

    Parameters
    ----------
    real_logits : tensor
        ``D(real_images)``, computed with ``real_images.requires_grad_(True)``. For a
        PatchGAN map the logits of one image are summed (the gradient of the sum).
    real_images : tensor, shape ``(N, C, H, W)``
    gamma : float
        Penalty weight (10 in Mescheder et al.'s experiments).

    Returns
    -------
    Scalar tensor, differentiable with respect to the discriminator's parameters
    (the gradient is taken with ``create_graph=True``).
    """
    _check_logits(real_logits, "real_logits")
    if not isinstance(real_images, torch.Tensor) or not real_images.requires_grad:
        raise ValueError("real_images must be the tensor the logits were computed from, with "
                         "requires_grad=True: call real.requires_grad_(True) before D(real).")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
        raise ValueError(f"gamma must be a number >= 0; got {gamma!r}.")
    try:
        (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    except RuntimeError as err:
        raise ValueError(f"real_logits do not depend on real_images ({err}); compute them as "
                         "D(real_images) after real_images.requires_grad_(True).") from err
    return 0.5 * gamma * grad.square().reshape(grad.shape[0], -1).sum(dim=1).mean()
