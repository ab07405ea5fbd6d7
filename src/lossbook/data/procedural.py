"""Procedural images made on the fly: edges whose position is uncertain.

These need no files and no network, so every chapter and test can use them.
"""

from __future__ import annotations

import torch

__all__ = ["step_edge", "ShiftedEdges"]


def step_edge(position: torch.Tensor, width: int, height: int = 1) -> torch.Tensor:
    r"""Anti-aliased vertical step edges, dark on the left and bright on the right.

    Pixel :math:`i` covers :math:`[i, i + 1)` and takes the fraction of it that lies right
    of the edge: :math:`\operatorname{clip}(i + 1 - p, 0, 1)`.

    Parameters
    ----------
    position : torch.Tensor
        Edge positions :math:`p` in pixels, shape ``(N,)`` (any real value).
    width, height : int
        Image size.

    Returns
    -------
    torch.Tensor
        Shape ``(N, 1, height, width)``, values in [0, 1], on ``position``'s device.
    """
    position = torch.as_tensor(position, dtype=torch.float32)
    if position.ndim != 1:
        raise ValueError(f"position must have shape (N,); got {tuple(position.shape)}.")
    cols = torch.arange(width, dtype=position.dtype, device=position.device)
    row = (cols[None, :] + 1 - position[:, None]).clamp(0, 1)
    return row[:, None, None, :].expand(-1, 1, height, width).contiguous()


class ShiftedEdges:
    """Pairs (what we observe, what is true) for an edge whose exact position is unknown.

    The observation only says *which cell* of ``cell`` pixels holds the edge: it shows a
    sharp step at the cell's centre :math:`c`. The truth is a step at
    :math:`p \\sim \\mathcal{U}(c - \\text{cell}/2,\\; c + \\text{cell}/2)`. No model can
    know :math:`p`; the best it can do depends on the loss (Chapter 1): the per-pixel
    mean of the possible truths for MSE (a ramp of width ``cell``), their median for MAE
    (a sharp step at :math:`c`).

    Parameters
    ----------
    height, width : int
        Image size (the edge is vertical, so ``height`` only adds identical rows).
    cell : int
        Width of the uncertainty about the edge position, in pixels (even).
    device : torch.device or str
        Where the batches are made.

    Calling ``sampler(batch_size, generator)`` returns ``(observed, truth)``, each of
    shape ``(batch_size, 1, height, width)``.
    """

    def __init__(self, height: int = 16, width: int = 64, cell: int = 8,
                 device: torch.device | str = "cpu") -> None:
        if cell < 2 or cell % 2:
            raise ValueError(f"cell must be an even number >= 2; got {cell}.")
        if width < 3 * cell:
            raise ValueError(f"width must be at least 3 * cell = {3 * cell}; got {width}.")
        self.height, self.width, self.cell = height, width, cell
        self.device = torch.device(device)

    def centres(self) -> torch.Tensor:
        """Possible cell centres, kept a cell away from both borders."""
        n_cells = self.width // self.cell
        k = torch.arange(1, n_cells - 1, device=self.device)
        return (k * self.cell + self.cell // 2).float()

    def __call__(self, batch_size: int, generator: torch.Generator | None = None):
        centres = self.centres()
        idx = torch.randint(len(centres), (batch_size,), generator=generator,
                            device=self.device)
        c = centres[idx]
        u = torch.rand(batch_size, generator=generator, device=self.device)
        p = c + (u - 0.5) * self.cell
        return step_edge(c, self.width, self.height), step_edge(p, self.width, self.height)
