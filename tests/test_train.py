"""Tests for lossbook.train: determinism, exact resume, atomic checkpoints, guards, DDP, AMP.

References: an uninterrupted run is the reference for a resumed one (bitwise equality
with ``torch.equal``, CPU); scikit-image's ``peak_signal_noise_ratio`` is the reference
for the validation PSNR (tolerance 1e-4 dB); two DistributedDataParallel ranks must end
with bitwise identical weights.
"""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from skimage.metrics import peak_signal_noise_ratio

from lossbook.models import TinyCNN
from lossbook.train import (
    History,
    check_batch,
    fit,
    load_checkpoint,
    resolve_amp,
    save_checkpoint,
)

SIZE = 12


def sampler(n: int, g: torch.Generator):
    """Noisy/clean pairs: smooth random images plus Gaussian noise."""
    y = torch.rand(n, 1, SIZE, SIZE, generator=g)
    y = torch.nn.functional.avg_pool2d(y, 3, 1, 1)
    return y + 0.1 * torch.randn(n, 1, SIZE, SIZE, generator=g), y


def make_model(seed: int = 0) -> TinyCNN:
    torch.manual_seed(seed)
    return TinyCNN(width=8, depth=3)


def combined(pred, target):
    """A loss reporting components, like CombinedLoss."""
    l2 = (pred - target).pow(2).mean()
    l1 = (pred - target).abs().mean()
    return l2 + 0.1 * l1, {"l2": l2.item(), "l1": l1.item()}


def weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


KW = dict(steps=12, batch_size=4, lr=1e-3, device="cpu", log_every=3, progress=False,
          lr_schedule="cosine")


def test_deterministic_for_a_seed_and_different_for_another():
    a, b, c = make_model(), make_model(), make_model()
    ha = fit(a, combined, sampler, seed=3, **KW)
    hb = fit(b, combined, sampler, seed=3, **KW)
    fit(c, combined, sampler, seed=4, **KW)
    assert same(weights(a), weights(b))
    assert ha.loss == hb.loss and ha.components == hb.components
    assert not same(weights(a), weights(c))
    assert not same(weights(a), weights(make_model()))  # it trained


def test_history_contents():
    h = fit(make_model(), combined, sampler, seed=0, **KW)
    assert h.step == [3, 6, 9, 12]
    assert set(h.components) == {"l2", "l1"} and len(h.components["l1"]) == 4
    # the total is the window mean of l2 + 0.1 l1, so it matches the logged components
    np.testing.assert_allclose(h.loss, np.array(h.components["l2"])
                               + 0.1 * np.array(h.components["l1"]), rtol=1e-5)
    assert h.steps_done == 12 and h.seconds > 0 and h.images_per_second > 0
    assert h.device == "cpu" and h.amp == "off" and h.world_size == 1
    assert History.from_dict(h.to_dict()) == h


def test_chapter_one_call_still_works():
    h = fit(make_model(), torch.nn.MSELoss(), sampler, steps=5, batch_size=2, lr=1e-2,
            device="cpu", seed=0, progress=False)
    assert h.step == [5] and np.isfinite(h.loss[0])


def test_it_learns():
    """Reference: the loss of the identity map (the noisy input), which training beats."""
    model = make_model()
    g = torch.Generator().manual_seed(99)
    x, y = sampler(64, g)
    before = float((x - y).pow(2).mean())
    fit(model, torch.nn.MSELoss(), sampler, steps=150, batch_size=8, lr=3e-3, device="cpu",
        progress=False)
    with torch.no_grad():
        after = float((model(x) - y).pow(2).mean())
    assert after < 0.8 * before


@pytest.mark.parametrize("how", ["exception", "sigint"])
def test_resume_is_exact(tmp_path, how):
    ref = make_model()
    h_ref = fit(ref, combined, sampler, seed=1, **KW)

    ckpt = tmp_path / "run.pt"

    def stop_at_7(step, model, history):
        if step == 7:
            if how == "sigint":  # a real Ctrl-C: deferred until the step has finished
                signal.raise_signal(signal.SIGINT)
            else:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(make_model(), combined, sampler, seed=1, checkpoint=ckpt, checkpoint_every=5,
            callback=stop_at_7, **KW)
    state = load_checkpoint(ckpt)
    assert state["step"] == 7  # saved on interrupt, after the periodic save at step 5
    resumed = make_model(seed=123)  # a different init: everything must come from the file
    h = fit(resumed, combined, sampler, seed=1, checkpoint=ckpt, checkpoint_every=5, **KW)
    assert h.resumed_from == 7 and h.steps_done == 12
    assert same(weights(resumed), weights(ref))
    assert h.step == h_ref.step and h.loss == h_ref.loss
    assert h.components == h_ref.components
    # and a finished checkpoint returns at once with the same weights
    again = make_model(seed=5)
    h2 = fit(again, combined, sampler, seed=1, checkpoint=ckpt, **KW)
    assert same(weights(again), weights(ref)) and h2.loss == h_ref.loss


