"""Tests for lossbook.experiments: evaluation, the registry, denoise-losses, exact resume.

References: scikit-image's ``peak_signal_noise_ratio`` and ``structural_similarity``
(Gaussian weights, sigma 1.5, population covariance) and pytorch-msssim's ``ms_ssim``
for the evaluation (tolerance 1e-4); NumPy for MAE; an uninterrupted run is the
reference for a resumed one (identical numbers).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import pytorch_msssim
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import lossbook.losses as L
from lossbook.data import gaussian_blur
from lossbook.experiments import (
    DENOISE_METHODS,
    DENOISE_SIZES,
    available_denoise_losses,
    denoise_loss,
    denoise_test_pairs,
    evaluate,
    format_table,
    get_experiment,
    list_experiments,
    load_results,
    run_experiment,
    tune_tv_chambolle,
    tv_chambolle,
)

SMOKE = DENOISE_SIZES["smoke"]


def test_evaluate_matches_scikit_image_and_pytorch_msssim():
    noisy, clean = denoise_test_pairs(SMOKE)  # 2 images of 176 x 176 (divisible by 16)
    ev = evaluate(lambda x: gaussian_blur(x, 1.0), (noisy, clean), return_outputs=True)
    out = ev["outputs"]
    assert out.shape == clean.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    ref_psnr, ref_ssim, ref_mae = [], [], []
    for i in range(2):
        a, b = clean[i, 0].double().numpy(), out[i, 0].double().numpy()
        ref_psnr.append(peak_signal_noise_ratio(a, b, data_range=1.0))
        ref_ssim.append(structural_similarity(a, b, data_range=1.0, gaussian_weights=True,
                                              sigma=1.5, use_sample_covariance=False))
        ref_mae.append(np.abs(a - b).mean())
    ref_ms = pytorch_msssim.ms_ssim(out, clean, data_range=1.0, size_average=False)
    np.testing.assert_allclose(ev["per_image"]["psnr"], ref_psnr, atol=1e-4)
    np.testing.assert_allclose(ev["per_image"]["ssim"], ref_ssim, atol=1e-4)
    np.testing.assert_allclose(ev["per_image"]["ms_ssim"], ref_ms.numpy(), atol=1e-4)
    np.testing.assert_allclose(ev["per_image"]["mae"], ref_mae, atol=1e-6)
    # the table value is the mean of per-image PSNR, not the PSNR of the pooled MSE
    assert ev["psnr"] == pytest.approx(np.mean(ref_psnr), abs=1e-4)


def test_evaluate_runs_a_module_and_checks_pairs():
    noisy, clean = denoise_test_pairs(SMOKE)
    ev = evaluate(torch.nn.Identity(), (noisy, clean))
    ref = np.mean([peak_signal_noise_ratio(clean[i, 0].numpy(),
                                           noisy[i, 0].clamp(0, 1).numpy(), data_range=1.0)
                   for i in range(2)])
    assert ev["psnr"] == pytest.approx(ref, abs=1e-4)
    with pytest.raises(ValueError, match="as many degraded inputs as clean targets"):
        evaluate(torch.nn.Identity(), (noisy, clean[:1]))


def test_registry():
    names = [e.name for e in list_experiments()]
    assert "denoise-losses" in names
    exp = get_experiment("denoise-losses")
    assert set(exp.sizes) == {"smoke", "cpu", "gpu"}
    assert exp.sizes_for("smoke") == SMOKE
    with pytest.raises(ValueError, match="unknown experiment 'nope'; available: denoise-losses"):
        get_experiment("nope")
    with pytest.raises(ValueError, match="unknown method 'L3'"):
        denoise_loss("L3", SMOKE)
    assert "method" in format_table([{"method": "a", "psnr": 1.0}], ("method", "psnr"))


# The pieces of lossbook.losses each training loss needs (from helpers A and D). A loss
# whose pieces exist is required to be available and trainable; one whose pieces are
# still missing is skipped, saying which. Once they all exist, all eight are required.
NEEDS = {
    "L2": ["MSELoss"], "L1": ["L1Loss"], "Charbonnier": ["CharbonnierLoss"],
    "SSIM": ["SSIMLoss"], "MS-SSIM": ["MSSSIMLoss"], "Mix": ["MixLoss"],
    "MSE+SSIM": ["CombinedLoss", "SSIMLoss"], "L2+TV": ["CombinedLoss", "TVLoss"],
}


def test_the_eight_methods_are_listed():
    assert set(DENOISE_METHODS) == set(NEEDS) and len(DENOISE_METHODS) == 8


@pytest.mark.parametrize("method", DENOISE_METHODS)
def test_each_training_loss_is_available_and_differentiable(method):
    missing = [n for n in NEEDS[method] if not hasattr(L, n)]
    if missing:
        pytest.skip(f"lossbook.losses lacks {missing}: {method} cannot be built yet")
    ok, why = available_denoise_losses(SMOKE)
    assert method in ok, why.get(method)
    loss = denoise_loss(method, SMOKE)
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 1, SMOKE["patch_size"], SMOKE["patch_size"], generator=g)
    x = (y + 0.1 * torch.randn(y.shape, generator=g)).clamp(0, 1).requires_grad_()
    out = loss(x, y)
    total = out[0] if isinstance(out, tuple) else out
    assert total.ndim == 0 and torch.isfinite(total)
    total.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with torch.no_grad():
        at_optimum = loss(y, y)
    at_optimum = at_optimum[0] if isinstance(at_optimum, tuple) else at_optimum
    assert total.item() > at_optimum.item()


@pytest.mark.parametrize("budget", ["smoke", "cpu", "gpu"])
def test_ms_ssim_training_losses_fit_the_patches_of_every_budget(budget):
    """MS-SSIM needs sides > (win - 1) 2^(scales - 1): the patches must be large enough."""
    sizes = DENOISE_SIZES[budget]
    p = sizes["patch_size"]
    assert p > (sizes["ms_ssim_train_win"] - 1) * 2 ** (sizes["ms_ssim_train_scales"] - 1)
    assert sizes["test_size"] > 160  # 5-scale MS-SSIM metric on the test images
    if not hasattr(L, "MSSSIMLoss"):
        pytest.skip("lossbook.losses lacks MSSSIMLoss")
    x = torch.rand(1, 1, p, p, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(denoise_loss("MS-SSIM", sizes)(x, x.flip(-1)))


def test_tv_chambolle_tuning_picks_the_best_grid_value():
    """Reference: scikit-image's PSNR of scikit-image's TV denoiser at each grid value."""
    from skimage.restoration import denoise_tv_chambolle

    from lossbook.data import TRAIN_IMAGES, add_gaussian_noise, load_images

    best, info = tune_tv_chambolle(SMOKE)
    clean = load_images(list(TRAIN_IMAGES[: SMOKE["n_tune"]]), SMOKE["test_size"])
    noisy = add_gaussian_noise(clean, 25, generator=torch.Generator().manual_seed(1))
    scores = []
    for w in info["grid"]:
        scores.append(np.mean([peak_signal_noise_ratio(
            clean[i, 0].numpy(), np.clip(denoise_tv_chambolle(noisy[i, 0].double().numpy(),
                                                              weight=w), 0, 1), data_range=1.0)
            for i in range(len(clean))]))
    np.testing.assert_allclose(info["psnr"], scores, atol=1e-3)
    assert best == info["grid"][int(np.argmax(scores))]
    assert tv_chambolle(noisy, best).shape == noisy.shape


def _metrics(payload):
    return [(r["method"], r["psnr"], r["ssim"], r["ms_ssim"], r["mae"]) for r in
            payload["results"]]


def test_run_writes_json_and_resumes_after_a_kill(tmp_path):
    methods = ["L2", "L1"]
    ref = run_experiment("denoise-losses", budget="smoke", out=tmp_path / "a", progress=False,
                         methods=methods)
    payload = json.loads((tmp_path / "a" / "denoise-losses.json").read_text())
    for key in ("experiment", "budget", "device", "seconds", "lossbook_version", "results"):
        assert key in payload
    assert payload["budget"] == "smoke" and payload["device"] == "cpu"
    assert [r["method"] for r in payload["results"]] == [
        "noisy input", "Gaussian filter", "TV (Chambolle)", "L2", "L1"]
    assert all(isinstance(r[m], float) for r in payload["results"]
               for m in ("psnr", "ssim", "ms_ssim", "mae"))
    for name in payload["figures"]:
        assert (tmp_path / "a" / name).stat().st_size > 1000
    assert load_results("denoise-losses", tmp_path / "a") == payload

    # kill in the middle of the second method: no JSON, a mid-run checkpoint
    out = tmp_path / "b"

    def kill(method, step, model, history):
        if method == "L1" and step == 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment("denoise-losses", budget="smoke", out=out, progress=False,
                       methods=methods, callback=kill)
    assert not (out / "denoise-losses.json").exists()
    (ckpt,) = (out / "denoise-losses").glob("smoke-*/l1.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 9
    resumed = run_experiment("denoise-losses", budget="smoke", out=out, progress=False,
                             methods=methods)
    assert _metrics(resumed.payload) == _metrics(ref.payload)
    assert resumed.histories["L1"].resumed_from == 9
    assert resumed.payload["curves"] == ref.payload["curves"]
    # delete the JSON, keep the checkpoints: the same numbers again, without training
    (out / "denoise-losses.json").unlink()
    again = run_experiment("denoise-losses", budget="smoke", out=out, progress=False,
                           methods=methods, figures=False)
    assert _metrics(again.payload) == _metrics(ref.payload)


def test_denoise_trains_in_bf16_only_on_cpus_with_bf16_units(monkeypatch, tmp_path):
    """The precision is asked for, used by ``fit`` and recorded, each way (the CPU probe
    forced); a GPU keeps ``fit``'s own choice."""
    from lossbook.experiments import denoising

    for fast, amp, trained, recorded in ((True, "bf16", "bf16", "bf16 autocast"),
                                         (False, "auto", "off", "float32")):
        monkeypatch.setattr(denoising, "cpu_bf16_is_fast", lambda fast=fast: fast)
        assert denoising.denoise_amp("cpu") == amp
        assert denoising.denoise_amp(torch.device("cuda")) == "auto"
        result = run_experiment("denoise-losses", budget="smoke", out=tmp_path / trained,
                                progress=False, methods=["L2"], figures=False)
        assert result.histories["L2"].amp == trained
        assert result.payload["precision"] == recorded


