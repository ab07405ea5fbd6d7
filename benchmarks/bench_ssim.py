"""Benchmark lossbook's SSIM and MS-SSIM against pytorch-msssim (and torchmetrics if present).

Run from the repository root::

    python benchmarks/bench_ssim.py            # 8x1x256x256 and 4x3x512x512, 7 repeats
    python benchmarks/bench_ssim.py --quick    # tiny sizes, 1 repeat (what the test runs)
    python benchmarks/bench_ssim.py --threads 2 --repeats 11

Both implementations are timed in the same process, interleaved (ours, theirs, ours, ...),
and the median of the repeats is reported, so a machine that gets busier during the run
slows both alike. Forward = the value only (no graph); forward+backward = value and the
gradient with respect to the prediction. float32 throughout.

Memory: on CUDA the table shows ``torch.cuda.max_memory_allocated`` during one call. On the
CPU there is no cheap allocator statistic, so memory is not measured; the extra memory of
our approach is easy to state instead: stacking the five statistics ``x, y, x^2, y^2, xy``
makes one ``(N, 5C, H, W)`` float32 tensor (20 bytes per input pixel and channel) and its
blurred copy, where pytorch-msssim creates the five maps one at a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import lossbook  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from lossbook.losses import ms_ssim, ssim

SIZES = [(8, 1, 256, 256), (4, 3, 512, 512)]
QUICK_SIZES = [(2, 1, 176, 176)]


def _implementations() -> dict[str, dict[str, Callable]]:
    impls: dict[str, dict[str, Callable]] = {
        "lossbook": {
            "ssim": lambda x, y: ssim(x, y, data_range=1.0),
            "ms_ssim": lambda x, y: ms_ssim(x, y, data_range=1.0),
        }
    }
    try:
        import pytorch_msssim
    except ImportError:
        print("pytorch-msssim is not installed: nothing to compare with.")
    else:
        impls["pytorch-msssim"] = {
            "ssim": lambda x, y: pytorch_msssim.ssim(x, y, data_range=1.0),
            "ms_ssim": lambda x, y: pytorch_msssim.ms_ssim(x, y, data_range=1.0),
        }
    try:
        from torchmetrics.functional.image import (
            multiscale_structural_similarity_index_measure as tm_ms_ssim,
        )
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim
    except ImportError:
        print("torchmetrics is not installed: skipping it.")
    else:
        impls["torchmetrics"] = {
            "ssim": lambda x, y: tm_ssim(x, y, data_range=1.0),
            "ms_ssim": lambda x, y: tm_ms_ssim(x, y, data_range=1.0),
        }
    return impls


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_once(fn: Callable, x: torch.Tensor, y: torch.Tensor, backward: bool) -> float:
    device = x.device
    _sync(device)
    start = time.perf_counter()
    if backward:
        xr = x.detach().clone().requires_grad_()
        fn(xr, y).backward()
    else:
        with torch.no_grad():
            fn(x, y)
    _sync(device)
    return time.perf_counter() - start


def _peak_memory(fn: Callable, x: torch.Tensor, y: torch.Tensor, backward: bool) -> float | None:
    if x.device.type != "cuda":
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    _run_once(fn, x, y, backward)
    return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20


def benchmark(sizes, devices, repeats: int) -> list[dict]:
    """Time every implementation on every size, device, metric and mode; return the rows."""
    impls = _implementations()
    rows = []
    gen = torch.Generator().manual_seed(0)
    for device in devices:
        for shape in sizes:
            y = torch.rand(*shape, generator=gen)
            x = (y + 0.1 * torch.randn(*shape, generator=gen)).clamp(0, 1)
            x, y = x.to(device), y.to(device)
            for metric in ("ssim", "ms_ssim"):
                for backward in (False, True):
                    times: dict[str, list[float]] = {name: [] for name in impls}
                    for name in impls:  # warm-up (also checks that the values agree)
                        _run_once(impls[name][metric], x, y, backward)
                    for _ in range(repeats):  # interleaved
                        for name, fns in impls.items():
                            times[name].append(_run_once(fns[metric], x, y, backward))
                    for name, fns in impls.items():
                        rows.append(dict(
                            device=device.type, shape="x".join(map(str, shape)), metric=metric,
                            mode="fwd+bwd" if backward else "fwd", impl=name,
                            median_ms=1e3 * statistics.median(times[name]),
                            peak_mib=_peak_memory(fns[metric], x, y, backward),
                        ))
    return rows


def format_table(rows: list[dict]) -> str:
    """A markdown table: one line per (device, shape, metric, mode) with time ratios."""
    lines = ["| device | shape | metric | mode | implementation | median ms | vs pytorch-msssim "
             "| peak MiB |", "|---|---|---|---|---|---:|---:|---:|"]
    ref = {(r["device"], r["shape"], r["metric"], r["mode"]): r["median_ms"]
           for r in rows if r["impl"] == "pytorch-msssim"}
    for r in rows:
        key = (r["device"], r["shape"], r["metric"], r["mode"])
        ratio = f"{r['median_ms'] / ref[key]:.2f}x" if key in ref else "-"
        mem = "not measured" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        lines.append(f"| {r['device']} | {r['shape']} | {r['metric']} | {r['mode']} | {r['impl']} "
                     f"| {r['median_ms']:.1f} | {ratio} | {mem} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse the arguments, run the benchmark, print the table and return its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 1 repeat (for tests)")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    parser.add_argument("--cpu-only", action="store_true", help="skip CUDA even if available")
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        sizes = QUICK_SIZES if args.quick else SIZES
        repeats = 1 if args.quick else args.repeats
        devices = [torch.device("cpu")]
        if torch.cuda.is_available() and not args.cpu_only:
            devices.append(torch.device("cuda"))
        print(f"torch {torch.__version__}, torch.set_num_threads({args.threads}), "
              f"devices: {', '.join(d.type for d in devices)}, repeats: {repeats} (median), "
              "float32, interleaved")
        rows = benchmark(sizes, devices, repeats)
        print(format_table(rows))
        return rows
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
