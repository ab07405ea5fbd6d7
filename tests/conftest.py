"""Shared fixtures. Tests run at the smoke budget and never touch the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("LOSSBOOK_BUDGET", "smoke")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def root() -> Path:
    """The repository root."""
    return ROOT


@pytest.fixture
def gen() -> torch.Generator:
    """A seeded CPU generator, so tests are reproducible without global seeding."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """Run a test with one torch thread: small convolutions are far slower with 2 OpenMP
    threads when the 2 cores are shared with other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_denoise_sizes() -> dict:
    """``denoise-losses`` sizes small enough to train in seconds: 2 steps of a 3-layer
    DnCNN on 24 x 24 patches, 2 test images (shared by the seeds and workers tests; copy
    with ``dict(sizes, ...)`` before changing it)."""
    from lossbook.experiments import DENOISE_SIZES

    return dict(DENOISE_SIZES["smoke"], train_size=64, patch_size=24, batch_size=2, steps=2,
                depth=3, width=8, n_test=2, n_tune=1, tune_points=2, val_crop=32, log_every=1)
