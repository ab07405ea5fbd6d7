"""lossbook.monitor: fit(log_dir=...) writes TensorBoard events that TensorBoard reads back.

Reference: TensorBoard's own event reader (EventAccumulator) compared with the History that
fit returns for the same run -- the same steps and the same values (float32 in the event
file, so to 1e-6 relative).
"""

from __future__ import annotations

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lossbook import monitor
from lossbook.losses import CombinedLoss, L1Loss, SSIMLoss
from lossbook.models import TinyCNN
from lossbook.train import fit


def _data(n, g):
    y = torch.rand(n, 1, 16, 16, generator=g)
    return (y + 0.1 * torch.randn(n, 1, 16, 16, generator=g)).clamp(0, 1), y


def _val():
    g = torch.Generator().manual_seed(5)
    return _data(3, g)


def test_fit_writes_every_term_lr_validation_and_images(tmp_path, one_thread):
    torch.manual_seed(0)
    loss = CombinedLoss({"l1": (0.5, L1Loss()), "ssim": (0.5, SSIMLoss(win_size=7))})
    h = fit(TinyCNN(), loss, _data, steps=12, batch_size=4, device="cpu", log_every=3,
            val_data=_val(), val_every=6, lr_schedule="cosine", progress=False,
            log_dir=tmp_path / "tb")
    scalars = monitor.read_scalars(tmp_path / "tb")
    assert set(scalars) == {"train/loss", "train/l1", "train/ssim", "train/lr",
                            "val/loss", "val/psnr"}
    steps, values = scalars["train/loss"]
    assert steps == h.step == [3, 6, 9, 12]
    assert values == pytest.approx(h.loss, rel=1e-6)
    assert scalars["train/l1"][1] == pytest.approx(h.components["l1"], rel=1e-6)
    assert scalars["val/psnr"][0] == h.val_step == [6, 12]
    assert scalars["val/psnr"][1] == pytest.approx(h.val["psnr"], rel=1e-6)
    lr_steps, lrs = scalars["train/lr"]
    assert lrs[0] > lrs[-1]  # the cosine schedule is visible
    # The image grid, read with TensorBoard's reader directly: 3 rows x 3 columns of 16 px.
    acc = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["val/images"]
    img = acc.Images("val/images")
    assert [e.step for e in img] == [6, 12]
    assert (img[0].height, img[0].width) == (3 * 18 + 2, 3 * 18 + 2)


def test_no_log_dir_writes_nothing(tmp_path, one_thread, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(TinyCNN(), torch.nn.MSELoss(), _data, steps=2, batch_size=2, device="cpu",
        progress=False)
    assert not any(tmp_path.rglob("events.out.tfevents.*"))


def test_resumed_run_has_no_doubled_steps(tmp_path, one_thread):
    kwargs = dict(steps=8, batch_size=2, device="cpu", log_every=2, progress=False,
                  checkpoint=tmp_path / "ck.pt", log_dir=tmp_path / "tb")
    torch.manual_seed(0)
    model = TinyCNN()
    fit(model, torch.nn.MSELoss(), _data, **{**kwargs, "steps": 4})
    fit(model, torch.nn.MSELoss(), _data, **kwargs)
    steps, _ = monitor.read_scalars(tmp_path / "tb")["train/loss"]
    assert steps == [2, 4, 6, 8]


def test_missing_tensorboard_gives_install_hint(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "torch.utils.tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install tensorboard"):
        monitor.Monitor(tmp_path / "tb")


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="log_dir must be a path"):
        monitor.Monitor(3)
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files"):
        monitor.read_scalars(tmp_path)
    with pytest.raises(ValueError, match="same shape"):
        monitor.image_grid([torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5)])


def test_image_grid_layout():
    a = torch.zeros(2, 1, 4, 4)
    b = torch.full((2, 1, 4, 4), 2.0)
    g = monitor.image_grid([a, b], data_range=1.0, pad=1)
    assert g.shape == (1, 2 * 5 + 1, 2 * 5 + 1)
    assert float(g[0, 1:5, 1:5].max()) == 0.0  # column 0: a
    assert float(g[0, 1:5, 6:10].min()) == 1.0  # column 1: b clipped to the range
