"""Tests for super-resolution: lossbook.data.sr, models.EDSR, the SR metric conventions in
lossbook.metrics, and the experiment ``sr-losses``.

References: Pillow's ``Image.resize`` (bicubic with antialiasing, Lanczos) for the LR
images; scikit-image's ``rgb2ycbcr``, ``peak_signal_noise_ratio`` and
``structural_similarity`` (Wang et al.'s settings) for the metrics, float64, 1e-6;
closed forms (the Y range factor 219/255, parameter counts); a hand-written pixel
shuffle index formula; a fresh run as the reference for a resumed one (identical
numbers).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lossbook.data import (
    SRPatchSampler,
    bicubic_downsample,
    bicubic_upsample,
    crop_to_multiple,
    lanczos_upsample,
    load_images,
    sr_pair,
    sr_pairs,
)
from lossbook.experiments import (
    SR_CONTROL,
    SR_FEATURE_METHODS,
    SR_METHODS,
    SR_METRICS,
    SR_PIXEL_METHODS,
    SR_SIZES,
    evaluate_sr,
    ill_posed_demo,
    make_sr_net,
    pixel_shuffle_figure,
    run_experiment,
    sr_conventions_table,
    sr_findings,
    sr_loss,
)
from lossbook.metrics import psnr, rgb_to_y, sr_ms_ssim, sr_psnr, sr_ssim, sr_view
from lossbook.models import EDSR

pytestmark = pytest.mark.usefixtures("one_thread")


def _pil_resize(a: np.ndarray, size: tuple[int, int], method) -> np.ndarray:
    """Pillow's float ('F' mode) resize of one (H, W) array to (w, h) = size."""
    return np.asarray(Image.fromarray(np.ascontiguousarray(a, dtype=np.float32), mode="F")
                      .resize(size, method))


# ------------------------------------------------------------------------- data


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_downsample_with_antialias_is_pillows_bicubic(scale, gen):
    x = torch.rand(2, 3, 12 * scale, 8 * scale, generator=gen)
    lr = bicubic_downsample(x, scale)
    assert lr.shape == (2, 3, 12, 8)
    ref = np.stack([[_pil_resize(x[n, c].numpy(), (8, 12), Image.BICUBIC) for c in range(3)]
                    for n in range(2)])
    np.testing.assert_allclose(lr.numpy(), ref, atol=1e-5)
    # without antialiasing the kernel is not stretched: a different (aliased) image
    assert (bicubic_downsample(x, scale, antialias=False) - lr).abs().max() > 0.05


def test_antialiasing_removes_what_the_lr_grid_cannot_hold():
    """Stripes at 0.4 cycles/px (above the x2 LR Nyquist 0.25) survive as aliasing only
    without antialiasing."""
    xs = torch.arange(64, dtype=torch.float32)
    stripes = (0.5 + 0.4 * torch.cos(2 * math.pi * 0.4 * xs)).expand(1, 1, 64, 64)
    aa = bicubic_downsample(stripes, 2)
    al = bicubic_downsample(stripes, 2, antialias=False)
    assert float(aa[..., 4:-4, 4:-4].std()) < 0.3 * float(al[..., 4:-4, 4:-4].std())


def test_downsample_errors_and_crop_to_multiple():
    x = torch.rand(1, 1, 10, 9)
    with pytest.raises(ValueError, match="crop_to_multiple"):
        bicubic_downsample(x, 2)
    with pytest.raises(ValueError, match="scale must be an integer >= 2"):
        bicubic_downsample(x, 1)
    with pytest.raises(ValueError, match="scale must be an integer >= 2"):
        bicubic_downsample(x, 2.0)
    c = crop_to_multiple(x, 4)
    assert c.shape == (1, 1, 8, 8) and torch.equal(c, x[..., :8, :8])
    lr, hr = sr_pair(x, 3)
    assert hr.shape == (1, 1, 9, 9) and lr.shape == (1, 1, 3, 3)


