"""Experiment ``practical-guide`` (Chapter 12): runs at smoke size, its tables and findings,
and the findings' verdict logic on hand-made payloads (agrees / disagrees / not shown)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lossbook import experiments as E
from lossbook.experiments import practical as P


def test_registered():
    assert "practical-guide" in {e.name for e in E.list_experiments()}


@pytest.mark.parametrize("upsampling", ["transposed 4x4", "transposed 3x3", "resize-conv"])
def test_autoencoder_variants_keep_the_shape(upsampling):
    sizes = P.practical_sizes("smoke")
    model = P.make_autoencoder(sizes, upsampling=upsampling)
    x = torch.rand(2, 1, 32, 32)
    assert model(x).shape == x.shape
    kinds = {type(m) for m in model.decoder.modules()}
    assert (nn.ConvTranspose2d in kinds) == upsampling.startswith("transposed")
    if upsampling == "transposed 3x3":
        assert all(m.kernel_size == (3, 3) for m in model.decoder.modules()
                   if isinstance(m, nn.ConvTranspose2d))


def test_same_initial_weights_for_a_layout():
    sizes = P.practical_sizes("smoke")
    a, b = P.make_autoencoder(sizes), P.make_autoencoder(sizes)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


def test_losses():
    x, y = torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32)
    for name in P.PRACTICAL_STEPS[:-1] + ("SSIM only", "L1+SSIM"):
        total, parts = P.practical_loss(name)(x, y)
        assert torch.isfinite(total) and parts
    with pytest.raises(ValueError, match="needs weights"):
        P.practical_loss("6 balanced")
    with pytest.raises(ValueError, match="unknown loss"):
        P.practical_loss("perceptual")


def test_test_tiles():
    sizes = P.practical_sizes("smoke")
    noisy, clean = P.practical_test_tiles(sizes)
    n = sizes["n_test"] * (sizes["test_size"] // sizes["tile"]) ** 2
    assert noisy.shape == clean.shape == (n, 1, sizes["tile"], sizes["tile"])
    assert float(clean.min()) >= 0 and float(clean.max()) <= 1
    noisy_c, clean_c = P.practical_test_tiles(sizes, colour=True)
    assert clean_c.shape[1] == 3


def test_smoke_run_subset(tmp_path, one_thread):
    methods = ["1 MSE", "3 MSE+SSIM 0.16/0.84", "transposed 3x3", "resize-conv"]
    r = E.run_experiment("practical-guide", budget="smoke", out=tmp_path, progress=False,
                         write=False, methods=methods)
    assert [row["method"] for row in r.rows] == methods
    assert set(r.outputs) == set(methods)
    b = r.payload["balance"]
    assert b["names"] == ["mse", "ssim", "edge"] and sum(b["balanced"]) == pytest.approx(1)
    table = P.practical_steps_table(r)
    assert "1 MSE" in table and "5 MS-SSIM" not in table
    issues = P.practical_issues_table(r)
    assert "checkerboard" in issues
    lines = P.practical_findings(r)
    assert lines[0].startswith("Smoke budget")
    assert any(line.startswith("blurry:") for line in lines)
    assert any(line.startswith("noisy: a run is missing") for line in lines)
    # every run wrote TensorBoard scalars
    from lossbook import monitor

    tb = f"{r.payload['tensorboard']}/{E.slug('1 MSE')}"
    assert "train/mse" in monitor.read_scalars(tb)


def _payload(blur_symptom, blur_fix):
    def row(method, value, flagged):
        return {"method": method, "psnr": 20.0, "ssim": 0.6, "blur": value,
                "blur_flagged": flagged,
                "psnr_per_image": [20.0, 21.0, 22.0], "ssim_per_image": [0.5, 0.6, 0.7]}

    return {"budget": "cpu", "balance": {"names": ["mse"], "balanced": [1.0]}, "health": {},
            "results": [row("1 MSE", *blur_symptom), row("3 MSE+SSIM 0.16/0.84", *blur_fix)]}


@pytest.mark.parametrize(("symptom", "fix", "expected"), [
    ((0.4, True), (0.9, False), "agrees with the notes"),
    ((0.4, True), (0.5, True), "did not cure it here"),
    ((0.9, False), (0.95, False), "did not appear"),
    ((0.9, False), (0.5, True), "the opposite of the table"),
])
def test_findings_verdicts(symptom, fix, expected):
    lines = P.practical_findings(_payload(symptom, fix))
    blurry = next(line for line in lines if line.startswith("blurry:"))
    assert expected in blurry
