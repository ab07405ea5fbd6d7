"""Tests for lossbook.descent (optimising pixels directly).

References: closed forms for plain gradient descent on MSE and L1 and for Adam's first
step (exact up to float64 rounding; tolerances stated at each test);
scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity`` for the recorded
metrics (float32 rounding, 1e-4).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lossbook import metrics as lb_metrics
from lossbook.descent import Trajectory, descend, snapshot_steps


def _mse(x, y):
    return ((x - y) ** 2).mean()


def _l1(x, y):
    return (x - y).abs().mean()


@pytest.fixture
def pair(gen):
    target = torch.rand(1, 1, 16, 16, generator=gen, dtype=torch.float64)
    init = torch.rand(1, 1, 16, 16, generator=gen, dtype=torch.float64)
    return target, init


# --- closed forms -------------------------------------------------------------------------

@pytest.mark.parametrize("lr", [8.0, 32.0, 64.0])
def test_sgd_on_mse_contracts_by_the_closed_form_factor(pair, lr):
    """x_k - y = (1 - 2 lr / n)^k (x_0 - y), so MSE_k = (1 - 2 lr / n)^(2k) MSE_0, exactly."""
    target, init = pair
    n = target.numel()
    r = 1 - 2 * lr / n
    tr = descend(_mse, target, init, steps=12, lr=lr, optimizer="sgd")
    mse0 = float(((init - target) ** 2).mean())
    expected = [mse0 * r ** (2 * k) for k in range(13)]
    # rtol 1e-10, not 1e-16: x - y loses digits as x approaches y (cancellation in float64)
    np.testing.assert_allclose(tr.loss, expected, rtol=1e-10)
    assert tr.step == list(range(13))
    torch.testing.assert_close(tr.image, target + r**12 * (init - target), rtol=0, atol=1e-14)
    # and the loss really decreases (not a trivially satisfied test)
    assert tr.loss[-1] < 0.5 * tr.loss[0]


def test_sgd_on_l1_moves_every_pixel_by_lr_over_n(pair):
    """grad of mean |x - y| is sign(x - y) / n: each step moves a pixel by lr / n towards y
    (until it crosses); with lr / n = 1e-3 and 5 steps, pixels farther than 5e-3 never cross."""
    target, init = pair
    n = target.numel()
    lr = 1e-3 * n
    tr = descend(_l1, target, init, steps=5, lr=lr, optimizer="sgd")
    d0 = init - target
    far = d0.abs() > 5e-3 + 1e-12
    assert far.float().mean() > 0.9
    expected = init - 5 * 1e-3 * torch.sign(d0)
    torch.testing.assert_close(tr.image[far], expected[far], rtol=0, atol=1e-13)


def test_adam_first_step_moves_each_pixel_by_lr(pair):
    """Adam's bias-corrected first step is lr * g / (|g| + eps) = lr * sign(g) (eps = 1e-8)."""
    target, init = pair
    tr = descend(_mse, target, init, steps=1, lr=0.01, optimizer="adam")
    g = 2 * (init - target) / target.numel()
    expected = init - 0.01 * g / (g.abs() + 1e-8)
    torch.testing.assert_close(tr.image, expected.clamp(0, 1), rtol=0, atol=1e-9)


def test_adam_descending_mse_from_noise_converges(gen):
    target = torch.rand(1, 1, 24, 24, generator=gen)
    init = torch.rand(1, 1, 24, 24, generator=gen)
    tr = descend(_mse, target, init, steps=200, lr=0.02, metrics=["psnr"], record_every=20)
    assert tr.metrics["psnr"][0] < 10
    assert tr.metrics["psnr"][-1] > 40
    assert all(b < a for a, b in zip(tr.loss[:5], tr.loss[1:5], strict=False))


# --- recording -------------------------------------------------------------------------------