def test_load_results_says_how_to_make_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m lossbook run denoise-losses"):
        load_results("denoise-losses", tmp_path)


def test_findings_are_computed_from_the_numbers():
    """Reference: hand-computed signs and differences of a made-up results table."""
    from lossbook.experiments import denoise_findings

    def row(method, psnr, ssim, ms, per):
        return {"method": method, "psnr": psnr, "ssim": ssim, "ms_ssim": ms, "mae": 0.1,
                "psnr_per_image": per}

    payload = {"budget": "cpu", "methods": ["L2", "L1", "Mix"], "results": [
        row("TV (Chambolle)", 27.0, 0.80, 0.90, [27.0] * 4),
        row("L2", 28.0, 0.81, 0.91, [28.0, 28.0, 28.0, 28.0]),
        row("L1", 28.25, 0.82, 0.93, [28.5, 28.5, 28.5, 27.5]),
        row("Mix", 27.5, 0.85, 0.92, [27.5] * 4),
    ]}
    text = "\n".join(denoise_findings(payload))
    assert "Best learned denoiser on PSNR: L1 (28.25 dB), 1.25 dB above" in text
    assert "target" not in text  # the project's targets are not book content
    assert "PSNR" in text and "interval" in text  # each comparison carries its interval
    assert "L1-trained net is 0.25 dB better than the L2-trained one on average " \
           "(better on 3 of 4 test images)" in text
    assert "Best learned on SSIM: Mix (0.8500); the Mix loss is the best." in text
    assert "Best learned on MS-SSIM: L1 (0.9300); the Mix loss ranks 2 of 3." in text
    payload["results"][2]["psnr"] = 27.5  # L1 now below L2
    payload["results"][0]["psnr"] = 27.5  # TV now only 0.5 dB below the best (L2)
    payload["budget"] = "smoke"
    text = "\n".join(denoise_findings(payload))
    assert "worse than the L2-trained" in text and "not meaningful" not in text
    assert text.startswith("Smoke budget") and "0.50 dB above" in text


