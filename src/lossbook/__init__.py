"""lossbook: loss functions for image reconstruction, and the code of the lossbook book.

Start every notebook with::

    import lossbook
    device = lossbook.setup()

which seeds the random number generators, picks the best device and prints the
compute budget (see :mod:`lossbook.budget`).
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from .budget import Budget, get_budget

__version__ = "0.1.0"
__all__ = ["setup", "pick_device", "Budget", "get_budget", "__version__"]

_COLAB_GPU_HINT = (
    "No GPU: this Colab runtime is CPU only. For the `gpu` budget switch it with "
    "Runtime > Change runtime type > Hardware accelerator: GPU (e.g. T4), then re-run "
    "the notebook from the top."
)


def _on_colab() -> bool:
    return "google.colab" in sys.modules


def pick_device() -> torch.device:
    """Return the best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def setup(seed: int = 0, *, verbose: bool = True) -> torch.device:
    """Seed Python, NumPy and PyTorch, pick the device and report the budget.

    Parameters
    ----------
    seed : int
        Seed for :mod:`random`, NumPy's global generator and ``torch.manual_seed``
        (all devices).
    verbose : bool
        Print the device, the budget and, on Colab without a GPU, how to get one.

    Returns
    -------
    torch.device
        The device chapters should compute on.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int; got {type(seed).__name__}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds the global generator students use
    torch.manual_seed(seed)
    device = pick_device()
    budget = get_budget()
    if verbose:
        name = device.type
        if device.type == "cuda":
            name = f"cuda ({torch.cuda.get_device_name(device)})"
        print(f"lossbook {__version__} | torch {torch.__version__} | device: {name} | "
              f"budget: {budget.name} (set {os.environ.get('LOSSBOOK_BUDGET', 'auto')!s} "
              "via LOSSBOOK_BUDGET) | seed: " + str(seed))
        if not budget.meaningful:
            print("Smoke budget: everything runs tiny, so the numbers below only show that "
                  "the code works; they are not results.")
        if _on_colab() and device.type != "cuda":
            print(_COLAB_GPU_HINT)
    return device