def test_upsamplers_keep_constants_and_match_references(gen):
    x = torch.rand(1, 2, 6, 5, generator=gen)
    up = lanczos_upsample(x, 2)
    assert up.shape == (1, 2, 12, 10)
    np.testing.assert_allclose(up[0, 1].numpy(),
                               _pil_resize(x[0, 1].numpy(), (10, 12), Image.LANCZOS), atol=1e-6)
    const = torch.full((1, 3, 5, 7), 0.3)
    for fn in (bicubic_upsample, lanczos_upsample):
        out = fn(const, 4)
        assert out.shape == (1, 3, 20, 28)
        torch.testing.assert_close(out, torch.full_like(out, 0.3), atol=1e-5, rtol=0)
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic")
    torch.testing.assert_close(bicubic_upsample(x, 2), ref)


def test_sr_pairs_colour_and_gray():
    lr, hr = sr_pairs(["camera", "chelsea"], 96, 2)
    assert lr.shape == (2, 3, 48, 48) and hr.shape == (2, 3, 96, 96)
    assert torch.equal(hr[0, 0], hr[0, 1])  # camera is gray: repeated into RGB
    assert (hr[1, 0] - hr[1, 2]).abs().max() > 0.05  # chelsea keeps its colour
    torch.testing.assert_close(lr, bicubic_downsample(hr, 2))
    lr1, hr1 = sr_pairs(["camera"], 96, 4, color=False)
    assert lr1.shape == (1, 1, 24, 24)
    with pytest.raises(ValueError, match="multiple of scale"):
        sr_pairs(["camera"], 98, 4)


def test_sr_patch_sampler_cuts_hr_and_reduces_it(gen):
    imgs = load_images(["astronaut", "coffee"], 64, color=True)
    s = SRPatchSampler(imgs, 2, 16)
    lr, hr = s(5, torch.Generator().manual_seed(3))
    assert lr.shape == (5, 3, 8, 8) and hr.shape == (5, 3, 16, 16)
    torch.testing.assert_close(lr, bicubic_downsample(hr, 2))
    lr2, hr2 = s(5, torch.Generator().manual_seed(3))
    assert torch.equal(hr, hr2) and torch.equal(lr, lr2)
    # every HR patch is a (possibly flipped/rotated) crop of one of the images
    patch = hr[0]
    found = False
    for img in imgs:
        for k in range(4):
            for flip in (False, True):
                p = torch.rot90(patch, k, (1, 2))
                p = p.flip(-1) if flip else p
                win = img.unfold(1, 16, 1).unfold(2, 16, 1)  # (3, 49, 49, 16, 16)
                if ((win - p[:, None, None]).abs().amax((0, 3, 4)) < 1e-6).any():
                    found = True
    assert found
    with pytest.raises(ValueError, match="multiple of scale"):
        SRPatchSampler(imgs, 3, 16)


# ------------------------------------------------------------------------- EDSR


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_edsr_shapes_no_batchnorm_and_parameter_count(scale):
    m = EDSR(scale=scale, channels=3, features=8, blocks=2)
    y = m(torch.rand(2, 3, 7, 5))
    assert y.shape == (2, 3, 7 * scale, 5 * scale)
    assert not any(isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)
                   for mod in m.modules())
    assert any(isinstance(mod, torch.nn.PixelShuffle) for mod in m.modules()) == (scale > 1)
    f, c = 8, 3
    conv = lambda cin, cout: cin * cout * 9 + cout  # noqa: E731
    ups = {1: 0, 2: conv(f, 4 * f), 3: conv(f, 9 * f), 4: 2 * conv(f, 4 * f)}[scale]
    want = conv(c, f) + 2 * 2 * conv(f, f) + conv(f, f) + ups + conv(f, c)
    assert sum(p.numel() for p in m.parameters()) == want


def test_edsr_documented_parameter_counts():
    assert sum(p.numel() for p in EDSR(2).parameters()) == 195_971
    assert sum(p.numel() for p in EDSR(4).parameters()) == 232_963