# ------------------------------------------------------------------ despeckle-domains


def test_despeckle_registry_and_sizes():
    from lossbook.budget import BUDGETS
    from lossbook.experiments import DESPECKLE_METHODS, DESPECKLE_SIZES, despeckle_sizes

    assert "despeckle-domains" in [e.name for e in list_experiments()]
    exp = get_experiment("despeckle-domains")
    assert exp.sizes is DESPECKLE_SIZES and set(exp.sizes) == {"smoke", "cpu", "gpu"}
    assert despeckle_sizes("cpu") == DESPECKLE_SIZES["cpu"]
    for name, sizes in DESPECKLE_SIZES.items():
        assert sizes["test_size"] == BUDGETS[name].image_size  # the chapter's image size
    assert DESPECKLE_METHODS == ("MSE (linear)", "MSE+SSIM (linear)", "MSE+TV (linear)",
                                 "MSE+ENL (linear)", "MSE (dB)", "MSE+SSIM (dB)",
                                 "MSE+TV (dB)", "MSE+ENL (dB)")


def test_despeckle_losses():
    """Reference: the losses written out with lossbook.losses' functions."""
    from lossbook.experiments import despeckle_loss

    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 1, 32, 32, generator=g)
    p = (t + 0.1 * torch.randn(t.shape, generator=g)).clamp(0, 1)
    assert despeckle_loss("MSE")(p, t) == L.mse(p, t)
    torch.testing.assert_close(despeckle_loss("MSE+SSIM")(p, t),
                               L.mse(p, t) + 0.01 * (1 - L.ssim(p, t)))
    # ID-CNN: mean squared error + 0.002 x isotropic TV *summed* over each image's pixels
    # (forward differences, zero past the last row / column, eps = 1e-3 as in our TV)
    dx = torch.nn.functional.pad(p[..., :, 1:] - p[..., :, :-1], (0, 1, 0, 0))
    dy = torch.nn.functional.pad(p[..., 1:, :] - p[..., :-1, :], (0, 0, 0, 1))
    tv_sum = (torch.sqrt(dx**2 + dy**2 + 1e-6) - 1e-3).flatten(1).sum(1).mean()
    torch.testing.assert_close(despeckle_loss("MSE+TV")(p, t), L.mse(p, t) + 0.002 * tv_sum)
    # ... which is 0.002 * H * W times our pixel-averaged TV
    from lossbook.experiments import despeckle_tv_weight
    torch.testing.assert_close(despeckle_loss("MSE+TV")(p, t), L.mse(p, t) + despeckle_tv_weight(
        32, 32) * L.total_variation(p, "isotropic", eps=1e-3))
    with pytest.raises(ValueError, match="unknown loss 'L1'"):
        despeckle_loss("L1")
    with pytest.raises(ValueError, match="needs a positive enl_weight"):
        despeckle_loss("MSE+ENL")


