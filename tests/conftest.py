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