def test_records_at_the_right_steps_and_metrics_match_skimage(gen):
    target = torch.rand(1, 1, 20, 20, generator=gen)
    init = torch.rand(1, 1, 20, 20, generator=gen)
    tr = descend(_mse, target, init, steps=10, lr=0.05, record_every=3, metrics=["psnr", "mse"],
                 snapshot_at=[0, 3, 9, 10, 3])
    assert tr.step == [0, 3, 6, 9, 10]
    assert tr.snapshot_step == [0, 3, 9, 10]
    assert len(tr.loss) == len(tr.metrics["psnr"]) == len(tr.metrics["mse"]) == 5
    torch.testing.assert_close(tr.snapshots[0], init)
    torch.testing.assert_close(tr.snapshots[-1], tr.image)
    y = target[0, 0].numpy()
    for s, img in zip(tr.snapshot_step, tr.snapshots, strict=True):
        i = tr.step.index(s)
        ref = peak_signal_noise_ratio(y, img[0, 0].numpy(), data_range=1.0)
        assert tr.metrics["psnr"][i] == pytest.approx(ref, rel=1e-4)
        assert tr.loss[i] == pytest.approx(tr.metrics["mse"][i], rel=1e-5)
    assert tr.final("psnr") == tr.metrics["psnr"][-1]
    assert tr.seconds > 0


@pytest.mark.skipif(not hasattr(lb_metrics, "ssim"), reason="lossbook.metrics.ssim not yet merged")
def test_ssim_metric_by_name_matches_skimage(gen):
    target = torch.rand(1, 1, 32, 32, generator=gen)
    init = torch.rand(1, 1, 32, 32, generator=gen)
    tr = descend(_mse, target, init, steps=2, lr=0.05, metrics=["ssim"], snapshot_at=[2])
    ref = structural_similarity(target[0, 0].numpy(), tr.snapshots[0][0, 0].numpy(),
                                data_range=1.0, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert tr.metrics["ssim"][-1] == pytest.approx(ref, abs=1e-4)


def test_components_custom_metrics_and_determinism(pair):
    target, init = pair
    init_copy = init.clone()

    def combined(x, y):
        a, b = _mse(x, y), _l1(x, y)
        return a + 0.5 * b, {"mse": a, "l1": b.item()}

    def run():
        return descend(combined, target, init, steps=4, lr=0.05,
                       metrics={"max_err": lambda x, y: (x - y).abs().amax()})

    tr, tr2 = run(), run()
    assert tr.loss == tr2.loss and torch.equal(tr.image, tr2.image)
    torch.testing.assert_close(init, init_copy, rtol=0, atol=0)  # init not modified
    for k in range(5):
        assert tr.loss[k] == pytest.approx(tr.components["mse"][k] + 0.5 * tr.components["l1"][k])
    assert tr.metrics["max_err"][0] == pytest.approx(float((init - target).abs().max()))
    assert tr.final("l1") == tr.components["l1"][-1]


def test_clamp_keeps_pixels_in_range(gen):
    target = torch.rand(1, 1, 8, 8, generator=gen)
    init = torch.randn(1, 1, 8, 8, generator=gen) * 3  # far outside [0, 1]
    push_up = lambda x, y: -x.mean()  # noqa: E731 - unbounded loss: pixels run upwards
    tr = descend(push_up, target, init, steps=5, lr=1.0, snapshot_at=[0])
    assert tr.snapshots[0].min() >= 0 and tr.snapshots[0].max() <= 1
    assert torch.equal(tr.image, torch.ones_like(target))
    free = descend(push_up, target, init, steps=5, lr=1.0, clamp=False)
    # constant gradient: Adam moves every pixel by exactly lr per step, nothing clips it
    torch.testing.assert_close(free.image, init + 5.0, rtol=0, atol=1e-5)
    assert free.image.max() > 1


def test_optimizer_factory(pair):
    target, init = pair
    tr = descend(_mse, target, init, steps=5, lr=123.0,
                 optimizer=lambda p: torch.optim.SGD(p, lr=25.6, momentum=0.0))
    r = 1 - 2 * 25.6 / target.numel()  # the factory's lr, not the argument's
    assert tr.loss[-1] == pytest.approx(tr.loss[0] * r**10, rel=1e-12)


def test_snapshot_steps():
    assert snapshot_steps(100, 6) == [0, 1, 3, 10, 32, 100]
    assert snapshot_steps(5, 2) == [0, 5]
    s = snapshot_steps(300, 12)
    assert s[0] == 0 and s[-1] == 300 and s == sorted(set(s)) and len(s) <= 12


def test_first_step_reaching(pair):
    target, init = pair
    tr = descend(_mse, target, init, steps=10, lr=64.0, optimizer="sgd", metrics=["psnr"])
    k = tr.first_step_reaching("psnr", tr.metrics["psnr"][4])
    assert k == 4
    assert tr.first_step_reaching("psnr", math.inf) is None
    assert tr.first_step_reaching("loss", tr.loss[3], above=False) == 3


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"steps": 0}, ValueError, r"steps must be an int >= 1; got 0"),
        ({"steps": 2.5}, ValueError, r"steps must be an int >= 1; got 2.5"),
        ({"lr": -1.0}, ValueError, r"lr must be a positive finite number.*got -1.0"),
        ({"lr": math.nan}, ValueError, r"lr must be a positive finite number"),
        ({"record_every": 0}, ValueError, r"record_every must be an int >= 1"),
        ({"optimizer": "lbfgs"}, ValueError, r"optimizer must be one of 'adam', 'sgd'.*'lbfgs'"),
        ({"optimizer": lambda p: 3}, TypeError, r"factory must return a torch.optim.Optimizer"),
        ({"metrics": ["psnrr"]}, ValueError, r"unknown metric 'psnrr'; available by name: 'psnr'"),
        ({"metrics": "psnr"}, TypeError, r"Write metrics=\['psnr'\]"),
        ({"metrics": {"a": 1}}, TypeError, r"metrics values must be callables"),
        ({"snapshot_at": [11]}, ValueError, r"snapshot_at must hold ints in \[0, steps=10\]"),
        ({"clamp": 1}, TypeError, r"clamp must be True or False"),
        ({"data_range": 0}, ValueError, r"data_range must be positive"),
    ],
)
def test_bad_arguments(pair, kwargs, exc, match):
    target, init = pair
    args = {"steps": 10, "lr": 0.1} | kwargs
    with pytest.raises(exc, match=match):
        descend(_mse, target, init, **args)


