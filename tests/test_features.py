"""Tests for lossbook.experiments.features (Chapter 8's studies and the
'perceptual-adversarial' experiment) at the smoke budget, offline network.

References: a patch shuffle is a permutation (checked tile by tile); Gram invariance
(Gatys et al. 2015) predicts a shuffled texture scores far below a different texture;
the inversion from relu1_2 is closer to the image than from relu4_3 (pooling discards
positions); the findings' numbers are recomputed from the rows with lossbook.stats.
"""

from __future__ import annotations

import matplotlib
import pytest
import torch

from lossbook.experiments import features as F
from lossbook.experiments.core import run_experiment
from lossbook.models import offline_feature_net
from lossbook.stats import paired_bootstrap

matplotlib.use("Agg")
pytestmark = pytest.mark.usefixtures("one_thread")

SMOKE = F.feature_sizes("smoke")


@pytest.fixture(scope="module")
def net():
    return offline_feature_net()


def test_patch_shuffle_is_a_permutation_of_tiles():
    x = torch.arange(64.0).reshape(1, 1, 8, 8)
    y = F.patch_shuffle(x, 4, seed=1)
    tiles = lambda t: sorted(tuple(t[0, 0, i:i + 4, j:j + 4].flatten().tolist())  # noqa: E731
                             for i in (0, 4) for j in (0, 4))
    assert tiles(x) == tiles(y) and not torch.equal(x, y)
    with pytest.raises(ValueError, match="divisible"):
        F.patch_shuffle(torch.rand(1, 1, 10, 8), 4)


def test_shuffled_texture_scores_far_below_another_texture(net):
    study = F.texture_study(SMOKE, net)
    for r in study["rows"]:
        assert r["shuffled_texture_loss"] < 0.2 * r["other_texture_loss"], r
        assert r["shuffled_ssim"] < 0.5 and r["synthesis_texture_loss"] < r["noise_texture_loss"]
    assert study["synthesis"]["brick"].shape == (1, 1, SMOKE["texture_size"],
                                                 SMOKE["texture_size"])


def test_inversion_from_shallow_layers_is_closer(net):
    inv = F.feature_inversion(SMOKE, net, layers=("relu1_2", "relu4_3"))
    assert inv["psnr"]["relu1_2"] > inv["psnr"]["relu4_3"]
    assert inv["results"]["relu1_2"].min() >= 0 and inv["results"]["relu1_2"].max() <= 1
    assert "offline" in inv["net"]


def test_experiment_runs_resumes_and_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "smoke")
    r = run_experiment("perceptual-adversarial", budget="smoke", out=tmp_path, progress=False)
    methods = [row["method"] for row in r.rows]
    assert methods[:4] == ["degraded input", "L1", "L1+perceptual", "perceptual"]
    assert [m for m in methods if "adv" in m] == [F._gan_name(w) for w in SMOKE["adv_weights"]]
    for row in r.rows:
        assert len(row["psnr_per_image"]) == SMOKE["n_test"] and row["sharpness"] > 0
    assert "offline" in r.payload["feature_net"] and (tmp_path / "perceptual-adversarial.json"
                                                      ).is_file()
    lines = F.restore_findings(r)
    assert lines[0].startswith("Feature network") and "Smoke budget" in lines[1]
    d = paired_bootstrap(r.row("perceptual")["psnr_per_image"], r.row("L1")["psnr_per_image"],
                         seed=0)
    assert f"{d['mean']:+.2f}" in next(s for s in lines if s.startswith("perceptual vs L1"))
    # a second run resumes every checkpoint and reproduces the numbers
    again = run_experiment("perceptual-adversarial", budget="smoke", out=tmp_path,
                           progress=False, write=False)
    assert [row["psnr"] for row in again.rows] == [row["psnr"] for row in r.rows]
    for fig in (F.restore_difference_figure(r), F.restore_spectrum_figure(r),
                F.perception_distortion_figure(r), F.restore_crops_figure(r)):
        assert fig.axes and fig.axes[0].get_title() != "" or fig._suptitle is not None
