"""Budgets from LOSSBOOK_BUDGET and lossbook.setup()."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import lossbook
from lossbook.budget import BUDGETS, get_budget


def test_names_and_order():
    assert list(BUDGETS) == ["smoke", "cpu", "gpu"]
    s, c, g = BUDGETS["smoke"], BUDGETS["cpu"], BUDGETS["gpu"]
    for field in ("image_size", "patch_size", "batch_size", "train_steps", "opt_steps", "n_test"):
        assert getattr(s, field) <= getattr(c, field) <= getattr(g, field), field
    assert not s.meaningful and c.meaningful and g.meaningful


def test_from_environment(monkeypatch):
    for name in BUDGETS:
        monkeypatch.setenv("LOSSBOOK_BUDGET", name.upper())
        assert get_budget().name == name
    monkeypatch.setenv("LOSSBOOK_BUDGET", "auto")
    assert get_budget().name == ("gpu" if torch.cuda.is_available() else "cpu")
    monkeypatch.delenv("LOSSBOOK_BUDGET")
    assert get_budget().name == ("gpu" if torch.cuda.is_available() else "cpu")


def test_unknown_budget_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "huge")
    with pytest.raises(ValueError, match=r"unknown budget 'huge'.*LOSSBOOK_BUDGET.*'smoke', "
                                         r"'cpu', 'gpu' or 'auto'"):
        get_budget()
    with pytest.raises(ValueError, match="from the argument"):
        get_budget("tiny")


def test_with_returns_a_modified_copy():
    b = BUDGETS["smoke"].with_(train_steps=3)
    assert b.train_steps == 3 and BUDGETS["smoke"].train_steps != 3


def test_setup_seeds_everything(capsys, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "smoke")
    dev = lossbook.setup(seed=7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    lossbook.setup(seed=7)
    b = (random.random(), np.random.rand(), torch.rand(1).item())  # noqa: NPY002
    assert a == b
    assert isinstance(dev, torch.device) and dev == lossbook.pick_device()
    out = capsys.readouterr().out
    assert "device: cpu" in out and "budget: smoke" in out and "not results" in out


def test_setup_on_colab_without_gpu_says_how_to_switch(capsys, monkeypatch):
    import sys
    import types

    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lossbook.setup()
    assert "Change runtime type" in capsys.readouterr().out


def test_setup_rejects_bad_seed():
    with pytest.raises(TypeError, match="seed must be an int"):
        lossbook.setup(seed=1.5)


def test_with_refuses_sizes_that_make_no_sense():
    b = get_budget("smoke")
    for bad in (-5, 0, 2.5, True, None):
        with pytest.raises(ValueError, match="Budget.train_steps must be a positive int"):
            b.with_(train_steps=bad)
    with pytest.raises(TypeError, match=r"no field\(s\) \['steps'\].*train_steps"):
        b.with_(steps=10)
    assert b.with_(train_steps=7).train_steps == 7 and b.train_steps != 7


@pytest.mark.parametrize("spelling", ["SMOKE", " smoke ", "Smoke", "\tcpu\n", "AUTO"])
def test_spellings_are_case_and_space_insensitive(spelling, monkeypatch):
    monkeypatch.setenv("LOSSBOOK_BUDGET", spelling)
    assert get_budget().name == get_budget(spelling).name
