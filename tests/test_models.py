"""Tests for lossbook.models: shapes, parameter counts, receptive fields, gradients, errors.

Parameter counts are checked against closed-form sums written out here layer by layer
(a k x k convolution from a to b channels has a*b*k*k weights plus b biases) and against
the numbers quoted in the docstrings; receptive fields against autograd (which input
pixels a given output pixel's gradient reaches); the pixel shuffle against its
index formula (Shi et al. 2016, eq. 4).
"""

from __future__ import annotations

import ast
import pathlib

import pytest
import torch

import lossbook.models as models
from lossbook.models import ESPCN, ConvAutoencoder, DnCNN, PatchGANDiscriminator, TinyCNN, UNet


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def conv(a: int, b: int, k: int, bias: bool = True) -> int:
    return a * b * k * k + (b if bias else 0)


def grads_finite(model: torch.nn.Module, x: torch.Tensor) -> None:
    model(x).square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def gradient_support(model: torch.nn.Module, x: torch.Tensor, out_index) -> tuple[int, int]:
    """Height and width of the input region that one output pixel depends on."""
    x = x.clone().requires_grad_(True)
    model(x)[out_index].backward()
    rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten()
    cols = torch.nonzero(x.grad[0, 0].abs().sum(0)).flatten()
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_exports_and_models_never_import_losses():
    assert set(models.__all__) >= {"TinyCNN", "DnCNN", "UNet", "ESPCN", "ConvAutoencoder",
                                   "PatchGANDiscriminator", "EDSR", "VGG16Features"}
    root = pathlib.Path(models.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert "losses" not in (node.module or ""), path.name
            if isinstance(node, ast.Import):
                assert all("losses" not in a.name for a in node.names), path.name


# --------------------------------------------------------------------------- DnCNN
@pytest.mark.parametrize(("kw", "quoted"), [({}, 556_097), ({"batch_norm": False}, 555_137),
                                            ({"depth": 8, "width": 32}, 56_289)])
def test_dncnn_parameter_count(kw, quoted):
    c, d, w, bn = 1, kw.get("depth", 17), kw.get("width", 64), kw.get("batch_norm", True)
    middle = conv(w, w, 3, bias=not bn) + (2 * w if bn else 0)
    expected = conv(c, w, 3) + (d - 2) * middle + conv(w, c, 3)
    assert n_params(DnCNN(**kw)) == expected == quoted


def test_dncnn_shapes_and_residual_form():
    torch.manual_seed(0)
    m = DnCNN(channels=3, depth=5, width=8).eval()
    y = torch.rand(2, 3, 13, 17)  # odd sizes
    out = m(y)
    assert out.shape == y.shape
    torch.testing.assert_close(out, y - m.residual(y))
    torch.nn.init.zeros_(m.body[-1].weight)  # no predicted noise -> identity
    torch.testing.assert_close(m(y), y)


def test_dncnn_receptive_field_is_2_depth_plus_1():
    torch.manual_seed(0)
    m = DnCNN(depth=4, width=8, batch_norm=False)
    x = torch.rand(1, 1, 31, 31)
    assert gradient_support(m, x, (0, 0, 15, 15)) == (9, 9)


def test_dncnn_gradients():
    torch.manual_seed(0)
    grads_finite(DnCNN(depth=5, width=8), torch.rand(4, 1, 16, 16))
    m = DnCNN(depth=3, width=2, batch_norm=False).double()
    x = torch.rand(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))