def test_despeckle_enl_term_and_its_weight():
    """Reference: sar.enl_loss on the patches that have flat pixels, written out."""
    from lossbook import sar
    from lossbook.experiments import (
        DESPECKLE_SIZES,
        DESPECKLE_TARGET_ENL,
        despeckle_enl_term,
        despeckle_enl_weight,
        despeckle_loss,
    )

    g = torch.Generator().manual_seed(1)
    clean = torch.full((3, 1, 32, 32), 0.4)
    clean[1] = torch.rand(1, 32, 32, generator=g)  # textured: no flat pixels
    clean[2, :, :, 16:] = 0.8
    noisy = sar.add_speckle(clean, 1, g)
    mask = sar.homogeneous_mask(clean, max_cv=0.02, size=7) & (clean > 0.05)
    keep = [0, 2]
    want = sar.enl_loss(noisy[keep], DESPECKLE_TARGET_ENL, mask[keep], size=15)
    torch.testing.assert_close(despeckle_enl_term(noisy, clean), want)
    # the dB domain converts both sides back to intensities first
    t_db, n_db = sar.to_unit_db(clean), sar.to_unit_db(noisy)
    torch.testing.assert_close(despeckle_enl_term(n_db, t_db, domain="dB"),
                               sar.enl_loss(sar.from_unit_db(n_db)[keep], DESPECKLE_TARGET_ENL,
                                            mask[keep], size=15), rtol=1e-4, atol=1e-6)
    # speckle far below the target ENL is penalised, a flat output at the target is not
    assert float(want) > 10
    x = noisy.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(despeckle_enl_term(x, clean), x)
    assert torch.isfinite(grad).all() and grad[1].abs().sum() == 0 and grad[0].abs().sum() > 0
    # a batch without flat pixels gives 0 and a zero gradient, not an error
    x = noisy[1:2].clone().requires_grad_(True)
    zero = despeckle_enl_term(x, clean[1:2])
    assert float(zero.detach()) == 0.0
    zero.backward()
    assert x.grad is not None and x.grad.abs().sum() == 0
    loss = despeckle_loss("MSE+ENL", enl_weight=0.5)
    torch.testing.assert_close(loss(noisy, clean), L.mse(noisy, clean) + 0.5 * want)
    # the weight balances the two gradients on the balance batch (3 significant digits):
    # reference, the gradient norms written out with autograd on the same batch
    sizes = DESPECKLE_SIZES["smoke"]
    batch = (noisy.double(), clean.double())
    w = despeckle_enl_weight(sizes, "linear", sampler=lambda n, gen: batch)
    norms = []
    for term in (L.mse, despeckle_enl_term):
        x = batch[0].clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(term(x, batch[1]), x)
        norms.append(float(gx.norm()))
    assert w == pytest.approx(norms[0] / norms[1], rel=5e-3) and float(f"{w:.3g}") == w
    for domain in ("linear", "dB"):  # the experiment's own balance batch
        assert despeckle_enl_weight(sizes, domain) > 0


