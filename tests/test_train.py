"""Tests for lossbook.train: determinism, exact resume, atomic checkpoints, guards, DDP, AMP.

References: an uninterrupted run is the reference for a resumed one (bitwise equality
with ``torch.equal``, CPU); scikit-image's ``peak_signal_noise_ratio`` is the reference
for the validation PSNR (tolerance 1e-4 dB); two DistributedDataParallel ranks must end
with bitwise identical weights.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from skimage.metrics import peak_signal_noise_ratio

from lossbook.models import TinyCNN
from lossbook.train import (
    CheckpointError,
    CheckpointLockedError,
    History,
    RunMismatchError,
    check_batch,
    check_output_path,
    checkpoint_lock,
    clean_stale_temporaries,
    cpu_bf16_is_fast,
    fit,
    load_checkpoint,
    resolve_amp,
    run_fingerprint,
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
    # the fit row trains in the experiment's precision: bf16 where the CPU has AMX
    assert "| smoke | DnCNN" in out
    assert ("fit (bf16)" if cpu_bf16_is_fast() else "fit (off)") in out


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


# ------------------------------------------------------------------ checkpoint guarantees
# The references: the uninterrupted run (bitwise), and the file's own bytes (a refused
# file must be left byte for byte as it was).


def _flip_bytes_in_a_weight(path: Path) -> None:
    """Flip a few bytes inside the payload's tensor data (not in the zip structure)."""
    import io
    import zipfile

    envelope = torch.load(path, weights_only=True)
    inner = bytearray(envelope["payload"])
    with zipfile.ZipFile(io.BytesIO(bytes(inner))) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename and i.file_size >= 64)
        # local header: 30 bytes + name + extra; the data follows (stored, not deflated)
        name_len = int.from_bytes(inner[info.header_offset + 26:info.header_offset + 28],
                                  "little")
        extra_len = int.from_bytes(inner[info.header_offset + 28:info.header_offset + 30],
                                   "little")
        start = info.header_offset + 30 + name_len + extra_len
    for k in range(start + 8, start + 16):
        inner[k] ^= 0xFF
    envelope["payload"] = bytes(inner)
    torch.save(envelope, path)


def test_a_flipped_weight_is_refused_by_its_checksum(tmp_path):
    ckpt = tmp_path / "c.pt"
    fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **{**KW, "steps": 3})
    _flip_bytes_in_a_weight(ckpt)
    before = ckpt.read_bytes()
    # without the checksum, this file loads: the damage would go unnoticed
    import io

    torch.load(io.BytesIO(torch.load(ckpt, weights_only=True)["payload"]), weights_only=True)
    with pytest.raises(CheckpointError, match=rf"{ckpt.name}.*checksum does not match"):
        load_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="--restart"):
        fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **KW)
    assert ckpt.read_bytes() == before  # never overwritten


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "directory"])
def test_a_damaged_checkpoint_gives_one_clear_error_naming_the_file(tmp_path, damage):
    ckpt = tmp_path / "c.pt"
    fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **{**KW, "steps": 3})
    data = ckpt.read_bytes()
    if damage == "directory":
        ckpt.unlink()
        ckpt.mkdir()
    else:
        ckpt.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                          "garbage": b"\x80\x02not a checkpoint at all" * 10}[damage])
    before = None if damage == "directory" else ckpt.read_bytes()
    with pytest.raises(ValueError, match=str(ckpt.name)) as err:
        fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **KW)
    assert isinstance(err.value, (CheckpointError, ValueError))
    if before is not None:
        assert isinstance(err.value, CheckpointError)
        assert ckpt.read_bytes() == before  # left as it was for the user to inspect
        # restart=True is the explicit way to start over
        h = fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, restart=True, **KW)
        assert h.resumed_from == 0 and load_checkpoint(ckpt)["step"] == 12


