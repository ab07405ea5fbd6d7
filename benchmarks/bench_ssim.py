"""Benchmark lossbook's SSIM and MS-SSIM against pytorch-msssim, torchmetrics and kornia.

Run from the repository root (on a shared machine, serialise it: ``flock
/tmp/lossbook-cpu.lock python benchmarks/bench_ssim.py``)::

    python benchmarks/bench_ssim.py                  # the four shapes, 7 rounds, CPU
    python benchmarks/bench_ssim.py --quick          # one tiny shape, 2 rounds (the test)
    python benchmarks/bench_ssim.py --device cuda    # on a GPU (peak memory from PyTorch)
    python benchmarks/bench_ssim.py --threads 2 --rounds 11 --json ssim.json

Method
------
* float32 inputs ``y = U(0, 1)``, ``x = clamp(y + 0.1 N(0, 1), 0, 1)``, ``data_range=1``,
  11x11 Gaussian window with sigma 1.5, K = (0.01, 0.03) for every implementation.
* Modes: ``fwd`` = the value only, under ``torch.no_grad()``; ``fwd+bwd`` = the value and
  its gradient with respect to ``x`` (a fresh leaf made before the clock starts).
* Every (shape, metric, mode) is warmed up on its own (two calls per implementation), then
  timed in ``--rounds`` rounds; in each round every implementation runs once, in an order
  that rotates from round to round, so a machine that gets busier slows all of them alike.
  The table gives the median and the minimum over rounds, and the ratio of our median to
  the fastest peer's median (and of the minima).
* Page faults: ``resource.getrusage`` minor faults during each timed call (median per call).
  Peak memory on the CPU: a separate process per (implementation, shape, metric) first
  runs one forward+backward call on a small input (what the library loads once, e.g.
  Numba and LLVM for lossbook's kernel, in brackets), then three on the benchmark inputs,
  and reports how much its peak RSS (``VmHWM``; ``ru_maxrss`` is inherited from the
  parent through ``exec``) grew above the inputs during those; on CUDA
  ``torch.cuda.max_memory_allocated`` above the inputs during one call.
* Values are compared before timing. pytorch-msssim and kornia (``padding="valid"``)
  compute the same SSIM as ours. torchmetrics' SSIM also averages windows over its
  reflect-padded border (its valid-region map, from ``return_full_image=True``, agrees
  with ours: that is the agreement shown) and its MS-SSIM uses that padded SSIM at the
  coarsest scale; it is timed in its default call, so its numbers include the border.
  kornia has no MS-SSIM of Wang et al. (its ``MS_SSIMLoss`` is Zhao et al.'s mixed loss).
* MS-SSIM needs sides > 160 pixels (5 scales, 11-pixel window): not run for 64x64.
* ``lossbook`` is what a user gets (on the CPU the compiled kernel, where Numba is
  installed; the script prints which); ``lossbook-ops`` times the same functions with the
  kernel switched off (our PyTorch operations, the path CUDA takes), so the two are
  measured side by side. Neither counts as a peer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

try:
    import lossbook  # noqa: F401
except ImportError:  # running from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

SHAPES = [(8, 1, 256, 256), (4, 3, 512, 512), (1, 3, 1024, 1024), (32, 1, 64, 64)]
QUICK_SHAPES = [(2, 1, 192, 192)]  # sides divisible by 16: pytorch-msssim agrees
IMPLS = ("lossbook", "lossbook-ops", "pytorch-msssim", "torchmetrics", "kornia")
OURS = ("lossbook", "lossbook-ops")  # not peers: the compiled kernel, our PyTorch operations
MS_MIN_SIDE = 161
TARGET = 0.5  # ours <= 0.5x the fastest peer, CPU forward+backward


# ----------------------------------------------------------------------- implementations


def implementations(names=IMPLS) -> dict[str, dict[str, Callable]]:
    """``{name: {"ssim": fn, "ms_ssim": fn}}`` for the installed implementations."""
    impls: dict[str, dict[str, Callable]] = {}
    for name in names:
        if name == "lossbook":
            from lossbook.losses import ms_ssim, ssim

            impls[name] = {"ssim": lambda x, y: ssim(x, y, data_range=1.0),
                           "ms_ssim": lambda x, y: ms_ssim(x, y, data_range=1.0)}
        elif name == "lossbook-ops":  # the same functions without the compiled kernel
            from lossbook.losses import ms_ssim, ssim

            impls[name] = {"ssim": _without_kernel(ssim), "ms_ssim": _without_kernel(ms_ssim)}
        elif name == "pytorch-msssim":
            try:
                import pytorch_msssim as pm
            except ImportError:
                print("pytorch-msssim is not installed: skipped.")
                continue
            impls[name] = {"ssim": lambda x, y: pm.ssim(x, y, data_range=1.0),
                           "ms_ssim": lambda x, y: pm.ms_ssim(x, y, data_range=1.0)}
        elif name == "torchmetrics":
            try:
                from torchmetrics.functional.image import (
                    multiscale_structural_similarity_index_measure as tm_ms,
                )
                from torchmetrics.functional.image import (
                    structural_similarity_index_measure as tm_ssim,
                )
            except ImportError:
                print("torchmetrics is not installed: skipped.")
                continue
            impls[name] = {"ssim": lambda x, y: tm_ssim(x, y, data_range=1.0),
                           "ms_ssim": lambda x, y: tm_ms(x, y, data_range=1.0)}
        elif name == "kornia":
            try:
                import kornia
            except ImportError:
                print("kornia is not installed: skipped.")
                continue
            impls[name] = {"ssim": lambda x, y: kornia.metrics.ssim(
                x, y, 11, max_val=1.0, padding="valid").mean()}
        else:
            raise SystemExit(f"unknown implementation {name!r}; choose from {', '.join(IMPLS)}")
    return impls


def _without_kernel(fn: Callable) -> Callable:
    """``fn`` with lossbook's CPU kernel switched off for the call (the PyTorch operations,
    as on CUDA or without Numba); the backward pass needs no switch."""
    from lossbook.losses import structural

    def call(x, y):
        before = structural._CPU_FUSED
        structural._CPU_FUSED = False
        try:
            return fn(x, y, data_range=1.0)
        finally:
            structural._CPU_FUSED = before

    return call


def ssim_path(device: torch.device) -> str:
    """Which of lossbook's implementations the ``lossbook`` rows time on ``device``."""
    from lossbook.losses import structural

    x = torch.zeros(1, 1, 11, 11, device=device)
    if structural._fused_kernel(x, structural._window("gaussian", 11, 1.5, x.device,
                                                      x.dtype)) is None:
        return "PyTorch operations"
    import numba

    return f"the compiled CPU kernel (Numba {numba.__version__})"