def test_despeckle_scores_match_scikit_image():
    """Reference: scikit-image's PSNR and SSIM (Gaussian, sigma 1.5, population
    covariance) per image, averaged; NumPy's mean^2 / unbiased variance (ddof=1, as
    sar.enl documents) for the ENL."""
    from lossbook import sar
    from lossbook.experiments import DESPECKLE_SIZES, despeckle_scores, despeckle_test_pairs

    noisy, clean = despeckle_test_pairs(DESPECKLE_SIZES["smoke"])
    out = sar.lee_filter(noisy, 7, 1)
    s = despeckle_scores(out, clean)
    a, b = clean[:, 0].double().numpy(), out.clamp(0, 1)[:, 0].double().numpy()
    ta = sar.to_unit_db(clean)[:, 0].double().numpy()
    tb = sar.to_unit_db(out.clamp(0, 1)).clamp(0, 1)[:, 0].double().numpy()
    ref_psnr = [peak_signal_noise_ratio(a[i], b[i], data_range=1.0) for i in range(2)]
    assert s["psnr"] == pytest.approx(np.mean(ref_psnr), abs=1e-4)
    np.testing.assert_allclose(s["psnr_per_image"], ref_psnr, atol=1e-4)
    assert s["ssim"] == pytest.approx(np.mean([structural_similarity(
        a[i], b[i], data_range=1.0, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False) for i in range(2)]), abs=1e-4)
    assert s["psnr_db"] == pytest.approx(np.mean([peak_signal_noise_ratio(
        ta[i], tb[i], data_range=1.0) for i in range(2)]), abs=1e-4)
    mask = (sar.homogeneous_mask(clean, max_cv=0.02, size=7) & (clean > 0.05)).numpy()
    ratio = (out.clamp_min(0) / clean).double().numpy()[mask]
    assert mask.sum() > 100
    assert s["enl"] == pytest.approx(ratio.mean() ** 2 / ratio.var(ddof=1), rel=1e-4)


