"""Tests for training ``denoise-losses``'s networks in worker processes (CPU).

Reference: the same training run in this process with the same thread count (one), which
must give the same weights bit for bit; and the rules of ``denoise_workers``.
"""

from __future__ import annotations

import torch

from lossbook.experiments import DENOISE_SIZES
from lossbook.experiments.denoising import (
    _fit_in_processes,
    _fit_job,
    denoise_amp,
    denoise_test_pairs,
    denoise_workers,
)


def test_a_worker_trains_the_same_network_as_this_process(tmp_path, tiny_denoise_sizes):
    tiny = dict(tiny_denoise_sizes, steps=3)
    noisy, clean = denoise_test_pairs(tiny)
    val = (noisy[..., :32, :32], clean[..., :32, :32])
    amp = denoise_amp("cpu")
    jobs = [("L2", 0), ("L1", 0)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # two workers of one thread each
        got = _fit_in_processes(jobs, tiny, amp, val, tmp_path / "workers", 2, False)
    finally:
        torch.set_num_threads(threads)
    assert set(got) == set(jobs)
    for method, seed in jobs:
        try:
            _, _, want, h = _fit_job((method, seed, tiny, amp, val,
                                      tmp_path / f"here-{method}.pt", 1))
        finally:
            torch.set_num_threads(threads)
        state, h_worker = got[method, seed]
        assert state.keys() == want.keys()
        for k in want:
            assert torch.equal(state[k], want[k]), (method, k)
        assert h_worker.loss == h.loss  # the same batches, the same steps
        assert len(h_worker.loss) > 0


def test_denoise_workers_rules():
    cpu = dict(DENOISE_SIZES["cpu"])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert cpu["workers"] == 2
        assert denoise_workers(cpu, "cpu", None, 8) == 2
        assert denoise_workers(cpu, "cpu", None, 1) == 1  # a single job
        assert denoise_workers(cpu, "cpu", lambda *a: None, 8) == 1  # a callback sees steps
        assert denoise_workers(cpu, "cuda", None, 8) == 1
        assert denoise_workers(DENOISE_SIZES["smoke"], "cpu", None, 8) == 1  # no "workers"
        torch.set_num_threads(1)  # OMP_NUM_THREADS=1: a shared machine
        assert denoise_workers(cpu, "cpu", None, 8) == 1
    finally:
        torch.set_num_threads(threads)