def agreement_value(name: str, metric: str, x: torch.Tensor, y: torch.Tensor) -> float:
    """The implementation's value in the setting where it computes ours (see the docstring)."""
    if name == "torchmetrics" and metric == "ssim":
        from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

        _, full = tm_ssim(x, y, data_range=1.0, return_full_image=True)
        return float(full[..., 5:-5, 5:-5].mean())
    return float(implementations([name])[name][metric](x, y))


# --------------------------------------------------------------------------------- timing


def make_inputs(shape, device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(*shape, generator=gen)
    x = (y + 0.1 * torch.randn(*shape, generator=gen)).clamp(0, 1)
    return x.to(device), y.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run_once(fn: Callable, x: torch.Tensor, y: torch.Tensor, backward: bool) -> tuple[float, int]:
    """Seconds and minor page faults of one call (forward, or forward+backward)."""
    device = x.device
    xr = x.detach().clone().requires_grad_() if backward else x
    _sync(device)
    faults = _minflt()
    start = time.perf_counter()
    if backward:
        fn(xr, y).backward()
    else:
        with torch.no_grad():
            fn(x, y)
    _sync(device)
    return time.perf_counter() - start, _minflt() - faults


def cuda_peak_mib(fn: Callable, x: torch.Tensor, y: torch.Tensor, backward: bool) -> float:
    torch.cuda.synchronize(x.device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    run_once(fn, x, y, backward)
    return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20


def _peak_rss_kib() -> int:
    """Peak resident memory of this process in KiB.

    ``VmHWM`` from ``/proc/self/status`` where it exists: ``ru_maxrss`` is not reset by
    ``exec`` on Linux, so a child of a large benchmark process would inherit its parent's
    peak and report no growth at all. ``ru_maxrss`` elsewhere.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def rss_worker(name: str, metric: str, shape: tuple[int, ...], threads: int) -> dict:
    """In a fresh process: the peak RSS growth (MiB) of forward+backward calls, and page
    faults.

    One call on a small ``192 x 192`` input first loads whatever the library loads once
    (lossbook's compiled kernel brings Numba and LLVM, about 100 MiB): its growth is
    reported as ``load_mib``. Then the growth of the peak above that, during one call on
    the real inputs and two more, is the memory a call needs (``peak_rss_mib``).
    """
    torch.set_num_threads(threads)
    fn = implementations([name])[name][metric]
    base = _peak_rss_kib()
    small = make_inputs((1, shape[1], 192, 192), "cpu", seed=1)
    run_once(fn, *small, True)
    del small
    loaded = _peak_rss_kib()
    x, y = make_inputs(shape, "cpu")
    base_inputs = max(_peak_rss_kib(), loaded)
    faults = [run_once(fn, x, y, True)[1] for _ in range(3)]
    return {"peak_rss_mib": (_peak_rss_kib() - base_inputs) / 1024,
            "load_mib": (loaded - base) / 1024, "faults_isolated": min(faults[1:])}


def rss_in_subprocess(name: str, metric: str, shape, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--rss-worker", f"{name}:{metric}:{_shape_str(shape)}",
           "--threads", str(threads)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"peak_rss_mib": None, "faults_isolated": None,
                "error": out.stderr.strip().splitlines()[-1:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _shape_str(shape) -> str:
    return "x".join(map(str, shape))


def benchmark(shapes, device: torch.device, rounds: int, names=IMPLS, rss: bool = True,
              threads: int = 1, modes=("fwd", "fwd+bwd"),
              metrics=("ssim", "ms_ssim")) -> tuple[list[dict], list[dict]]:
    """Time every implementation; return (timing rows, agreement rows)."""
    impls = implementations(names)
    if device.type != "cpu":  # the compiled kernel is CPU-only: the same code twice
        impls.pop("lossbook-ops", None)
    rows, agree = [], []
    for shape in shapes:
        x, y = make_inputs(shape, device)
        for metric in metrics:
            if metric == "ms_ssim" and min(shape[-2:]) < MS_MIN_SIDE:
                continue
            fns = {n: f[metric] for n, f in impls.items() if metric in f}
            ours = float(fns["lossbook"](x, y)) if "lossbook" in fns else None
            for name in fns:
                if name != "lossbook" and ours is not None:
                    default = float(fns[name](x, y))
                    same = agreement_value(name, metric, x, y)
                    agree.append(dict(device=device.type, shape=_shape_str(shape), metric=metric,
                                      impl=name, ours=ours, theirs_default=default,
                                      theirs_agreeing=same, diff=abs(same - ours)))
            for backward in [m == "fwd+bwd" for m in modes]:
                mode = "fwd+bwd" if backward else "fwd"
                for fn in fns.values():  # warm up this mode on its own
                    run_once(fn, x, y, backward)
                    run_once(fn, x, y, backward)
                times = {n: [] for n in fns}
                faults = {n: [] for n in fns}
                order = list(fns)
                for r in range(rounds):
                    for name in order[r % len(order):] + order[: r % len(order)]:
                        t, f = run_once(fns[name], x, y, backward)
                        times[name].append(t)
                        faults[name].append(f)
                for name in fns:
                    row = dict(device=device.type, shape=_shape_str(shape), metric=metric,
                               mode=mode, impl=name, rounds=rounds,
                               median_ms=1e3 * statistics.median(times[name]),
                               min_ms=1e3 * min(times[name]),
                               faults_per_call=statistics.median(faults[name]),
                               peak_mib=None)
                    if device.type == "cuda":
                        row["peak_mib"] = cuda_peak_mib(fns[name], x, y, backward)
                    elif rss and backward:
                        iso = rss_in_subprocess(name, metric, shape, threads)
                        row["peak_mib"] = iso["peak_rss_mib"]
                        row["load_mib"] = iso.get("load_mib")
                    rows.append(row)
                case = " ".join(f"{r['impl']} {r['median_ms']:.1f}" for r in rows[-len(fns):])
                print(f"  {device.type} {_shape_str(shape)} {metric} {mode}: median ms {case}",
                      flush=True)  # as it goes, so a run cut short still says something
    return rows, agree


# --------------------------------------------------------------------------------- report


def ratios(rows: list[dict]) -> list[dict]:
    """Ours / fastest peer (by median, and by minimum) for every case."""
    out = []
    keys = list(dict.fromkeys((r["device"], r["shape"], r["metric"], r["mode"]) for r in rows))
    for key in keys:
        case = [r for r in rows if (r["device"], r["shape"], r["metric"], r["mode"]) == key]
        ours = [r for r in case if r["impl"] == "lossbook"]
        peers = [r for r in case if r["impl"] not in OURS]
        if not ours or not peers:
            continue
        best = min(peers, key=lambda r: r["median_ms"])
        best_min = min(peers, key=lambda r: r["min_ms"])
        out.append(dict(zip(("device", "shape", "metric", "mode"), key, strict=True),
                        fastest_peer=best["impl"], ours_ms=ours[0]["median_ms"],
                        peer_ms=best["median_ms"], ratio=ours[0]["median_ms"] / best["median_ms"],
                        ratio_min=ours[0]["min_ms"] / best_min["min_ms"]))
    return out


def format_table(rows: list[dict]) -> str:
    """A markdown table of every timing row."""
    lines = ["| device | shape | metric | mode | implementation | median ms | min ms "
             "| ours / this | faults/call | peak MiB (one-time load) |",
             "|---|---|---|---|---|---:|---:|---:|---:|---:|"]
    ours = {(r["device"], r["shape"], r["metric"], r["mode"]): r["median_ms"]
            for r in rows if r["impl"] == "lossbook"}
    for r in rows:
        key = (r["device"], r["shape"], r["metric"], r["mode"])
        ratio = "-" if r["impl"] == "lossbook" or key not in ours else \
            f"{ours[key] / r['median_ms']:.2f}x"
        mem = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        if r.get("load_mib") is not None:
            mem += f" ({r['load_mib']:.0f})"
        lines.append(f"| {r['device']} | {r['shape']} | {r['metric']} | {r['mode']} | {r['impl']} "
                     f"| {r['median_ms']:.1f} | {r['min_ms']:.1f} | {ratio} "
                     f"| {r['faults_per_call']:.0f} | {mem} |")
    return "\n".join(lines)


def format_ratios(summary: list[dict]) -> str:
    lines = ["| device | shape | metric | mode | fastest peer | ours / peer ms | ratio (median) "
             "| ratio (min) | target <= 0.5x |", "|---|---|---|---|---|---:|---:|---:|---|"]
    for s in summary:
        ok = "met" if s["ratio"] <= TARGET else "NOT met"
        if s["mode"] != "fwd+bwd":
            ok = "-"
        lines.append(f"| {s['device']} | {s['shape']} | {s['metric']} | {s['mode']} "
                     f"| {s['fastest_peer']} | {s['ours_ms']:.1f} / {s['peer_ms']:.1f} "
                     f"| {s['ratio']:.2f}x | {s['ratio_min']:.2f}x | {ok} |")
    return "\n".join(lines)


def format_agreement(agree: list[dict]) -> str:
    lines = ["| shape | metric | peer | ours | peer (agreeing setting) | abs. diff "
             "| peer (timed call) |", "|---|---|---|---:|---:|---:|---:|"]
    for a in agree:
        lines.append(f"| {a['shape']} | {a['metric']} | {a['impl']} | {a['ours']:.6f} "
                     f"| {a['theirs_agreeing']:.6f} | {a['diff']:.1e} "
                     f"| {a['theirs_default']:.6f} |")
    return "\n".join(lines)


def machine_description(device: torch.device, threads: int) -> list[str]:
    """CPU model and the SIMD flags that matter, versions, threads, load, allocator settings."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    wanted = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile"]
    lines = [f"CPU: {model}; {os.cpu_count()} logical CPUs; flags: "
             f"{' '.join(f for f in wanted if f in flags) or 'unknown'}; PyTorch CPU kernels: "
             f"{torch.backends.cpu.get_cpu_capability()}"]
    versions = [f"torch {torch.__version__}"]
    for mod in ("pytorch_msssim", "torchmetrics", "kornia"):
        try:
            versions.append(f"{mod} {__import__(mod).__version__}")
        except (ImportError, AttributeError):
            pass
    lines.append(", ".join(versions))
    lines.append(f"lossbook's SSIM on {device.type}: {ssim_path(device)}")
    malloc = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    lines.append(f"torch.set_num_threads({threads}); OMP_NUM_THREADS="
                 f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; allocator env: "
                 f"{malloc or 'default'}")
    caps = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
            if k in os.environ}
    if caps:  # an instruction set capped below the CPU's own (e.g. to measure AVX2 kernels)
        lines.append(f"instruction-set caps: {caps}")
    if device.type == "cuda":
        lines.append(f"GPU: {torch.cuda.get_device_name(device)}")
    if hasattr(os, "getloadavg"):
        lines.append("load average (1, 5, 15 min) at start: "
                     + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
    return lines


def main(argv: list[str] | None = None) -> list[dict]:
    """Parse the arguments, run the benchmark, print the tables and return the timing rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one tiny shape, 2 rounds (tests)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 7; 2 if --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    parser.add_argument("--cpu-only", action="store_true", help="same as --device cpu")
    parser.add_argument("--shapes", help="comma-separated NxCxHxW (default: the four shapes)")
    parser.add_argument("--impls", default=",".join(IMPLS), help="comma-separated subset")
    parser.add_argument("--modes", default="fwd,fwd+bwd", help="fwd, fwd+bwd or both")
    parser.add_argument("--metrics", default="ssim,ms_ssim", help="ssim, ms_ssim or both")
    parser.add_argument("--no-rss", action="store_true", help="skip the per-process RSS runs")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--rss-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_worker:
        name, metric, shape = args.rss_worker.split(":")
        print(json.dumps(rss_worker(name, metric, tuple(map(int, shape.split("x"))),
                                    args.threads)))
        return []
    if not set(args.modes.split(",")) <= {"fwd", "fwd+bwd"} or not set(
            args.metrics.split(",")) <= {"ssim", "ms_ssim"}:
        raise SystemExit("--modes takes fwd and/or fwd+bwd; --metrics ssim and/or ms_ssim.")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else "cpu" if args.device == "auto" or args.cpu_only else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available here.")
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        shapes = QUICK_SHAPES if args.quick else SHAPES
        if args.shapes:
            shapes = [tuple(map(int, s.split("x"))) for s in args.shapes.split(",")]
        rounds = args.rounds or (2 if args.quick else 7)
        names = [n for n in args.impls.split(",") if n]
        for line in machine_description(device, args.threads):
            print(line)
        print(f"{rounds} rounds per case, interleaved (rotating order), float32, "
              f"data_range=1, 11x11 Gaussian window, sigma 1.5\n", flush=True)
        rows, agree = benchmark(shapes, device, rounds, names, rss=not args.no_rss,
                                threads=args.threads, modes=args.modes.split(","),
                                metrics=args.metrics.split(","))
        summary = ratios(rows)
        print("\nValues (float32, the benchmark inputs):\n" + format_agreement(agree))
        print("\nTimes:\n" + format_table(rows))
        print("\nOurs against the fastest peer:\n" + format_ratios(summary))
        if hasattr(os, "getloadavg"):
            print("\nload average (1, 5, 15 min) at the end: "
                  + ", ".join(f"{v:.2f}" for v in os.getloadavg()))
        if args.json:
            Path(args.json).write_text(json.dumps(
                {"machine": machine_description(device, args.threads), "rows": rows,
                 "agreement": agree, "ratios": summary}, indent=1))
        return rows
    finally:
        torch.set_num_threads(threads_before)


if __name__ == "__main__":
    main()
