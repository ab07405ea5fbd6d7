"""Pixel losses against torch.nn.functional (reference) and closed forms.

Tolerances: float64 inputs, compared to 1e-12 relative (same arithmetic up to order).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbook import losses
from lossbook.losses import pixel


@pytest.fixture
def pair(gen):
    x = torch.rand(3, 2, 9, 7, generator=gen, dtype=torch.float64)
    y = torch.rand(3, 2, 9, 7, generator=gen, dtype=torch.float64)
    return x, y


def per_image(fn, x, y, **kw):
    return torch.stack([fn(x[i : i + 1], y[i : i + 1], **kw) for i in range(len(x))])


@pytest.mark.parametrize(
    ("ours", "ref", "kw"),
    [
        (pixel.mse, F.mse_loss, {}),
        (pixel.mae, F.l1_loss, {}),
        (pixel.huber, F.huber_loss, {"delta": 0.2}),
        (pixel.huber, F.huber_loss, {"delta": 1.0}),
        (pixel.smooth_l1, F.smooth_l1_loss, {"beta": 0.3}),
    ],
)
def test_matches_torch_functional(pair, ours, ref, kw):
    x, y = pair
    torch.testing.assert_close(ours(x, y, **kw), ref(x, y, **kw), rtol=1e-12, atol=0)
    # reduction="none": one value per image, each the image's mean.
    expected = torch.stack([ref(x[i], y[i], **kw) for i in range(len(x))])
    got = ours(x, y, reduction="none", **kw)
    assert got.shape == (3,)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)


def test_huber_is_delta_times_smooth_l1(pair):
    x, y = pair
    for delta in (0.05, 0.3, 2.0):
        torch.testing.assert_close(
            pixel.huber(x, y, delta=delta), delta * pixel.smooth_l1(x, y, beta=delta)
        )


def test_charbonnier_closed_form(pair):
    x, y = pair
    eps = 1e-3
    expected = torch.sqrt((x - y) ** 2 + eps**2).mean()
    torch.testing.assert_close(pixel.charbonnier(x, y, eps=eps), expected)
    # A perfect prediction costs exactly eps (eps is squared under the root).
    assert float(pixel.charbonnier(x, x, eps=eps)) == pytest.approx(eps, rel=1e-12)
    # For errors much larger than eps it is L1 to within eps.
    assert abs(float(pixel.charbonnier(x, y + 1.0)) - float(pixel.mae(x, y + 1.0))) < eps


def test_closed_form_constant_error():
    x = torch.zeros(2, 1, 4, 4)
    y = torch.full((2, 1, 4, 4), 0.5)
    assert float(pixel.mse(x, y)) == pytest.approx(0.25)
    assert float(pixel.mae(x, y)) == pytest.approx(0.5)
    assert float(pixel.huber(x, y, delta=0.1)) == pytest.approx(0.1 * (0.5 - 0.05))
    assert float(pixel.huber(x, y, delta=1.0)) == pytest.approx(0.5 * 0.25)


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "charbonnier", "smooth_l1"])
def test_gradients(pair, name):
    fn = getattr(pixel, name)
    x, y = pair
    x = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: fn(a, y), (x,))
    fn(x, y).backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_formulas(pair):
    """The derivatives the chapter plots: 2d, sign(d), clip(d), d/sqrt(d^2+eps^2)."""
    x, y = pair
    n = x.numel()
    d = x - y
    cases = [
        (pixel.mse, {}, 2 * d),
        (pixel.mae, {}, torch.sign(d)),
        (pixel.huber, {"delta": 0.2}, d.clamp(-0.2, 0.2)),
        (pixel.charbonnier, {"eps": 0.01}, d / torch.sqrt(d**2 + 1e-4)),
    ]
    for fn, kw, rho_prime in cases:
        a = x.clone().requires_grad_(True)
        fn(a, y, **kw).backward()
        torch.testing.assert_close(a.grad * n, rho_prime)


def test_modules_match_functions(pair):
    x, y = pair
    assert float(losses.MSELoss()(x, y)) == float(pixel.mse(x, y))
    assert float(losses.L1Loss()(x, y)) == float(pixel.mae(x, y))
    assert float(losses.HuberLoss(delta=0.1)(x, y)) == float(pixel.huber(x, y, delta=0.1))
    assert float(losses.CharbonnierLoss(eps=1e-2)(x, y)) == float(
        pixel.charbonnier(x, y, eps=1e-2))
    assert losses.HuberLoss(reduction="none")(x, y).shape == (3,)
    assert "delta=0.1" in repr(losses.HuberLoss(delta=0.1))


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "charbonnier"])
def test_bad_inputs(name):
    fn = getattr(pixel, name)
    good = torch.rand(1, 1, 8, 8)
    with pytest.raises(TypeError, match="must be a torch.Tensor.*got an object of type list"):
        fn([[0.0]], good)
    with pytest.raises(TypeError, match=r"numpy|torch.as_tensor"):
        fn(good.numpy(), good)
    with pytest.raises(ValueError, match=r"4 dimensions.*got 2.*\[None, None\]"):
        fn(good[0, 0], good[0, 0])
    with pytest.raises(ValueError, match=r"same shape.*\(1, 1, 8, 8\).*\(1, 1, 8, 7\)"):
        fn(good, good[..., :7])
    with pytest.raises(TypeError, match=r"floating-point.*torch.uint8.*float\(\)"):
        fn(good.to(torch.uint8), good.to(torch.uint8))
    with pytest.raises(TypeError, match="same dtype"):
        fn(good, good.double())
    bad = good.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x holds 1 NaN"):
        fn(bad, good)
    with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'none'.*'sum'"):
        fn(good, good, reduction="sum")


@pytest.mark.parametrize(("fn", "kw"), [(pixel.huber, "delta"), (pixel.charbonnier, "eps"),
                                        (pixel.smooth_l1, "beta")])
def test_bad_parameters(fn, kw):
    x = torch.rand(1, 1, 4, 4)
    for value in (0, -1.0, float("inf"), float("nan"), -float("inf")):
        with pytest.raises(ValueError, match=f"{kw} must be a positive finite number"):
            fn(x, x, **{kw: value})
    with pytest.raises(TypeError, match=f"{kw} must be a positive finite number"):
        fn(x, x, **{kw: "a"})


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "charbonnier", "smooth_l1"])
def test_empty_batches_and_images_are_refused(name):
    fn = getattr(pixel, name)
    for shape in [(0, 1, 4, 4), (2, 1, 0, 4), (2, 0, 4, 4)]:
        e = torch.rand(shape)
        with pytest.raises(ValueError, match="is empty"):
            fn(e, e)


@pytest.mark.parametrize("name", ["mse", "mae", "huber", "charbonnier", "smooth_l1"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name, dtype):
    """Reference: the same loss on the float32 copies. float16 squares overflow at 256."""
    fn = getattr(pixel, name)
    x = torch.zeros(2, 1, 4, 4, dtype=dtype)
    y = torch.full((2, 1, 4, 4), 300.0, dtype=dtype)
    y[0, 0, 0, 0] = 299.0
    out = fn(x, y)
    assert out.dtype == torch.float32 and torch.isfinite(out)
    torch.testing.assert_close(out, fn(x.float(), y.float()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        torch.testing.assert_close(fn(x.float(), y.float()), fn(x.float(), y.float()).float())


def test_overflow_raises_instead_of_returning_inf():
    x = torch.full((1, 1, 2, 2), 3e38)
    with pytest.raises(ValueError, match="overflow"):
        pixel.mse(x, -x)
    assert torch.isfinite(pixel.mae(x / 3, x / 6))