def test_an_old_or_foreign_checkpoint_is_refused_with_how_to_proceed(tmp_path):
    torch.save({"format": 1, "step": 3, "model": {}}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match=r"old\.pt.*not a lossbook training checkpoint"
                                              r".*Delete it"):
        load_checkpoint(tmp_path / "old.pt")


@pytest.mark.parametrize("change, setting", [
    ({"lr": 5e-3}, "optimizer"),
    ({"loss": "l1"}, "loss"),
    ({"width": 16}, "model"),
    ({"grad_clip": 1.0}, "grad_clip"),
    ({"sigma": 0.2}, "data"),
    ({"steps": 20}, "schedule_steps"),
])
def test_a_changed_setting_is_refused_naming_it(tmp_path, change, setting):
    def run(**c):
        torch.manual_seed(0)
        model = TinyCNN(width=c.get("width", 8), depth=3)
        loss = torch.nn.L1Loss() if c.get("loss") == "l1" else torch.nn.MSELoss()
        data = functools.partial(noisy_sampler, sigma=c.get("sigma", 0.1))
        kw = {**KW, "lr": c.get("lr", 1e-3), "steps": c.get("steps", 12)}
        return fit(model, loss, data, checkpoint=ckpt, grad_clip=c.get("grad_clip"),
                   checkpoint_every=2, callback=stop_at(4), **kw)

    ckpt = tmp_path / "c.pt"
    with pytest.raises(KeyboardInterrupt):
        run()
    before = ckpt.read_bytes()
    with pytest.raises(RunMismatchError, match=rf"different run: {setting} differs") as err:
        run(**change)
    assert list(err.value.differences) == [setting]
    assert ckpt.read_bytes() == before
    # the unchanged settings still resume
    torch.manual_seed(0)
    h = fit(TinyCNN(width=8, depth=3), torch.nn.MSELoss(),
            functools.partial(noisy_sampler, sigma=0.1), checkpoint=ckpt, **KW)
    assert h.resumed_from == 4


def noisy_sampler(n, g, sigma=0.1):
    y = torch.nn.functional.avg_pool2d(torch.rand(n, 1, SIZE, SIZE, generator=g), 3, 1, 1)
    return y + sigma * torch.randn(n, 1, SIZE, SIZE, generator=g), y


def stop_at(k):
    def cb(step, model, history):
        if step == k:
            raise KeyboardInterrupt
    return cb


def test_run_fingerprint_sees_closures_partials_and_globals_but_not_devices():
    def make(w):
        def loss(p, t):
            return (p - t).abs().mean() * w
        return loss

    fa, fb = run_fingerprint(loss=make(1.0)), run_fingerprint(loss=make(2.0))
    assert fa != fb and fa == run_fingerprint(loss=make(1.0))
    pa = run_fingerprint(d=functools.partial(noisy_sampler, sigma=0.1))
    pb = run_fingerprint(d=functools.partial(noisy_sampler, sigma=0.2))
    assert pa != pb
    t = torch.arange(6.0)
    assert run_fingerprint(x=t) != run_fingerprint(x=t + 1)
    assert run_fingerprint(dev=torch.device("cpu")) == run_fingerprint(dev=torch.device("meta"))
    # parameter values are not part of the run's definition (a resume restores them)
    assert run_fingerprint(m=make_model(0)) == run_fingerprint(m=make_model(1))
    assert run_fingerprint(m=make_model(0)) != run_fingerprint(m=TinyCNN(width=4, depth=3))


def test_a_second_run_on_the_same_checkpoint_is_refused_while_the_first_runs(tmp_path):
    ckpt = tmp_path / "c.pt"
    seen = {}

    def meanwhile(step, model, history):
        if step == 2:
            with pytest.raises(CheckpointLockedError, match=rf"{ckpt.name} is in use by "
                                                            r"another run \(pid"):
                fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **KW)
            seen["refused"] = True

    fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, callback=meanwhile, **KW)
    assert seen["refused"]
    assert not (tmp_path / "c.pt.lock").exists()  # released at the end


