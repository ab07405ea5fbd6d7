"""Tests for lossbook.widgets (explorer + static twin) and lossbook.distortions.

References: the SSIM values are checked against pytorch-msssim (1e-5, float32); the
equal-MSE scaling against the MSE computed directly with torch (relative 1e-3); JPEG
against Pillow's own encoder (the MSE of quality 10 is larger than that of quality 90).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import pytorch_msssim  # noqa: E402
import torch  # noqa: E402

from lossbook import distortions as D  # noqa: E402
from lossbook import widgets  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def img():
    g = torch.Generator().manual_seed(0)
    base = torch.linspace(0, 1, 48).view(1, 1, 1, 48).expand(1, 1, 48, 48)
    return (0.6 * base + 0.3 * torch.rand(1, 1, 48, 48, generator=g)).clamp(0, 1).contiguous()


@pytest.mark.parametrize("name", list(D.DISTORTIONS))
def test_scale_to_mse_reaches_target(img, name):
    target = 100 / 255**2
    out, strength, achieved = D.scale_to_mse(name, img, target)
    direct = float((out.double() - img.double()).pow(2).mean())
    assert achieved == pytest.approx(direct, rel=1e-9)
    assert out.shape == img.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    rel = 0.25 if name == "jpeg" else 2e-3  # JPEG quality is an integer
    assert achieved == pytest.approx(target, rel=rel)


def test_scale_to_mse_errors_and_jpeg_monotone(img):
    with pytest.raises(ValueError, match="outside what this distortion reaches"):
        D.scale_to_mse("mean shift", img, 10.0)
    with pytest.raises(ValueError, match="unknown distortion 'swirl'"):
        D.scale_to_mse("swirl", img, 0.01)
    with pytest.raises(ValueError, match="give low and high"):
        D.scale_to_mse(lambda x, s: x + s, img, 0.01)
    mse = [float((D.jpeg(img, q) - img).pow(2).mean()) for q in (10, 90)]
    assert mse[0] > mse[1] > 0


def test_equal_mse_set_has_different_ssim(img):
    res = D.equal_mse_set(img, 150 / 255**2, names=["mean shift", "gaussian noise"])
    values = {k: float(pytorch_msssim.ssim(v[0], img, data_range=1.0, win_size=11))
              for k, v in res.items()}
    assert values["mean shift"] > values["gaussian noise"] + 0.1


def test_explorer_and_view_build(img):
    ui = widgets.ssim_explorer(img)
    assert {c.description for c in ui.children[:5]} >= {"distortion", "k1", "k2", "sigma"}
    fig = widgets.ssim_view(img, distortion="blur", strength=1.0)
    assert "SSIM =" in fig.axes[1].get_title()
    assert widgets.window_size_for(1.5) == 11


def test_static_sweep_values_match_reference(img):
    anim = widgets.ssim_sweep(img, "strength", [0.05, 0.2], distortion="gaussian noise")
    html = anim.to_jshtml()
    assert "<script" in html and "animation" in html.lower()
    for s, value in zip([0.05, 0.2], anim.ssim_values, strict=True):
        ref = pytorch_msssim.ssim(D.gaussian_noise(img, s), img, data_range=1.0)
        assert value == pytest.approx(float(ref), abs=1e-5)
    assert anim.ssim_values[0] > anim.ssim_values[1]
    with pytest.raises(ValueError, match="param must be"):
        widgets.ssim_sweep(img, "alpha", [1])


# ---------------------------------------------------------------- 2AFC study app and twin


@pytest.fixture
def study_stimuli(img):
    return {name: D.DISTORTIONS[name].fn(img, s)
            for name, s in (("blur", 1.5), ("gaussian noise", 0.05), ("mean shift", 0.1))}


def test_png_bytes_round_trip(img):
    import io

    import numpy as np
    from PIL import Image

    back = np.asarray(Image.open(io.BytesIO(widgets.png_bytes(img)))).astype(float) / 255
    assert back.shape == (48, 48)
    assert np.abs(back - img[0, 0].numpy()).max() <= 0.5 / 255 + 1e-6


def test_study_app_saves_every_answer_and_resumes(tmp_path, study_stimuli):
    from lossbook import subjective as S

    path = tmp_path / "me.jsonl"
    app = widgets.study_app(study_stimuli, path, reference=study_stimuli["blur"])
    n = app.session.design.n_trials
    assert n == 3 + 1
    first = app.session.next_trial()
    app.answer("left")
    _, _, stored = S.read_responses(path)
    assert len(stored) == 1 and stored[0]["winner"] == first.left
    assert stored[0]["simulated"] is False and stored[0]["response_time_s"] >= 0
    # the key box: typing "j" answers "right" and clears the box
    keys = next(c for box in app.children if hasattr(box, "children") for c in box.children
                if getattr(c, "placeholder", "").startswith("click here"))
    second = app.session.next_trial()
    keys.value = "j"
    assert keys.value == ""
    assert S.read_responses(path)[2][1]["winner"] == second.right
    # a new app on the same file (a restarted kernel) resumes at trial 3
    again = widgets.study_app(study_stimuli, path)
    assert again.session.n_answered == 2
    again.answer("left")
    again.answer("left")
    assert again.session.done and len(S.read_responses(path)[2]) == n
    again.answer("left")  # after the end: ignored, nothing written
    assert len(S.read_responses(path)[2]) == n
    with pytest.raises(ValueError, match="needs images"):
        widgets.study_app({"blur": study_stimuli["blur"]}, path)


def test_study_static_labels_simulated_answers(capsys, study_stimuli):
    from lossbook import stats
    from lossbook import subjective as S

    design = S.design_2afc(list(study_stimuli), seed=0)
    obs = S.SimulatedObserver({"blur": 0.5, "gaussian noise": 0.0, "mean shift": -0.5}, seed=0)
    responses = [r for _ in range(5) for r in S.simulate_study(design, obs)]
    metric = {"metric": {"blur": 3.0, "gaussian noise": 2.0, "mean shift": 1.0}}
    res = widgets.study_static(study_stimuli, responses, metrics=metric)
    assert "SIMULATED observer" in capsys.readouterr().out
    assert res["fit"]["label"] == "simulated observer"
    for fig in res["figures"].values():
        title = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
        assert "simulated observer" in title
    rho, tau = res["correlations"]["metric"]
    assert rho["rho"] == pytest.approx(stats.spearman([3.0, 2.0, 1.0], res["fit"]["scale"],
                                                      seed=0)["rho"])
    human = [{**r, "simulated": False} for r in responses]
    widgets.study_static(study_stimuli, human)
    assert "SIMULATED" not in capsys.readouterr().out