def test_checkpoint_holds_everything(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **KW)
    state = load_checkpoint(ckpt)
    for key in ("model", "optimizer", "generator", "step", "history", "config", "window"):
        assert key in state
    assert state["step"] == 12 and state["optimizer"]["state"]  # Adam moments saved


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    """A failure in the middle of a write leaves the previous checkpoint intact."""
    ckpt = tmp_path / "c.pt"
    save_checkpoint(ckpt, {"format": 1, "value": 1})
    before = ckpt.read_bytes()

    def broken_save(obj, f, *a, **k):
        f.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(ckpt, {"format": 1, "value": 2})
    assert ckpt.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left
    monkeypatch.undo()
    assert load_checkpoint(ckpt)["value"] == 1


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a lossbook training checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_resume_with_other_settings_is_refused(tmp_path):
    ckpt = tmp_path / "c.pt"
    kw = {**KW, "steps": 3}
    fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **kw)
    with pytest.raises(ValueError, match="written with seed=0 but this run asks for seed=1"):
        fit(make_model(), combined, sampler, seed=1, checkpoint=ckpt, **kw)


def test_nan_guard_names_the_step_and_components():
    calls = {"n": 0}

    def exploding(pred, target):
        calls["n"] += 1
        l2 = (pred - target).pow(2).mean()
        if calls["n"] == 5:
            l2 = l2 * float("nan")
        return l2, {"l2": l2.item(), "tv": 0.5}

    model = make_model()
    with pytest.raises(FloatingPointError, match=r"became nan at step 5 .*'tv': 0.5.*"
                                                 r"last logged, at step 3"):
        fit(model, exploding, sampler, seed=0, **KW)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # no NaN step taken


def test_first_batch_is_validated():
    model = make_model()

    def eight_bit(n, g):
        x, y = sampler(n, g)
        return x * 255, y * 255

    with pytest.raises(ValueError, match="divide by 255"):
        fit(model, torch.nn.MSELoss(), eight_bit, **KW)

    def nan_inputs(n, g):
        x, y = sampler(n, g)
        x[0, 0, 0, 0] = float("nan")
        return x, y

    with pytest.raises(ValueError, match="inputs holds 1 NaN/inf"):
        fit(model, torch.nn.MSELoss(), nan_inputs, **KW)
    with pytest.raises(ValueError, match=r"must have shape \(N, C, H, W\)"):
        fit(model, torch.nn.MSELoss(), lambda n, g: (torch.rand(n, 8, 8), torch.rand(n, 8, 8)),
            **KW)
    with pytest.raises(ValueError, match="same number of images"):
        check_batch(torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4))
    with pytest.raises(TypeError, match="floating point"):
        check_batch(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match="far outside"):
        check_batch(torch.rand(2, 1, 4, 4) * 100, torch.rand(2, 1, 4, 4))

    with pytest.raises(ValueError, match="output has shape"):
        fit(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3), torch.nn.Identity()),
            torch.nn.MSELoss(), sampler, **KW)


def test_cosine_schedule_sets_the_learning_rate():
    """Reference: the closed form 0.5 (1 + cos(pi (t - 1) / T)), floored at 0.01."""
    import math

    seen = []
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(model, torch.nn.MSELoss(), sampler, steps=10, optimizer=opt, lr_schedule="cosine",
        device="cpu", progress=False, callback=lambda s, m, h: seen.append(
            opt.param_groups[0]["lr"]))
    ref = [0.1 * max(0.01, 0.5 * (1 + math.cos(math.pi * (t - 1) / 10))) for t in range(1, 11)]
    np.testing.assert_allclose(seen, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="lr_schedule must be"):
        fit(make_model(), torch.nn.MSELoss(), sampler, steps=1, lr_schedule="linear")


