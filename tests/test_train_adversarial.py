"""Tests for lossbook.train_adversarial.fit_adversarial: determinism, exact resume,
guards, what it logs, and that the adversarial term actually reaches the generator.

References: an uninterrupted run is the reference for a resumed one (bitwise equality of
both models on the CPU), as in tests/test_train.py; adv_weight=0 is the reference for
"the discriminator does not touch the generator".
"""

from __future__ import annotations

import signal

import pytest
import torch
from torch import nn

from lossbook.models import PatchGANDiscriminator
from lossbook.train import (
    CheckpointError,
    CheckpointLockedError,
    RunMismatchError,
    checkpoint_lock,
    load_checkpoint,
)
from lossbook.train_adversarial import ADVERSARIAL_COMPONENTS, fit_adversarial

pytestmark = pytest.mark.usefixtures("one_thread")


def sampler(n, g):
    y = torch.rand(n, 1, 24, 24, generator=g)
    return (y + 0.1 * torch.randn(n, 1, 24, 24, generator=g)).clamp(0, 1), y


def make_g(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))


def make_d(seed=0):
    torch.manual_seed(seed + 100)
    return PatchGANDiscriminator(1, base=8, n_layers=2, norm="batch")


def state(*models):
    return [p.detach().clone() for m in models for p in m.state_dict().values()]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


KW = dict(steps=10, batch_size=4, device="cpu", log_every=2, progress=False, lr_g=1e-3,
          lr_d=1e-3, adv_weight=0.1)


def test_deterministic_and_logs_every_component():
    g1, d1, g2, d2 = make_g(), make_d(), make_g(), make_d()
    h1 = fit_adversarial(g1, d1, nn.L1Loss(), sampler, seed=3, **KW)
    h2 = fit_adversarial(g2, d2, nn.L1Loss(), sampler, seed=3, **KW)
    assert same(state(g1, d1), state(g2, d2)) and h1.loss == h2.loss
    assert set(ADVERSARIAL_COMPONENTS) <= set(h1.components)
    assert h1.step == [2, 4, 6, 8, 10] and h1.steps_done == 10
    # the total is content + adv_weight * adversarial, window by window
    for t, c, a in zip(h1.loss, h1.components["content"], h1.components["adversarial"],
                       strict=True):
        assert t == pytest.approx(c + 0.1 * a, rel=1e-5)
    assert not same(state(g1, d1), state(make_g(), make_d()))


@pytest.mark.parametrize("how", ["exception", "sigint"])
def test_resume_is_exact(tmp_path, how):
    g_ref, d_ref = make_g(), make_d()
    h_ref = fit_adversarial(g_ref, d_ref, nn.L1Loss(), sampler, seed=1, r1_gamma=1.0, **KW)

    def stop_at_7(step, model, history):
        if step == 7:
            if how == "sigint":
                signal.raise_signal(signal.SIGINT)
            else:
                raise KeyboardInterrupt

    ckpt = tmp_path / "gan.pt"
    with pytest.raises(KeyboardInterrupt):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, seed=1, r1_gamma=1.0,
                        checkpoint=ckpt, checkpoint_every=5, callback=stop_at_7, **KW)
    saved = load_checkpoint(ckpt)
    assert saved["step"] == 7
    assert {"generator", "discriminator", "opt_g", "opt_d", "rng"} <= set(saved)
    g, d = make_g(seed=9), make_d(seed=9)  # other inits: everything must come from the file
    h = fit_adversarial(g, d, nn.L1Loss(), sampler, seed=1, r1_gamma=1.0, checkpoint=ckpt,
                        checkpoint_every=5, **KW)
    assert h.resumed_from == 7 and h.steps_done == 10
    assert same(state(g, d), state(g_ref, d_ref))  # BatchNorm running stats included
    assert h.loss == h_ref.loss and h.components == h_ref.components


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "gan.pt"
    fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, checkpoint=ckpt, **KW)
    with pytest.raises(RunMismatchError, match="gan_kind"):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, checkpoint=ckpt,
                        gan_kind="hinge", **KW)
    # another content loss, another discriminator: the run fingerprint names them
    with pytest.raises(RunMismatchError, match="content_loss"):
        fit_adversarial(make_g(), make_d(), nn.MSELoss(), sampler, checkpoint=ckpt, **KW)
    other_d = PatchGANDiscriminator(1, base=8, n_layers=1)
    with pytest.raises(RunMismatchError, match="discriminator"):
        fit_adversarial(make_g(), other_d, nn.L1Loss(), sampler, checkpoint=ckpt, **KW)
    h = fit_adversarial(make_g(), make_d(), nn.MSELoss(), sampler, checkpoint=ckpt,
                        restart=True, **KW)  # restart: train from scratch, replace the file
    assert h.resumed_from == 0 and h.steps_done == KW["steps"]


