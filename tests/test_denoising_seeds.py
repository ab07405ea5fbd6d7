"""Tests for the training seeds of ``denoise-losses`` (lossbook.experiments.denoising).

A tiny custom size (2 training steps, a 3-layer DnCNN, 2 test images) trained with L2 and
L1, once with one seed and once with two. References: NumPy means and standard deviations
of the per-seed values; the single-seed run itself for seed 0 (bit for bit on the CPU).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lossbook.experiments import DENOISE_SIZES, denoise_findings, get_experiment
from lossbook.experiments.core import METRICS
from lossbook.experiments.denoising import (
    denoise_checkpoint_name,
    denoise_crops_figure,
    denoise_seeds,
    make_denoiser,
)
from lossbook.train import load_checkpoint

METHODS = ["L2", "L1"]


def _run(sizes, workdir):
    exp = get_experiment("denoise-losses")
    result = exp.run(sizes, workdir=workdir, device=torch.device("cpu"), progress=False,
                     methods=METHODS)
    result.payload["budget"] = "tiny"  # as run_experiment would add (not "smoke")
    return result


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    return tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")


@pytest.fixture(scope="module")
def runs(workdirs, tiny_denoise_sizes):
    tiny = tiny_denoise_sizes
    return _run(dict(tiny, seeds=1), workdirs[0]), _run(dict(tiny, seeds=2), workdirs[1])


def test_budgets_train_one_seed_on_cpu_and_three_on_gpu():
    assert [DENOISE_SIZES[b]["seeds"] for b in ("smoke", "cpu", "gpu")] == [1, 1, 3]
    assert denoise_seeds({}) == 1  # sizes written before seeds existed: one seed
    with pytest.raises(ValueError, match="at least 1"):
        denoise_seeds({"seeds": 0})
    assert denoise_checkpoint_name("MSE+SSIM") == "mse_ssim.pt"  # seed 0: the old name
    assert denoise_checkpoint_name("L1", 2) == "l1_seed2.pt"


def test_rows_are_means_over_the_seeds(runs):
    _, two = runs
    assert two.payload["seeds"] == 2 and "mean over 2 training seeds" in two.payload["notes"]
    for m in METHODS:
        r = two.row(m)
        for metric in METRICS:
            v = r[f"{metric}_per_seed"]
            assert len(v) == 2
            assert r[metric] == pytest.approx(np.mean(v), abs=1e-12)
            assert r[f"{metric}_seed_sd"] == pytest.approx(np.std(v, ddof=1), abs=1e-12)
        # the bootstrap's per-image scores: averaged over the seeds, image by image
        for metric in ("psnr", "ssim"):
            per_seed = np.array(r[f"{metric}_per_image_per_seed"])
            assert per_seed.shape == (2, 2)  # seeds x test images
            np.testing.assert_allclose(r[f"{metric}_per_image"], per_seed.mean(0), atol=1e-12)
            assert np.mean(r[f"{metric}_per_image"]) == pytest.approx(r[metric], abs=1e-9)
    # baselines have no seeds
    assert "psnr_per_seed" not in two.row("TV (Chambolle)")


def test_seed_0_of_two_seeds_is_the_single_seed_run_exactly(runs):
    one, two = runs
    assert one.payload["seeds"] == 1 and "one training run each" in one.payload["notes"]
    for m in METHODS:
        r1, r2 = one.row(m), two.row(m)
        assert not any(k.endswith(("_per_seed", "_seed_sd")) for k in r1)  # nothing new
        for metric in METRICS:
            assert r2[f"{metric}_per_seed"][0] == r1[metric]
        assert r2["psnr_per_image_per_seed"][0] == r1["psnr_per_image"]
        assert torch.equal(two.outputs[m], one.outputs[m])  # figures: seed 0's outputs
        assert two.payload["curves"][m] == one.payload["curves"][m]
        for a, b in zip(one.models[m].state_dict().values(),
                        two.models[m].state_dict().values(), strict=True):
            assert torch.equal(a, b)
    for m in ("noisy input", "Gaussian filter", "TV (Chambolle)"):
        assert two.row(m) == one.row(m)


def test_seeds_give_different_weights_and_keep_seed_0_checkpoint_names(runs, workdirs,
                                                                       tiny_denoise_sizes):
    one, two = runs
    dir1, dir2 = workdirs
    init = [make_denoiser(tiny_denoise_sizes, seed=s).state_dict() for s in (0, 0, 1)]
    assert all(torch.equal(init[0][k], init[1][k]) for k in init[0])
    assert all(not torch.equal(init[0][k], init[2][k]) for k in init[0] if "weight" in k)
    # the checkpoints a run leaves: seed 0 under the single-seed name, seed 1 suffixed
    assert {p.name for p in dir2.glob("*.pt")} == {"l2.pt", "l2_seed1.pt", "l1.pt",
                                                  "l1_seed1.pt"}
    assert {p.name for p in dir1.glob("*.pt")} == {"l2.pt", "l1.pt"}
    s0 = load_checkpoint(dir2 / "l2.pt")["model"]
    s1 = load_checkpoint(dir2 / "l2_seed1.pt")["model"]
    single = load_checkpoint(dir1 / "l2.pt")["model"]
    assert all(torch.equal(single[k], s0[k]) for k in s0)
    assert any(not torch.equal(s0[k], s1[k]) for k in s0)
    assert two.row("L2")["psnr_per_seed"][0] != two.row("L2")["psnr_per_seed"][1]


def test_findings_print_the_seed_spread_only_with_several_seeds(runs):
    one, two = runs
    text1, text2 = "\n".join(denoise_findings(one)), "\n".join(denoise_findings(two))
    assert "seed" not in text1
    assert "mean over 2 training seeds" in text2
    r1, r2 = two.row("L1"), two.row("L2")
    d = [f"{x - y:+.2f}" for x, y in zip(r1["psnr_per_seed"], r2["psnr_per_seed"], strict=True)]
    assert (f"L1 {min(r1['psnr_per_seed']):.2f} to {max(r1['psnr_per_seed']):.2f} dB "
            f"(sd {r1['psnr_seed_sd']:.2f})") in text2
    assert f"L1 minus L2 seed by seed: {d[0]}, {d[1]} dB." in text2
    assert "TV (Chambolle) does not depend on the seed" in text2


def test_findings_seed_spread_from_a_made_up_table():
    """Reference: hand-computed ranges, standard deviations and per-seed differences."""
    def row(method, per_seed=None, per_image=(28.0, 28.0)):
        r = {"method": method, "psnr": float(np.mean(per_seed or [28.0])), "ssim": 0.8,
             "ms_ssim": 0.9, "mae": 0.1, "psnr_per_image": list(per_image)}
        if per_seed:
            r["psnr_per_seed"] = per_seed
            r["psnr_seed_sd"] = float(np.std(per_seed, ddof=1))
        return r

    payload = {"budget": "gpu", "methods": ["L2", "L1"], "results": [
        row("TV (Chambolle)", per_image=(27.0, 27.0)),
        row("L2", [28.0, 28.2, 28.4], (28.1, 28.3)),
        row("L1", [28.5, 28.1, 28.3], (28.2, 28.4)),
    ]}
    text = "\n".join(denoise_findings(payload))
    assert "Across 3 seeds: L1 28.10 to 28.50 dB (sd 0.20); L2 28.00 to 28.40 dB " \
           "(sd 0.20); L1 minus L2 seed by seed: +0.50, -0.10, -0.10 dB." in text


def test_crops_of_a_multi_seed_run_show_seed_0(runs):
    import matplotlib.pyplot as plt

    _, two = runs
    fig = denoise_crops_figure(two, image=1, methods=["L1"])
    titles = [ax.get_title() for ax in fig.axes]
    assert f"L1\n{two.row('L1')['psnr_per_image_per_seed'][0][1]:.2f} dB" in titles
    assert "seed 0 of 2" in fig._suptitle.get_text()
    plt.close(fig)