def test_dncnn_errors():
    with pytest.raises(ValueError, match="depth must be an int >= 2; got 1"):
        DnCNN(depth=1)
    with pytest.raises(ValueError, match="width must be an int >= 1"):
        DnCNN(width=0)
    with pytest.raises(ValueError, match=r"DnCNN expects images of shape \(N, 1, H, W\)"):
        DnCNN(depth=3, width=4)(torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------- U-Net
def unet_count(cin: int, cout: int, base: int, levels: int) -> int:
    def dc(a, b):
        return conv(a, b, 3) + conv(b, b, 3)

    w = [base * 2**i for i in range(levels + 1)]
    total = dc(cin, w[0]) + sum(dc(w[i], w[i + 1]) for i in range(levels))
    total += sum(w[i + 1] * w[i] * 4 + w[i] + dc(2 * w[i], w[i]) for i in range(levels))
    return total + conv(w[0], cout, 1)


def test_unet_parameter_count():
    assert n_params(UNet()) == unet_count(1, 1, 32, 3) == 1_925_025
    assert n_params(UNet(base=16, levels=2)) == unet_count(1, 1, 16, 2) == 116_753
    assert n_params(UNet(3, 2, base=8, levels=1)) == unet_count(3, 2, 8, 1)


def test_unet_shapes_and_residual():
    torch.manual_seed(0)
    m = UNet(base=4, levels=3)
    assert m(torch.rand(2, 1, 24, 40)).shape == (2, 1, 24, 40)  # 3 x 8 by 5 x 8
    assert UNet(3, 2, base=4, levels=1)(torch.rand(1, 3, 6, 10)).shape == (1, 2, 6, 10)
    r = UNet(base=4, levels=2, residual=True)
    torch.nn.init.zeros_(r.head.weight)
    torch.nn.init.zeros_(r.head.bias)
    x = torch.rand(1, 1, 8, 12)
    torch.testing.assert_close(r(x), x)


def test_unet_sees_the_whole_bottleneck_scale():
    torch.manual_seed(0)
    m = UNet(base=4, levels=2)
    # two levels: the receptive field is much wider than a 3x3 stack of the same depth
    h, w = gradient_support(m, torch.rand(1, 1, 64, 64), (0, 0, 32, 32))
    assert h >= 30 and w >= 30


def test_unet_gradients_and_errors():
    torch.manual_seed(0)
    grads_finite(UNet(base=4, levels=2, batch_norm=True), torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match=r"divisible by 2\*\*levels = 8; got 30 x 32"):
        UNet(base=4, levels=3)(torch.rand(1, 1, 30, 32))
    with pytest.raises(ValueError, match="in_channels must equal out_channels; got 1 and 3"):
        UNet(1, 3, residual=True)
    with pytest.raises(ValueError, match="levels must be an int >= 1"):
        UNet(levels=0)
    with pytest.raises(ValueError, match=r"UNet expects images of shape \(N, 1, H, W\)"):
        UNet(base=4, levels=1)(torch.rand(1, 2, 8, 8))


# --------------------------------------------------------------------------- ESPCN
@pytest.mark.parametrize(("scale", "quoted"), [(2, 21_284), (3, 22_729), (4, 24_752)])
def test_espcn_parameter_count(scale, quoted):
    expected = conv(1, 64, 5) + conv(64, 32, 3) + conv(32, scale**2, 3)
    assert n_params(ESPCN(scale)) == expected == quoted


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_espcn_shapes_and_pixel_shuffle_formula(scale):
    torch.manual_seed(0)
    m = ESPCN(scale, channels=3, features=(8, 8))
    x = torch.rand(2, 3, 7, 9)  # odd sizes
    out = m(x)
    assert out.shape == (2, 3, 7 * scale, 9 * scale)
    t, r = m.body(x), scale
    y, xx = torch.meshgrid(torch.arange(7 * r), torch.arange(9 * r), indexing="ij")
    for c in range(3):
        ref = t[:, c * r * r + r * (y % r) + xx % r, y // r, xx // r]
        torch.testing.assert_close(out[:, c], ref)


def test_espcn_gradients_and_errors():
    torch.manual_seed(0)
    grads_finite(ESPCN(2), torch.rand(2, 1, 9, 9))
    m = ESPCN(2, features=(3, 3)).double()
    x = torch.rand(1, 1, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(m, (x,))
    with pytest.raises(ValueError, match="scale must be an int >= 1; got 1.5"):
        ESPCN(1.5)
    with pytest.raises(ValueError, match=r"ESPCN expects images of shape \(N, 1, H, W\)"):
        ESPCN(2)(torch.rand(1, 3, 8, 8))


# --------------------------------------------------------------------------- autoencoder
def test_autoencoder_parameter_count():
    b, lat = 32, 16
    enc = conv(1, 32, 3) + conv(32, 64, 3) + conv(64, 128, 3) + conv(128, lat, 1)
    dec = (conv(lat, 128, 1) + conv(128, 64, 4) + conv(64, 32, 4) + conv(32, b, 4)
           + conv(b, 1, 3))  # a transposed conv has as many weights as a conv
    assert n_params(ConvAutoencoder()) == enc + dec == 277_553


def test_autoencoder_shapes_range_and_code():
    torch.manual_seed(0)
    m = ConvAutoencoder(channels=3, base=8, levels=2, latent_channels=4)
    x = torch.rand(2, 3, 12, 20)  # 3 x 4 by 5 x 4
    out = m(x).detach()
    assert out.shape == x.shape and float(out.min()) > 0 and float(out.max()) < 1
    z = m.encode(x).detach()
    assert z.shape == (2, 4, 3, 5)
    torch.testing.assert_close(m.decode(z).detach(), out)
    grads_finite(m, x)


def test_autoencoder_errors():
    with pytest.raises(ValueError, match=r"divisible by 2\*\*levels = 8; got 12 x 16"):
        ConvAutoencoder()(torch.rand(1, 1, 12, 16))
    with pytest.raises(ValueError, match="latent_channels must be an int >= 1"):
        ConvAutoencoder(latent_channels=0)
    with pytest.raises(ValueError, match=r"ConvAutoencoder expects images of shape \(N, 1"):
        ConvAutoencoder()(torch.rand(1, 8, 8))


# --------------------------------------------------------------------------- PatchGAN
def patchgan_count(cin: int, base: int = 64) -> int:
    total = conv(cin, base, 4)
    for a, b in ((1, 2), (2, 4), (4, 8)):
        total += conv(base * a, base * b, 4, bias=False) + 2 * base * b  # + BatchNorm
    return total + conv(base * 8, 1, 4)


def test_patchgan_parameter_count():
    assert n_params(PatchGANDiscriminator()) == patchgan_count(1) == 2_763_585
    assert n_params(PatchGANDiscriminator(6)) == patchgan_count(6) == 2_768_705


def test_patchgan_shapes_and_70_pixel_receptive_field():
    torch.manual_seed(0)
    d = PatchGANDiscriminator(base=8)
    assert d(torch.rand(2, 1, 256, 256)).shape == (2, 1, 30, 30)  # the paper's 30 x 30 map
    assert d(torch.rand(1, 1, 33, 41)).shape == (1, 1, d.output_size(33), d.output_size(41))
    assert d.receptive_field == 70
    plain = PatchGANDiscriminator(base=4, norm="none")
    assert gradient_support(plain, torch.rand(1, 1, 160, 160), (0, 0, 9, 9)) == (70, 70)
    assert PatchGANDiscriminator(n_layers=1).receptive_field == 16
    grads_finite(PatchGANDiscriminator(3, base=4, norm="instance"), torch.rand(2, 3, 32, 32))


def test_patchgan_errors():
    with pytest.raises(ValueError, match="H and W must be at least 24"):
        PatchGANDiscriminator(base=4)(torch.rand(1, 1, 23, 64))
    with pytest.raises(ValueError, match="norm must be one of 'batch', 'instance', 'none'"):
        PatchGANDiscriminator(norm="layer")
    with pytest.raises(ValueError, match=r"expects images of shape \(N, 1, H, W\); "
                                         r"got \(1, 3, 64, 64\)"):
        PatchGANDiscriminator(base=4)(torch.rand(1, 3, 64, 64))


def test_tiny_cnn_still_exported():
    assert n_params(TinyCNN()) == conv(1, 32, 3) + 3 * conv(32, 32, 3) + conv(32, 1, 3)


# ------------------------------------------------------------------ reliability (issue 8)
_MODELS = {
    "DnCNN": lambda: DnCNN(1, depth=3, width=4),
    "UNet": lambda: UNet(1, base=4, levels=2),
    "ESPCN": lambda: ESPCN(2, 1, features=(4, 4)),
    "ConvAutoencoder": lambda: ConvAutoencoder(1, base=4, levels=2, latent_channels=2),
    "PatchGANDiscriminator": lambda: PatchGANDiscriminator(1, base=4, n_layers=1),
    "TinyCNN": lambda: TinyCNN(1, width=4, depth=2),
}


@pytest.mark.parametrize("name", sorted(_MODELS))
def test_models_refuse_bad_inputs_with_their_own_errors(name):
    """Not PyTorch's conv2d messages: the model's name, what was given and how to fix it."""
    model = _MODELS[name]()
    good = torch.rand(1, 1, 32, 32)
    model(good)  # the reference: a valid input works
    with pytest.raises(TypeError, match=rf"{name} expects a torch.Tensor.*got list.*stack"):
        model(good.tolist())
    with pytest.raises(TypeError, match=rf"{name} expects a torch.Tensor.*got ndarray.*"
                                        r"from_numpy"):
        model(good.numpy())
    with pytest.raises(TypeError, match=rf"{name} expects floating-point.*torch.int64"):
        model((good * 255).long())
    with pytest.raises(ValueError, match=rf"{name} expects images of shape \(N, 1, H, W\); "
                                         r"got \(1, 3, 32, 32\).*channels=3"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\[None\]"):
        model(good[0])
    with pytest.raises(ValueError, match=rf"{name} got an empty batch"):
        model(torch.rand(0, 1, 32, 32))


@pytest.mark.parametrize(("build", "arg"), [
    (lambda: TinyCNN(width=0), "width"),
    (lambda: TinyCNN(channels=0), "channels"),
    (lambda: ESPCN(2, 1, features=(0, 4)), "features\\[0\\]"),
    (lambda: DnCNN(1, width=0), "width"),
    (lambda: UNet(1, base=0), "base"),
])
def test_zero_width_models_are_refused(build, arg):
    with pytest.raises(ValueError, match=f"{arg} must be an int >= 1"):
        build()


def test_tinycnn_residual_switch():
    """residual=True returns the input when the body outputs zero; residual=False does not."""
    from lossbook.models import TinyCNN

    x = torch.rand(2, 1, 12, 12)
    for residual in (True, False):
        net = TinyCNN(width=8, depth=3, residual=residual)
        for p in net.parameters():
            torch.nn.init.zeros_(p)
        out = net(x)
        assert torch.equal(out, x if residual else torch.zeros_like(x))
    with pytest.raises(TypeError, match="residual"):
        TinyCNN(residual="no")
