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