def test_edsr_residual_scaling_mean_shift_and_bicubic_skip(gen):
    x = torch.rand(1, 3, 6, 6, generator=gen)
    m = EDSR(scale=2, features=8, blocks=2, res_scale=0.1)
    torch.nn.init.zeros_(m.tail.weight)
    torch.nn.init.zeros_(m.tail.bias)
    # zero tail: the output is the mean colour (EDSR's mean shift) ...
    torch.testing.assert_close(m(x), m.mean.expand(1, 3, 12, 12))
    # ... or, with the bicubic skip, exactly the bicubic enlargement
    s = EDSR(scale=2, features=8, blocks=2, bicubic_skip=True)
    s.load_state_dict(m.state_dict())
    torch.testing.assert_close(s(x), bicubic_upsample(x, 2))
    # the residual branch is multiplied by res_scale
    blk = m.body[0]
    h = torch.rand(1, 8, 4, 4, generator=gen)
    branch = blk.conv2(torch.relu(blk.conv1(h)))
    torch.testing.assert_close(blk(h), h + 0.1 * branch)
    # gradients reach every parameter and are finite
    s(x).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in s.parameters())


def test_edsr_errors():
    with pytest.raises(ValueError, match="scale must be an int"):
        EDSR(scale=0)
    with pytest.raises(ValueError, match="mean must have"):
        EDSR(channels=3, mean=(0.1, 0.2))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        EDSR()(torch.rand(1, 1, 8, 8))