def test_bad_images_and_losses(pair):
    target, init = pair
    with pytest.raises(TypeError, match=r"loss_fn must be a callable"):
        descend("mse", target, init, steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"init and target must have the same shape"):
        descend(_mse, target, init[..., :8], steps=1, lr=0.1)
    with pytest.raises(ValueError, match=r"init must have 4 dimensions"):
        descend(_mse, target[0], init[0], steps=1, lr=0.1)
    bad = init.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match=r"init holds 1 NaN"):
        descend(_mse, target, bad, steps=1, lr=0.1)
    with pytest.raises(TypeError, match=r"loss_fn must return a scalar tensor; got a tensor of "):
        descend(lambda x, y: (x - y) ** 2, target, init, steps=1, lr=0.1)
    with pytest.raises(TypeError, match=r"tuple of length 3"):
        descend(lambda x, y: (_mse(x, y), {}, 1), target, init, steps=1, lr=0.1)
    with pytest.raises(FloatingPointError, match=r"the loss became nan at step 0"):
        descend(lambda x, y: _mse(x, y) * math.nan, target, init, steps=1, lr=0.1)


def test_trajectory_lookup_errors():
    tr = Trajectory(step=[0], loss=[1.0], metrics={"psnr": [3.0]})
    with pytest.raises(KeyError, match=r"'ssim' was not recorded; recorded: 'loss', 'psnr'"):
        tr.final("ssim")
    with pytest.raises(KeyError, match=r"'ssim' was not recorded; recorded metrics: 'psnr'"):
        tr.first_step_reaching("ssim", 0.5)


# --- the animation of trajectories (lossbook.viz.animate_images, used by chapter 4) ------------

def test_animate_images_plays_the_snapshots(pair):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lossbook.viz import animate_images

    target, init = pair
    tr = descend(_mse, target, init, steps=4, lr=0.05, snapshot_at=[0, 2, 4])
    anim = animate_images({"MSE": tr.snapshots, "target": [target] * 3}, ["step 0", "2", "4"])
    html = anim.to_jshtml()
    assert html.count("data:image/png;base64") == 3  # one embedded frame per label
    anim._func(2)  # the last frame shows the last snapshot
    np.testing.assert_allclose(anim._fig.axes[0].images[0].get_array(), tr.image[0, 0].numpy(),
                               rtol=1e-6)
    plt.close(anim._fig)
    with pytest.raises(ValueError, match=r"one image per label \(3\); got lengths"):
        animate_images({"a": tr.snapshots[:2]}, ["0", "2", "4"])
