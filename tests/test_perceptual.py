"""Tests for lossbook.losses.perceptual: Gram matrices, feature, texture, content+style.

References: an einsum Gram matrix written here; the feature loss recomputed by hand from
the network's activations; Gram invariance to permuting feature positions (Gatys et al.
2015); gradcheck in float64 on a small network.
"""

from __future__ import annotations

import pytest
import torch

from lossbook.losses import (
    ContentStyleLoss,
    PerceptualLoss,
    TextureLoss,
    feature_loss,
    gram_matrix,
    texture_loss,
)
from lossbook.models import VGG16Features, offline_feature_net


@pytest.fixture(scope="module")
def net():
    return offline_feature_net()


def test_gram_matches_einsum_and_is_symmetric_psd(gen):
    f = torch.randn(3, 5, 7, 6, generator=gen, dtype=torch.float64)
    g = gram_matrix(f)
    want = torch.einsum("nchw,ndhw->ncd", f, f) / (5 * 7 * 6)
    assert g.shape == (3, 5, 5)
    assert torch.allclose(g, want, atol=1e-12)
    assert torch.allclose(g, g.transpose(1, 2), atol=0)
    assert float(torch.linalg.eigvalsh(g).min()) > -1e-12


def test_gram_ignores_where_features_are(gen):
    f = torch.randn(2, 4, 8, 8, generator=gen, dtype=torch.float64)
    perm = torch.randperm(64, generator=gen)
    shuffled = f.flatten(2)[..., perm].reshape(f.shape)
    assert torch.allclose(gram_matrix(f), gram_matrix(shuffled), atol=1e-12)


def test_feature_loss_against_a_hand_computation(net, gen):
    x = torch.rand(2, 1, 32, 32, generator=gen)
    y = torch.rand(2, 1, 32, 32, generator=gen)
    fx, fy = net(x, ("relu1_2", "relu3_3")), net(y, ("relu1_2", "relu3_3"))
    per = {k: (fx[k] - fy[k]).square().mean(dim=(1, 2, 3)) for k in fx}
    want = 0.5 * per["relu1_2"] + 2.0 * per["relu3_3"]
    got = feature_loss(x, y, net, layers=("relu1_2", "relu3_3"), weights=(0.5, 2.0),
                       reduction="none")
    assert torch.allclose(got, want, rtol=1e-5)
    l1 = PerceptualLoss(net, layers=("relu2_2",), kind="l1")(x, y)
    f2x, f2y = net(x, ("relu2_2",))["relu2_2"], net(y, ("relu2_2",))["relu2_2"]
    assert torch.allclose(l1, (f2x - f2y).abs().mean(), rtol=1e-5)
    assert float(feature_loss(x, x, net)) == 0.0


def test_texture_loss_against_gram_difference(net, gen):
    x = torch.rand(2, 3, 32, 32, generator=gen)
    y = torch.rand(2, 3, 32, 32, generator=gen)
    layers = ("relu1_2", "relu2_2")
    fx, fy = net(x, layers), net(y, layers)
    want = sum(((gram_matrix(fx[k]) - gram_matrix(fy[k])) ** 2).sum((1, 2)) for k in layers)
    got = texture_loss(x, y, net, layers=layers, reduction="none")
    assert torch.allclose(got, want, rtol=1e-5)
    assert torch.allclose(TextureLoss(net, layers=layers)(x, y), want.mean(), rtol=1e-5)
    # a fixed exemplar given once, of another size, gives the same as passing it each time
    big = torch.rand(1, 3, 48, 48, generator=gen)
    fixed = TextureLoss(net, layers=layers, target=big, reduction="none")
    assert torch.allclose(fixed(x), TextureLoss(net, layers=layers, reduction="none")(x, big),
                          rtol=1e-5)


def test_shuffled_feature_positions_fool_texture_but_not_perceptual(gen):
    """A network of 1x1 convolutions: its features at each pixel depend on that pixel only,
    so shuffling the pixels shuffles the feature positions exactly."""
    net = VGG16Features(width=0.25, seed=0)
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, torch.nn.Conv2d):  # keep only the centre tap: a 1x1 conv
                centre = m.weight[:, :, 1, 1].clone()
                m.weight.zero_()
                m.weight[:, :, 1, 1] = centre
    x = torch.rand(1, 1, 16, 16, generator=gen)
    perm = torch.randperm(256, generator=gen)
    shuffled = x.flatten(2)[..., perm].reshape(x.shape)
    tex = float(texture_loss(shuffled, x, net, layers=("relu1_2",)))
    per = float(feature_loss(shuffled, x, net, layers=("relu1_2",)))
    scale = float(gram_matrix(net(x, ("relu1_2",))["relu1_2"]).square().sum())
    assert tex < 1e-10 * scale
    assert per > 1e-3


def test_gradients_flow_to_the_image_only_and_are_finite(net, gen):
    x = torch.rand(2, 1, 32, 32, generator=gen, requires_grad=True)
    y = torch.rand(2, 1, 32, 32, generator=gen)
    total, parts = ContentStyleLoss(net, style_weight=10.0)(x, y)
    total.backward()
    assert set(parts) == {"pixel", "content", "style"}
    assert bool(torch.isfinite(x.grad).all()) and float(x.grad.abs().sum()) > 0
    assert all(p.grad is None for p in net.parameters())


def test_gradcheck_float64(gen):
    small = VGG16Features(width=1 / 16, seed=0).double()
    x = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a: feature_loss(a, y, small, layers=("relu2_2",)), (x,))
    assert torch.autograd.gradcheck(
        lambda a: texture_loss(a, y, small, layers=("relu1_2", "relu2_2")), (x,))


def test_content_style_is_the_weighted_sum_of_its_terms(net, gen):
    x = torch.rand(3, 1, 32, 32, generator=gen)
    y = torch.rand(3, 1, 32, 32, generator=gen)
    loss = ContentStyleLoss(net, pixel_weight=0.5, content_weight=2.0, style_weight=3.0,
                            reduction="none")
    total, parts = loss(x, y)
    want = (0.5 * (x - y).abs().mean((1, 2, 3)) + 2.0 * feature_loss(x, y, net, reduction="none")
            + 3.0 * texture_loss(x, y, net, reduction="none"))
    assert total.shape == (3,) and torch.allclose(total, want, rtol=1e-5)
    assert parts["pixel"] == pytest.approx(float((x - y).abs().mean()), rel=1e-5)


def test_errors(net):
    x = torch.rand(1, 1, 32, 32)
    with pytest.raises(ValueError, match="too small for layer 'relu4_3'"):
        feature_loss(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4), net, layers=("relu4_3",))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\) or \(N, 3, H, W\)"):
        feature_loss(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16), net)
    with pytest.raises(ValueError, match="same shape"):
        feature_loss(x, torch.rand(1, 1, 16, 16), net)
    with pytest.raises(ValueError, match="one weight per layer"):
        PerceptualLoss(net, layers=("relu1_2", "relu2_2"), weights=(1.0,))
    with pytest.raises(ValueError, match="'l1' or 'l2'"):
        PerceptualLoss(net, kind="l3")
    with pytest.raises(ValueError, match="needs a target"):
        TextureLoss(net)(x)
    with pytest.raises(TypeError, match="load_feature_net"):
        PerceptualLoss(net=3)
    with pytest.raises(ValueError, match="reduction"):
        feature_loss(x, x, net, reduction="sum")
    with pytest.raises(ValueError, match="NaN"):
        feature_loss(x * float("nan"), x, net)
