"""Training throughput of the denoise-losses DnCNN at each budget's sizes.

For every budget (``smoke``, ``cpu``, ``gpu``) it builds the DnCNN and the patch sampler
of ``lossbook.experiments.DENOISE_SIZES[budget]`` and measures

* the time to draw one batch (``PatchSampler``: crop, augment, add noise), and
* the time of one training step (forward, L2 loss, backward, Adam) on a fixed batch,

in each precision available (float32; on CUDA also bf16/fp16 autocast, and
``torch.compile`` with ``--compile``), then the end-to-end throughput of
``lossbook.train.fit`` itself, in the precision the experiment trains in
(``experiments.denoise_amp``: bf16 on CPUs with AMX). On the CPU the model is
channels-last, as in the experiment. On CUDA it also reports the peak GPU memory.

Usage::

    python benchmarks/bench_train.py                  # all budgets, auto device
    python benchmarks/bench_train.py --quick          # smoke sizes, a few steps (CI)
    python benchmarks/bench_train.py --budgets cpu --device cpu --steps 20
    python benchmarks/bench_train.py --compile --json results.json

Timings synchronise the GPU before reading the clock. Numbers go to
``benchmarks/README.md`` ("## Training").
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import sys
import time

import torch

from lossbook.data import PatchSampler, add_gaussian_noise, load_images
from lossbook.experiments import DENOISE_SIZES, denoise_amp
from lossbook.models import DnCNN
from lossbook.train import autocast_for, fit, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timeit(fn, device: torch.device, steps: int, warmup: int) -> float:
    """Median seconds per call of ``fn`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def _denoiser(s: dict, device: torch.device) -> DnCNN:
    """The experiment's DnCNN on ``device``: channels-last on the CPU, as it trains there."""
    model = DnCNN(depth=s["depth"], width=s["width"], batch_norm=s["batch_norm"]).to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cpu" else model


def bench_budget(budget: str, device: torch.device, *, steps: int, warmup: int,
                 compile_: bool = False, precisions: tuple[str, ...] | None = None) -> list[dict]:
    """Rows ``{budget, precision, compiled, data_ms, step_ms, images_per_s, ...}``."""
    s = DENOISE_SIZES[budget]
    sampler = PatchSampler(load_images("train", s["train_size"]),
                           functools.partial(add_gaussian_noise, sigma=s["sigma"]),
                           s["patch_size"], device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    bs = s["batch_size"]
    data_s = _timeit(lambda: sampler(bs, gen), device, steps, warmup)
    x, y = sampler(bs, gen)
    if precisions is None:
        precisions = ("off",)
        if device.type == "cuda":
            precisions += ("bf16",) if torch.cuda.is_bf16_supported() else ("fp16",)
    rows = []
    for amp in precisions:
        for compiled in (False, True) if compile_ else (False,):
            model = _denoiser(s, device)
            net = torch.compile(model) if compiled else model
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            scaler = torch.amp.GradScaler("cuda", enabled=(amp == "fp16"))

            def step(net=net, opt=opt, scaler=scaler, amp=amp):
                with autocast_for(device, amp):
                    pred = net(x)
                loss = (pred.float() - y).pow(2).mean()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            step_s = _timeit(step, device, steps, warmup + (3 if compiled else 0))
            rows.append({
                "budget": budget, "device": str(device), "precision": amp,
                "compiled": compiled, "batch": bs, "patch": s["patch_size"],
                "model": f"DnCNN {s['depth']}x{s['width']}",
                "data_ms": 1e3 * data_s, "step_ms": 1e3 * step_s,
                "images_per_s": bs / (data_s + step_s),
                "peak_mem_mb": (torch.cuda.max_memory_allocated(device) / 2**20
                                if device.type == "cuda" else None),
            })
    # end to end, through fit, in the precision the experiment trains in
    model = _denoiser(s, device)
    h = fit(model, torch.nn.MSELoss(), sampler, steps=warmup + steps, batch_size=bs,
            device=device, amp=denoise_amp(device), progress=False, log_every=max(1, steps))
    rows.append({"budget": budget, "device": str(device), "precision": f"fit ({h.amp})",
                 "compiled": False, "batch": bs, "patch": s["patch_size"],
                 "model": f"DnCNN {s['depth']}x{s['width']}",
                 "data_ms": 1e3 * h.data_seconds / h.steps_done,
                 "step_ms": 1e3 * (h.seconds - h.data_seconds) / h.steps_done,
                 "images_per_s": h.images_per_second, "peak_mem_mb": None})
    return rows


def markdown(rows: list[dict]) -> str:
    """The rows as a Markdown table."""
    head = ("| budget | model | batch x patch | precision | compiled | data ms/batch | "
            "step ms | images/s | peak GPU MiB |")
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        mem = f"{r['peak_mem_mb']:.0f}" if r["peak_mem_mb"] is not None else "-"
        lines.append(
            f"| {r['budget']} | {r['model']} | {r['batch']} x {r['patch']}^2 | "
            f"{r['precision']} | {'yes' if r['compiled'] else 'no'} | {r['data_ms']:.1f} | "
            f"{r['step_ms']:.1f} | {r['images_per_s']:.0f} | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke sizes only, 2 timed steps (for CI)")
    parser.add_argument("--budgets", default="smoke,cpu,gpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated autocast modes to time, e.g. off,bf16 (default: "
                             "off, plus bf16 or fp16 on CUDA)")
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    budgets = ["smoke"] if args.quick else args.budgets.split(",")
    steps, warmup = (2, 1) if args.quick else (args.steps, args.warmup)
    device = resolve_device(args.device)
    print(f"# torch {torch.__version__} | {platform.processor() or platform.machine()} | "
          f"{torch.get_num_threads()} threads | device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    rows = []
    for b in budgets:
        rows += bench_budget(b, device, steps=steps, warmup=warmup, compile_=args.compile,
                             precisions=tuple(args.precisions.split(",")) if args.precisions
                             else None)
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