def test_damaged_checkpoint_is_refused_and_kept(tmp_path):
    ckpt = tmp_path / "gan.pt"
    fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, checkpoint=ckpt, **KW)
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=str(ckpt.name)):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, checkpoint=ckpt, **KW)
    assert ckpt.read_bytes() == bytes(data)  # never overwritten


def test_a_second_run_on_the_same_checkpoint_is_locked_out(tmp_path):
    ckpt = tmp_path / "gan.pt"
    with checkpoint_lock(ckpt), pytest.raises(CheckpointLockedError):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, checkpoint=ckpt, **KW)


def test_zero_weight_leaves_the_generator_to_the_content_loss():
    """With adv_weight=0 the generator's trajectory must not depend on the discriminator
    (a different discriminator init gives the same generator)."""
    kw = {**KW, "adv_weight": 0.0}
    g1, g2 = make_g(), make_g()
    fit_adversarial(g1, make_d(0), nn.L1Loss(), sampler, **kw)
    fit_adversarial(g2, make_d(5), nn.L1Loss(), sampler, **kw)
    assert same(state(g1), state(g2))
    g3 = make_g()
    fit_adversarial(g3, make_d(5), nn.L1Loss(), sampler, **KW)  # adv_weight=0.1
    assert not same(state(g1), state(g3))


def test_discriminator_learns_to_separate():
    """A fixed, blurring generator (lr 0) is easy to tell apart from sharp targets: the
    discriminator's real and fake logits must separate."""
    g = nn.Conv2d(1, 1, 5, padding=2, bias=False)
    with torch.no_grad():
        g.weight.fill_(1 / 25)
    h = fit_adversarial(g, make_d(), nn.L1Loss(), sampler, **{**KW, "steps": 40, "lr_g": 0.0,
                                                              "log_every": 40})
    assert h.components["d_real"][-1] > h.components["d_fake"][-1]


def test_nan_guard_names_the_step():
    class Bad(nn.Module):
        def forward(self, x, y):
            return (x - y).abs().mean() * float("nan")

    with pytest.raises(FloatingPointError, match="generator loss became nan at step 1"):
        fit_adversarial(make_g(), make_d(), Bad(), sampler, **KW)


def test_argument_errors_and_warning(monkeypatch):
    with pytest.raises(ValueError, match="gan_kind"):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, gan_kind="wgan", **KW)
    with pytest.raises(ValueError, match="adv_weight"):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, **{**KW, "adv_weight": -1})
    with pytest.raises(TypeError, match="callable"):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), [1, 2], **KW)
    monkeypatch.setenv("LOSSBOOK_BUDGET", "gpu")
    with pytest.warns(RuntimeWarning, match="GPU"):
        fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler, **{**KW, "steps": 1})


def test_progress_bar_runs(capsys):
    h = fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler,
                        **{**KW, "steps": 2, "progress": True})
    assert h.steps_done == 2


def test_amp_bf16_on_cpu_runs_with_float32_losses():
    h = fit_adversarial(make_g(), make_d(), nn.L1Loss(), sampler,
                        **{**KW, "steps": 2, "amp": "bf16"})
    assert h.amp == "bf16" and all(torch.isfinite(torch.tensor(h.loss)))