def _hold_lock_then_wait(path: str, ready) -> None:
    with checkpoint_lock(path):
        ready.set()
        time.sleep(60)


def test_a_lock_left_by_a_killed_run_is_stale_and_taken_over(tmp_path):
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    ready = ctx.Event()
    ckpt = tmp_path / "c.pt"
    proc = ctx.Process(target=_hold_lock_then_wait, args=(str(ckpt), ready))
    proc.start()
    try:
        assert ready.wait(30)
        with pytest.raises(CheckpointLockedError, match=f"pid {proc.pid}"):
            with checkpoint_lock(ckpt):
                pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    assert (tmp_path / "c.pt.lock").exists()  # the kill left the file behind ...
    h = fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **KW)  # ... stale
    assert h.steps_done == 12


def test_temporaries_of_interrupted_writes_are_removed_on_the_next_run(tmp_path):
    ckpt = tmp_path / "c.pt"
    dead = tmp_path / ".c.pt.tmp-999999999"
    dead.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.pt.tmp-999999999"  # another file's: not ours to remove
    other.write_bytes(b"x")
    fit(make_model(), combined, sampler, seed=0, checkpoint=ckpt, **{**KW, "steps": 2})
    assert not dead.exists() and other.exists()
    # without the lock, only temporaries of processes that are gone are removed
    alive = tmp_path / f".c.pt.tmp-{os.getppid()}"
    alive.write_bytes(b"x")
    dead.write_bytes(b"x")
    assert clean_stale_temporaries(ckpt) == [dead] and alive.exists()


def _read_only_dir(tmp_path: Path) -> Path:
    """A directory this process cannot write: chmod 555, or /sys for root (who may
    write to any chmod-ed directory)."""
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro
    if not Path("/sys").is_dir():
        pytest.skip("no read-only directory available to root here")
    return Path("/sys/lossbook-test")


def test_output_paths_are_checked_before_training(tmp_path):
    calls = {"n": 0}

    def counting(n, g):
        calls["n"] += 1
        return sampler(n, g)

    ro = _read_only_dir(tmp_path)
    try:
        with pytest.raises(PermissionError, match="cannot write to"):
            fit(make_model(), combined, counting, checkpoint=ro / "c.pt", **KW)
    finally:
        if ro.is_relative_to(tmp_path):
            ro.chmod(0o755)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="is a file, but it must be a directory"):
        fit(make_model(), combined, counting, checkpoint=tmp_path / "afile" / "c.pt", **KW)
    with pytest.raises(ValueError, match="is a directory"):
        check_output_path(tmp_path)
    assert calls["n"] == 0  # no batch was drawn: nothing was trained


def test_fit_checks_its_own_arguments_naming_them():
    m, mse = make_model(), torch.nn.MSELoss()
    bad = [
        ({"grad_clip": -1.0}, ValueError, "grad_clip must be positive and finite"),
        ({"grad_clip": float("nan")}, ValueError, "grad_clip must be positive"),
        ({"grad_clip": 0}, ValueError, "grad_clip"),
        ({"checkpoint_every": 0}, ValueError, "checkpoint_every must be a positive int"),
        ({"val_every": -2}, ValueError, "val_every must be a positive int"),
        ({"val_every": 2.5}, ValueError, "val_every"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"seed": "0"}, TypeError, "seed must be an int"),
        ({"lr": float("inf")}, ValueError, "lr must be positive and finite"),
        ({"lr": -1e-3}, ValueError, "lr must be"),
        ({"data_range": 0.0}, ValueError, "data_range must be positive"),
        ({"target_range": (1.0, 0.0)}, ValueError, "low < high"),
        ({"target_range": "all"}, ValueError, "target_range must be"),
        ({"optimizer": "adam"}, TypeError, "optimizer must be"),
        ({"restart": "yes"}, TypeError, "restart must be"),
        ({"val_data": torch.rand(2, 1, 4, 4)}, TypeError, "val_data must be a pair"),
        ({"val_data": (torch.rand(2, 1, 4, 4),)}, TypeError, "val_data must be a pair"),
        ({"val_data": (torch.rand(2, 1, 4, 4), torch.rand(3, 1, 4, 4))}, TypeError,
         "same N"),
    ]
    for kw, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            fit(m, mse, sampler, **{**KW, "steps": 1, **kw})
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        fit(lambda x: x, mse, sampler, **KW)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        fit(m, 3.0, sampler, **KW)


