"""Tests for lossbook.losses.adversarial against closed forms on fixed logits.

References: the formulas of Goodfellow et al. 2014 (with log sigmoid written out in
numpy-free closed form), Mao et al. 2017 (a=0, b=c=1, factor 1/2), Lim & Ye 2017 (hinge),
PyTorch's own BCEWithLogitsLoss, and a finite-difference R1 on a linear discriminator.
"""

from __future__ import annotations

import math

import pytest
import torch

from lossbook.losses import GAN_KINDS, discriminator_loss, generator_loss, r1_penalty
from lossbook.models import PatchGANDiscriminator

R = torch.tensor([2.0, -0.5, 0.0, 1.5], dtype=torch.float64)
F_ = torch.tensor([-1.0, 0.3, 2.0, -3.0], dtype=torch.float64)


def sig(v):
    return 1 / (1 + math.exp(-v))


def test_nonsaturating_closed_form_and_bce():
    want_d = (sum(-math.log(sig(r)) for r in R.tolist()) / 4
              + sum(-math.log(1 - sig(f)) for f in F_.tolist()) / 4)
    assert float(discriminator_loss(R, F_)) == pytest.approx(want_d, rel=1e-12)
    bce = torch.nn.BCEWithLogitsLoss()
    ref = bce(R, torch.ones_like(R)) + bce(F_, torch.zeros_like(F_))
    assert float(discriminator_loss(R, F_)) == pytest.approx(float(ref), rel=1e-12)
    want_g = sum(-math.log(sig(f)) for f in F_.tolist()) / 4
    assert float(generator_loss(F_)) == pytest.approx(want_g, rel=1e-12)
    want_mm = sum(math.log(1 - sig(f)) for f in F_.tolist()) / 4
    assert float(generator_loss(F_, kind="minimax")) == pytest.approx(want_mm, rel=1e-12)
    assert float(discriminator_loss(R, F_, kind="minimax")) == pytest.approx(want_d, rel=1e-12)


def test_hinge_and_lsgan_closed_forms():
    want = (sum(max(0, 1 - r) for r in R.tolist()) + sum(max(0, 1 + f) for f in F_.tolist())) / 4
    assert float(discriminator_loss(R, F_, kind="hinge")) == pytest.approx(want, rel=1e-12)
    assert float(generator_loss(F_, kind="hinge")) == pytest.approx(-F_.mean().item(), rel=1e-12)
    want = (sum(0.5 * (r - 1) ** 2 for r in R.tolist()) + sum(0.5 * f**2 for f in F_.tolist())) / 4
    assert float(discriminator_loss(R, F_, kind="lsgan")) == pytest.approx(want, rel=1e-12)
    want = sum(0.5 * (f - 1) ** 2 for f in F_.tolist()) / 4
    assert float(generator_loss(F_, kind="lsgan")) == pytest.approx(want, rel=1e-12)


def test_minimax_saturates_where_nonsaturating_does_not():
    """Goodfellow et al.'s reason for -log D(G(z)): with confidently rejected fakes
    (f = -8) the minimax gradient is sigma(f) ~ 3e-4, the non-saturating one ~ 1."""
    f = torch.tensor([-8.0], requires_grad=True)
    (g_mm,) = torch.autograd.grad(generator_loss(f, kind="minimax"), f)
    (g_ns,) = torch.autograd.grad(generator_loss(f), f)
    assert abs(float(g_mm)) == pytest.approx(sig(-8.0), rel=1e-5)
    assert abs(float(g_ns)) == pytest.approx(1 - sig(-8.0), rel=1e-5)


@pytest.mark.parametrize("kind", GAN_KINDS)
def test_patch_maps_mean_over_all_logits_and_per_sample(kind, gen):
    r = torch.randn(3, 1, 5, 4, generator=gen)
    f = torch.randn(3, 1, 5, 4, generator=gen)
    flat = discriminator_loss(r.flatten(), f.flatten(), kind=kind)
    assert torch.allclose(discriminator_loss(r, f, kind=kind), flat, atol=1e-6)
    per = discriminator_loss(r, f, kind=kind, reduction="none")
    assert per.shape == (3,) and torch.allclose(per.mean(), flat, atol=1e-6)
    g = generator_loss(f, kind=kind, reduction="none")
    assert g.shape == (3,) and torch.allclose(g.mean(), generator_loss(f, kind=kind), atol=1e-6)


@pytest.mark.parametrize("kind", GAN_KINDS)
def test_gradients_finite_and_gradcheck(kind, gen):
    r = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    f = torch.randn(2, 1, 3, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: discriminator_loss(a, b, kind=kind), (r, f))
    assert torch.autograd.gradcheck(lambda b: generator_loss(b, kind=kind), (f,))


def test_r1_against_closed_form_and_finite_differences(gen):
    # D(y) = <w, y>: grad = w for every image, R1 = gamma/2 ||w||^2
    w = torch.randn(1, 1, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    pen = r1_penalty((y * w).sum((1, 2, 3)), y, gamma=10.0)
    assert float(pen) == pytest.approx(5.0 * float(w.square().sum()), rel=1e-12)
    # a PatchGAN: compare with a finite-difference gradient norm of one image
    torch.manual_seed(0)
    d = PatchGANDiscriminator(1, base=4, n_layers=1, norm="none").double()
    y1 = torch.rand(1, 1, 12, 12, generator=gen, dtype=torch.float64, requires_grad=True)
    pen = r1_penalty(d(y1), y1, gamma=2.0)
    eps, g2 = 1e-6, 0.0
    base = y1.detach()
    for i in range(base.numel()):
        e = torch.zeros_like(base).flatten()
        e[i] = eps
        e = e.view_as(base)
        g2 += ((d(base + e).sum() - d(base - e).sum()) / (2 * eps)).item() ** 2
    assert float(pen.detach()) == pytest.approx(g2, rel=1e-5)
    pen.backward()  # differentiable w.r.t. the discriminator's weights (biases drop out)
    weights = [p for n, p in d.named_parameters() if n.endswith("weight")]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)


def test_errors():
    with pytest.raises(ValueError, match="kind must be one of"):
        generator_loss(F_, kind="wgan")
    with pytest.raises(ValueError, match="same shape after the batch"):
        discriminator_loss(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 3, 3))
    with pytest.raises(ValueError, match="batch dimension"):
        generator_loss(torch.tensor(1.0))
    with pytest.raises(TypeError, match="floating point"):
        generator_loss(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="as many real as fake"):
        discriminator_loss(torch.zeros(2), torch.zeros(3), reduction="none")
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(torch.zeros(2), torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        generator_loss(torch.tensor([float("nan")]))