def _despeckle_metrics(payload):
    return [(r["method"], r["psnr"], r["ssim"], r["psnr_db"], r["enl"])
            for r in payload["results"]]


def test_despeckle_run_writes_json_and_resumes_after_a_kill(tmp_path):
    from lossbook.experiments import DESPECKLE_METHODS, despeckle_findings

    ref = run_experiment("despeckle-domains", budget="smoke", out=tmp_path / "a",
                         progress=False)
    payload = json.loads((tmp_path / "a" / "despeckle-domains.json").read_text())
    for key in ("experiment", "budget", "device", "seconds", "lossbook_version", "results"):
        assert key in payload
    assert payload["experiment"] == "despeckle-domains"
    assert payload["budget"] == "smoke" and payload["device"] == "cpu"
    assert [r["method"] for r in payload["results"]] == [
        "noisy input", "Lee 7x7", *DESPECKLE_METHODS]
    assert all(isinstance(r[m], float) and np.isfinite(r[m]) for r in payload["results"]
               for m in ("psnr", "ssim", "psnr_db", "enl"))
    assert payload["metrics"] == ["psnr", "ssim", "psnr_db", "enl"]
    assert "psnr_db" in ref.table() and "ms_ssim" not in ref.table()
    # the speckled input has an ENL of about L = 1; the Lee filter raises it
    assert 0.7 < ref.row("noisy input")["enl"] < 1.4 < ref.row("Lee 7x7")["enl"]
    assert ref.outputs["MSE (dB)"].shape == ref.pairs[1].shape
    assert len(payload["figures"]) == 2
    for name in payload["figures"]:
        assert (tmp_path / "a" / name).stat().st_size > 1000
    assert load_results("despeckle-domains", tmp_path / "a") == payload
    text = "\n".join(despeckle_findings(ref))
    assert text.startswith("Smoke budget") and "best dB-domain net" in text

    # kill in the middle of a dB-domain run: no JSON, a mid-run checkpoint; then resume
    out = tmp_path / "b"
    methods = ["MSE (linear)", "MSE+TV (dB)"]

    def kill(method, step, model, history):
        if method == "MSE+TV (dB)" and step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_experiment("despeckle-domains", budget="smoke", out=out, progress=False,
                       methods=methods, callback=kill)
    assert not (out / "despeckle-domains.json").exists()
    (ckpt,) = (out / "despeckle-domains").glob("smoke-*/mse_tv__db_.pt")
    assert torch.load(ckpt, weights_only=True)["step"] == 5
    resumed = run_experiment("despeckle-domains", budget="smoke", out=out, progress=False,
                             methods=methods, figures=False)
    assert resumed.histories["MSE+TV (dB)"].resumed_from == 5
    want = [m for m in _despeckle_metrics(ref.payload)
            if m[0] in ("noisy input", "Lee 7x7", *methods)]
    assert _despeckle_metrics(resumed.payload) == want
    # a rerun reuses the finished checkpoints: the same numbers without training
    again = run_experiment("despeckle-domains", budget="smoke", out=out, progress=False,
                           methods=methods, write=False)
    assert _despeckle_metrics(again.payload) == want
    assert again.histories["MSE (linear)"].resumed_from == 10