def test_argument_errors():
    with pytest.raises(ValueError, match="steps must be a positive int"):
        fit(make_model(), torch.nn.MSELoss(), sampler, steps=0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        fit(make_model(), torch.nn.MSELoss(), sampler, steps=1, batch_size=0)
    with pytest.raises(TypeError, match="data must be a callable"):
        fit(make_model(), torch.nn.MSELoss(), torch.rand(2, 1, 4, 4), steps=1)
    with pytest.raises(TypeError, match="scalar tensor"):
        fit(make_model(), torch.nn.MSELoss(reduction="none"), sampler, steps=1, device="cpu",
            progress=False)


def test_validation_psnr_matches_scikit_image():
    g = torch.Generator().manual_seed(7)
    val = sampler(3, g)
    model = make_model()
    h = fit(model, torch.nn.MSELoss(), sampler, val_data=val, val_every=4, seed=0, **KW)
    assert h.val_step == [4, 8, 12]
    with torch.no_grad():
        raw = model(val[0])
    pred = raw.clamp(0, 1)  # PSNR is measured on the prediction clipped to [0, 1]
    ref = np.mean([peak_signal_noise_ratio(val[1][i, 0].numpy(), pred[i, 0].numpy(),
                                           data_range=1.0) for i in range(3)])
    assert h.val["psnr"][-1] == pytest.approx(ref, abs=1e-4)
    assert h.val["loss"][-1] == pytest.approx(float((raw - val[1]).pow(2).mean()), rel=1e-5)


def test_amp_bf16_on_cpu_keeps_the_loss_in_float32():
    seen = []

    def loss(pred, target):
        seen.append(pred.dtype)
        return (pred - target).pow(2).mean()

    h = fit(make_model(), loss, sampler, amp="bf16", seed=0, **KW)
    assert h.amp == "bf16" and np.isfinite(h.loss).all()
    assert set(seen) == {torch.float32}
    assert resolve_amp("auto", torch.device("cpu")) == "off"
    assert resolve_amp(False, torch.device("cpu")) == "off"
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_amp("fp16", torch.device("cpu"))
    with pytest.raises(ValueError, match="amp must be"):
        resolve_amp("half", torch.device("cpu"))


def test_warns_when_the_gpu_was_forgotten(monkeypatch):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "gpu")
    with pytest.warns(RuntimeWarning, match="Change runtime type"):
        fit(make_model(), torch.nn.MSELoss(), sampler, steps=1, device="cpu", progress=False)


def test_progress_bar_runs(capsys):
    fit(make_model(), torch.nn.MSELoss(), sampler, steps=3, device="cpu", progress=True)


# ------------------------------------------------------------------ DistributedDataParallel


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        model = make_model()  # same init on both ranks (DDP also broadcasts rank 0's)
        h = fit(model, torch.nn.MSELoss(), sampler, steps=6, batch_size=4, device="cpu",
                progress=False, seed=0)
        torch.save({"weights": weights(model), "world": h.world_size}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_gloo_processes_end_with_identical_weights(tmp_path):
    # fork (where available) avoids re-importing torch in each child: much faster
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                       join=True, start_method=method)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["world"] == r1["world"] == 2
    assert same(r0["weights"], r1["weights"])
    assert not same(r0["weights"], weights(make_model()))  # they trained


# ------------------------------------------------------------------ the training benchmark


def test_benchmark_quick_mode_runs(root, capsys):
    """benchmarks/bench_train.py --quick must keep working (it is not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_train",
                                                  root / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| smoke | DnCNN" in out and "fit (off)" in out


class _Payload:
    """Unpickling this object runs code (a harmless one: it creates a marker file)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    """Security: checkpoints are loaded with weights_only=True, never a full unpickle."""
    from lossbook.train import CHECKPOINT_FORMAT, load_checkpoint

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "payload": _Payload(marker)}, ckpt)
    with pytest.raises(Exception):  # noqa: B017 - any refusal is fine, running code is not
        load_checkpoint(ckpt)
    assert not marker.exists(), "loading a checkpoint executed code from it"
    # the guard cannot pass vacuously: a full unpickle of the same file does run the payload
    torch.load(ckpt, weights_only=False)
    assert marker.exists()
