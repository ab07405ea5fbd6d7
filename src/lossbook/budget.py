"""Compute budgets: how big every experiment is.

One environment variable, ``LOSSBOOK_BUDGET``, sets the size of everything the
chapters compute:

``smoke``
    Every notebook in well under a minute on 2 CPU cores. CI and the tests use it.
    Results are **not** meaningful; notebooks say so.
``cpu``
    A chapter in a few minutes on a laptop CPU; conclusions hold qualitatively.
``gpu``
    Full size; a chapter in about ten minutes on a Colab T4.

Unset (or ``auto``), the budget is ``gpu`` when CUDA is available, else ``cpu``.
Experiments that need sizes of their own keep a ``{budget name: sizes}`` table and
index it with ``budget.name``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

import torch

__all__ = ["Budget", "BUDGETS", "get_budget", "ENV_VAR"]

ENV_VAR = "LOSSBOOK_BUDGET"


@dataclass(frozen=True)
class Budget:
    """Sizes shared by the chapters' experiments.

    Attributes
    ----------
    name : str
        ``"smoke"``, ``"cpu"`` or ``"gpu"``.
    image_size : int
        Side of the images that chapters show and optimise directly (pixels).
    patch_size : int
        Side of the training patches.
    batch_size : int
        Training batch size.
    train_steps : int
        Optimiser steps for a training run.
    opt_steps : int
        Steps for optimising an image's pixels directly.
    n_test : int
        Number of held-out test images used for evaluation.
    sweep_points : int
        Number of values in a parameter sweep.
    """

    name: str
    image_size: int
    patch_size: int
    batch_size: int
    train_steps: int
    opt_steps: int
    n_test: int
    sweep_points: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Budget.name must be a non-empty str; got {self.name!r}.")
        for f in fields(self):
            if f.name == "name":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"Budget.{f.name} must be a positive int; got {value!r}. Every size of a "
                    "budget counts something (pixels, steps, images)."
                )

    @property
    def meaningful(self) -> bool:
        """False for ``smoke``: its results only show that the code runs."""
        return self.name != "smoke"

    def with_(self, **changes: int) -> Budget:
        """A copy with some fields changed, e.g. ``budget.with_(train_steps=10)``.

        Raises
        ------
        TypeError
            For a field that does not exist (the message lists the fields).
        ValueError
            For a size that is not a positive int.
        """
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"Budget has no field(s) {unknown}; the fields are "
                            f"{sorted(known - {'name'})}.")
        return replace(self, **changes)


BUDGETS: dict[str, Budget] = {
    "smoke": Budget("smoke", image_size=64, patch_size=32, batch_size=8, train_steps=30,
                    opt_steps=40, n_test=2, sweep_points=3),
    "cpu": Budget("cpu", image_size=128, patch_size=48, batch_size=16, train_steps=600,
                  opt_steps=300, n_test=4, sweep_points=7),
    "gpu": Budget("gpu", image_size=256, patch_size=64, batch_size=64, train_steps=4000,
                  opt_steps=1000, n_test=8, sweep_points=11),
}


def get_budget(name: str | None = None) -> Budget:
    """Return the :class:`Budget` named ``name``, or the one ``LOSSBOOK_BUDGET`` selects.

    Parameters
    ----------
    name : str, optional
        ``"smoke"``, ``"cpu"``, ``"gpu"`` or ``"auto"``. ``None`` reads the environment
        variable ``LOSSBOOK_BUDGET``; unset or ``"auto"`` means ``"gpu"`` if CUDA is
        available, else ``"cpu"``.

    Raises
    ------
    ValueError
        For any other name; the message lists the valid ones.
    """
    source = "argument"
    if name is None:
        name = os.environ.get(ENV_VAR, "auto")
        source = f"environment variable {ENV_VAR}"
    key = str(name).strip().lower()
    if key in ("", "auto"):
        key = "gpu" if torch.cuda.is_available() else "cpu"
    if key not in BUDGETS:
        raise ValueError(
            f"unknown budget {name!r} (from the {source}); valid budgets are "
            f"{', '.join(repr(k) for k in BUDGETS)} or 'auto'. "
            f"Set it with e.g. `export {ENV_VAR}=smoke` or os.environ['{ENV_VAR}'] = 'cpu'."
        )
    return BUDGETS[key]