def test_cpu_bf16_is_fast_follows_amx_and_the_onednn_cap(monkeypatch):
    """Reference: the CPU's own flags (``amx_tile`` in /proc/cpuinfo, on Linux); then the
    PyTorch probe forced each way, with and without oneDNN's ISA cap."""
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists() and hasattr(torch.cpu, "_is_amx_tile_supported"):
        assert cpu_bf16_is_fast() == ("amx_tile" in cpuinfo.read_text().split())
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_bf16_is_fast() is True
    for cap, fast in (("AVX2", False), ("avx512_core", False), ("AVX512_CORE_AMX", True),
                      ("avx512_core_amx_fp16", True), ("ALL", True)):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        assert cpu_bf16_is_fast() is fast, cap
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert cpu_bf16_is_fast() is False
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")  # an older PyTorch
    assert cpu_bf16_is_fast() is False


def test_a_sampler_returning_the_wrong_things_is_named():
    m, mse = make_model(), torch.nn.MSELoss()
    with pytest.raises(TypeError, match="must return a pair.*returned 3 values"):
        fit(m, mse, lambda n, g: (*sampler(n, g), 0), **KW)
    with pytest.raises(TypeError, match="must return a pair.*returned a Tensor"):
        fit(m, mse, lambda n, g: sampler(n, g)[0], **KW)
    with pytest.raises(TypeError, match="inputs is a ndarray.*torch.from_numpy"):
        fit(m, mse, lambda n, g: tuple(t.numpy() for t in sampler(n, g)), **KW)
    with pytest.raises(ValueError, match="inputs is empty"):
        fit(m, mse, lambda n, g: (torch.rand(n, 1, 0, 4), torch.rand(n, 1, 0, 4)), **KW)


def test_target_range_none_allows_unbounded_targets():
    """Issue 11: speckled intensities have no upper bound."""
    def speckled(n, g):
        y = 5.0 * torch.rand(n, 1, SIZE, SIZE, generator=g)
        return y, y

    with pytest.raises(ValueError, match="target_range=\\(0, None\\)"):
        fit(make_model(), torch.nn.MSELoss(), speckled, **KW)
    h = fit(make_model(), torch.nn.MSELoss(), speckled, target_range=(0.0, None), **KW)
    assert h.steps_done == 12
    with pytest.raises(ValueError, match=r"expected values in \[0.0, inf\]"):
        fit(make_model(), torch.nn.MSELoss(), lambda n, g: (-1 - speckled(n, g)[0],) * 2,
            target_range=(0.0, None), **KW)
    fit(make_model(), torch.nn.MSELoss(), lambda n, g: (-1 - speckled(n, g)[0],) * 2,
        target_range=None, **{**KW, "steps": 1})


def test_numpy_numbers_are_accepted_as_their_values(tmp_path):
    """A seed or a size from numpy is the same run as the Python number."""
    a, b = make_model(), make_model()
    ckpt = tmp_path / "c.pt"
    fit(a, combined, sampler, seed=np.int64(3), checkpoint=ckpt,
        **{**KW, "steps": np.int64(6), "lr": np.float64(1e-3)})
    fit(b, combined, sampler, seed=3, **{**KW, "steps": 6})
    assert same(weights(a), weights(b))
    h = fit(make_model(), combined, sampler, seed=3, checkpoint=ckpt, **{**KW, "steps": 6})
    assert h.resumed_from == 6
    with pytest.raises(TypeError, match="seed must be an int"):
        fit(make_model(), combined, sampler, seed=np.float64(3.0), **KW)