def test_pixel_shuffle_follows_the_documented_index_formula(gen):
    r, c = 3, 2
    t = torch.rand(1, c * r * r, 4, 5, generator=gen)
    out = torch.nn.PixelShuffle(r)(t)
    for ch in range(c):
        for y in range(4 * r):
            for x in range(5 * r):
                assert out[0, ch, y, x] == t[0, ch * r * r + r * (y % r) + x % r, y // r, x // r]
    import matplotlib.pyplot as plt

    fig = pixel_shuffle_figure()
    assert len(fig.axes) == 5 and fig.axes[0].get_title()
    plt.close(fig)


# ------------------------------------------------------------------------- metrics


def test_rgb_to_y_is_bt601_as_scikit_image(gen):
    x = torch.rand(2, 3, 9, 7, generator=gen, dtype=torch.float64)
    ref = rgb2ycbcr(x.permute(0, 2, 3, 1).numpy())[..., 0] / 255.0
    np.testing.assert_allclose(rgb_to_y(x)[:, 0].numpy(), ref, atol=1e-12)
    # other data ranges: scaled with the range
    np.testing.assert_allclose(rgb_to_y(255 * x, data_range=255.0)[:, 0].numpy(), 255 * ref,
                               atol=1e-9)
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y(torch.rand(1, 1, 4, 4))


def test_sr_psnr_by_hand_and_against_scikit_image(gen):
    a = torch.rand(3, 3, 20, 24, generator=gen, dtype=torch.float64)
    b = (a + 0.05 * torch.randn(a.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ya = rgb2ycbcr(a.permute(0, 2, 3, 1).numpy())[..., 0] / 255.0
    yb = rgb2ycbcr(b.permute(0, 2, 3, 1).numpy())[..., 0] / 255.0
    s = 3
    ref = [peak_signal_noise_ratio(ya[i, s:-s, s:-s], yb[i, s:-s, s:-s], data_range=1.0)
           for i in range(3)]
    got = sr_psnr(b, a, channel="y", shave=s, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-9)
    # by hand: 10 log10(1 / mean squared Y difference over the shaved region)
    d = (ya - yb)[:, s:-s, s:-s]
    np.testing.assert_allclose(got.numpy(), 10 * np.log10(1 / (d**2).mean((1, 2))), rtol=1e-9)
    rgb = [peak_signal_noise_ratio(a[i].numpy(), b[i].numpy(), data_range=1.0) for i in range(3)]
    np.testing.assert_allclose(sr_psnr(b, a, channel="rgb", shave=0, reduction="none").numpy(),
                               rgb, rtol=1e-9)
    torch.testing.assert_close(sr_psnr(b, a, channel="rgb", shave=0), psnr(b, a))


def test_y_of_a_gray_image_scores_20log10_255_over_219_higher(gen):
    g = torch.rand(2, 1, 16, 16, generator=gen, dtype=torch.float64)
    h = (g + 0.03 * torch.randn(g.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    gray = sr_psnr(h, g, channel="y", shave=0)  # one channel: its own luma
    assert float(gray) == pytest.approx(float(psnr(h, g)), rel=1e-12)
    rgb3 = sr_psnr(h.repeat(1, 3, 1, 1), g.repeat(1, 3, 1, 1), channel="y", shave=0)
    assert float(rgb3 - gray) == pytest.approx(20 * math.log10(255 / 219), abs=1e-9)


def test_sr_ssim_and_ms_ssim_against_references(gen):
    a = torch.rand(1, 3, 40, 44, generator=gen, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(a.shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ya = rgb2ycbcr(a.permute(0, 2, 3, 1).numpy())[0, ..., 0] / 255.0
    yb = rgb2ycbcr(b.permute(0, 2, 3, 1).numpy())[0, ..., 0] / 255.0
    ref = structural_similarity(ya[2:-2, 2:-2], yb[2:-2, 2:-2], data_range=1.0,
                                gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert float(sr_ssim(b, a, channel="y", shave=2)) == pytest.approx(ref, abs=1e-6)
    big = torch.rand(1, 3, 170, 170, generator=gen)
    assert float(sr_ms_ssim(big, big, channel="y", shave=2)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="160"):
        sr_ms_ssim(big, big, channel="y", shave=5)


def test_sr_view_and_conventions_have_no_hidden_defaults():
    x = torch.rand(1, 3, 10, 12)
    assert sr_view(x, channel="rgb", shave=2).shape == (1, 3, 6, 8)
    assert sr_view(x, channel="y", shave=0).shape == (1, 1, 10, 12)
    with pytest.raises(TypeError):
        sr_psnr(x, x)  # channel and shave must be stated
    with pytest.raises(ValueError, match="channel must be one of"):
        sr_view(x, channel="Y", shave=0)
    with pytest.raises(ValueError, match="shave must be an int"):
        sr_view(x, channel="y", shave=-1)
    with pytest.raises(ValueError, match="leaves nothing"):
        sr_view(x, channel="y", shave=5)
    with pytest.raises(ValueError, match="1 \\(gray\\) or 3"):
        sr_view(torch.rand(1, 2, 8, 8), channel="y", shave=0)


# ------------------------------------------------------------------------- experiment


def test_methods_and_losses():
    assert SR_METHODS == SR_PIXEL_METHODS + (SR_CONTROL,) + SR_FEATURE_METHODS
    assert set(SR_PIXEL_METHODS) == {"L1", "L2", "Charbonnier", "Mix"}
    sizes = SR_SIZES["smoke"]
    net = make_sr_net(sizes)
    lr, hr = SRPatchSampler(load_images(["astronaut"], 64, color=True), 2,
                            sizes["patch_size"])(2, torch.Generator().manual_seed(0))
    for m in SR_PIXEL_METHODS + (SR_CONTROL,):
        loss = sr_loss(m, sizes)
        out = loss(net(lr), hr)
        value = out[0] if isinstance(out, tuple) else out
        net.zero_grad()
        value.backward()
        assert torch.isfinite(value) and all(torch.isfinite(p.grad).all()
                                             for p in net.parameters())
    with pytest.raises(ValueError, match="unknown method"):
        sr_loss("L3", sizes)
    # the same initial weights for every method
    a, b = make_sr_net(sizes), make_sr_net(sizes)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_evaluate_sr_matches_the_metric_functions():
    lr, hr = sr_pairs(["camera", "chelsea"], 168, 2)
    ev = evaluate_sr(lambda x: bicubic_upsample(x, 2), (lr, hr), 2, return_outputs=True)
    assert list(ev["per_image"]) == list(SR_METRICS)
    assert math.isnan(ev["feature_distance"])  # no feature network given
    out = bicubic_upsample(lr, 2).clamp(0, 1)
    torch.testing.assert_close(ev["outputs"], out)
    want = sr_psnr(out, hr, channel="y", shave=2, reduction="none")
    np.testing.assert_allclose(ev["per_image"]["psnr_y"], want.numpy(), rtol=1e-6)
    assert ev["psnr_y"] == pytest.approx(float(want.mean()), rel=1e-6)
    rgb = [peak_signal_noise_ratio(hr[i].numpy(), out[i].numpy(), data_range=1.0)
           for i in range(2)]
    np.testing.assert_allclose(ev["per_image"]["psnr_rgb"], rgb, rtol=1e-5)
    assert 0 < ev["sharpness"] < 1  # bicubic is blurrier than the truth
    assert not math.isnan(ev["ms_ssim_y"])  # 164 px after shaving: five scales fit
    # the truth itself: sharpness ratio exactly 1
    ev_hr = evaluate_sr(lambda x: hr[:1] if x.shape[-1] == 84 and torch.equal(x, lr[:1])
                        else hr[1:], (lr, hr), 2)
    np.testing.assert_allclose(ev_hr["per_image"]["sharpness"], [1.0, 1.0], rtol=1e-5)


def test_ill_posed_demo_many_hr_one_lr():
    d = ill_posed_demo(size=64, n=6)
    assert d["lr_rms"] < 0.1 * d["hr_rms"]  # the LR images are (almost) the same
    assert d["psnr_mean"] > d["psnr_sharp"] + 2  # the blurry mean wins on MSE
    # the mean has lost the texture: its fine detail is far weaker than a candidate's
    lap = lambda z: (z[..., 1:, :] - z[..., :-1, :]).abs().mean()  # noqa: E731
    assert lap(d["mean"]) < 0.5 * lap(d["candidates"][:1])


def _metrics(payload):
    return [(r["method"], r["psnr_y"], r["ssim_y"], r["psnr_rgb"], r["sharpness"])
            for r in payload["results"]]


def test_run_writes_json_and_resumes_after_a_kill(tmp_path):
    methods = ["L2", "L1"]
    ref = run_experiment("sr-losses", budget="smoke", out=tmp_path / "a", progress=False,
                         methods=methods)
    payload = json.loads((tmp_path / "a" / "sr-losses.json").read_text())
    assert payload["budget"] == "smoke" and payload["scale"] == 2
    assert [r["method"] for r in payload["results"]] == ["bicubic", "Lanczos", "L1", "L2"]
    for name in payload["figures"]:
        assert (tmp_path / "a" / name).stat().st_size > 1000
    # the baselines' scores are the metric functions' on the test pairs
    lr, hr = ref.pairs
    want = float(sr_psnr(bicubic_upsample(lr, 2).clamp(0, 1), hr, channel="y", shave=2))
    assert ref.row("bicubic")["psnr_y"] == pytest.approx(want, rel=1e-6)

    out = tmp_path / "b"
    steps = SR_SIZES["smoke"]["steps"]

    def kill(method, step, model, history):
        if method == "L1" and step == steps // 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment("sr-losses", budget="smoke", out=out, progress=False, methods=methods,
                       callback=kill)
    assert not (out / "sr-losses.json").exists()
    (ckpt,) = (out / "sr-losses").glob("smoke-*/l1.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == steps // 2
    resumed = run_experiment("sr-losses", budget="smoke", out=out, progress=False,
                             methods=methods, figures=False)
    assert _metrics(resumed.payload) == _metrics(ref.payload)
    assert resumed.histories["L1"].resumed_from == steps // 2
    assert resumed.payload["curves"] == ref.payload["curves"]

    table = sr_conventions_table(resumed)
    rows = {r["method"]: r for r in table["scoring"]}
    assert rows["L1"]["Y, shave 2"] == pytest.approx(resumed.row("L1")["psnr_y"], rel=1e-6)
    assert rows["L1"]["rgb, no shave"] == pytest.approx(resumed.row("L1")["psnr_rgb"], rel=1e-6)
    aa = {r["method"]: r for r in table["antialias"]}
    assert aa["bicubic"]["LR antialiased"] == pytest.approx(want, rel=1e-6)
    assert set(aa) == {"bicubic", max(methods, key=lambda m: resumed.row(m)["psnr_y"])}


def _fake(psnr_l1, psnr_bic, n=4, budget="cpu"):
    rng = np.random.default_rng(0)
    rows = []
    for m, base in (("bicubic", psnr_bic), ("L1", psnr_l1), ("L2", psnr_l1 - 0.3)):
        per = list(base + 0.01 * rng.standard_normal(n))
        rows.append({"method": m, "kind": "baseline" if m == "bicubic" else "learned",
                     "psnr_y": float(np.mean(per)), "sharpness": 0.5,
                     "feature_distance": float("nan"),
                     "per_image": {"psnr_y": per, "sharpness": [0.5] * n}})
    return {"budget": budget, "scale": 2, "methods": ["L1", "L2"], "results": rows}


def test_findings_are_computed_from_the_numbers():
    met = sr_findings(_fake(31.5, 30.0))
    assert any("Best pixel-loss network on PSNR: L1" in s and "is met" in s
               and "excludes zero" in s for s in met)
    assert not any("Smoke" in s for s in met)
    missed = sr_findings(_fake(30.5, 30.0, budget="smoke"))
    assert missed[0].startswith("Smoke budget")
    assert any("not met" in s for s in missed)
    assert any("Highest PSNR of all: L1" in s for s in missed)


def test_feature_and_adversarial_methods_fine_tune_the_l1_network(tmp_path):
    r = run_experiment("sr-losses", budget="smoke", out=tmp_path, progress=False,
                       methods=["L1+perceptual+adversarial", "content+style", SR_CONTROL],
                       figures=False)
    # the L1 network they start from is trained and reported too
    assert r.payload["methods"] == ["L1", SR_CONTROL, "content+style",
                                    "L1+perceptual+adversarial"]
    assert r.row(SR_CONTROL)["finetuned_from"] == "L1"
    lines = sr_findings(r)
    assert any(s.startswith("The control, L1 trained") for s in lines)
    assert any(s.startswith(f"content+style vs {SR_CONTROL}") for s in lines)
    adv = r.row("L1+perceptual+adversarial")
    assert adv["finetuned_from"] == "L1"
    assert adv["steps"] == SR_SIZES["smoke"]["steps"] + SR_SIZES["smoke"]["finetune_steps"]
    comps = r.payload["curves"]["L1+perceptual+adversarial"]["components"]
    assert {"l1", "perceptual", "adversarial", "d_loss"} <= set(comps)
    assert set(r.payload["curves"]["content+style"]["components"]) >= {"content", "style"}
    assert all(math.isfinite(x["feature_distance"]) for x in r.rows)
    assert "offline" in r.payload["feature_net"]
    # fine-tuning changed the L1 network's weights
    l1, ft = r.models["L1"], r.models["L1+perceptual+adversarial"]
    assert any(not torch.equal(p, q) for p, q in zip(l1.parameters(), ft.parameters(),
                                                     strict=True))
    import matplotlib.pyplot as plt

    from lossbook.experiments import sr_difference_figure, sr_plane_figure

    for fig in (sr_plane_figure(r), sr_difference_figure(r)):
        assert fig.axes and fig._suptitle is not None
        plt.close(fig)
