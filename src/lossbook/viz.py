"""Figures for the chapters: image grids, zoomed crops, curves and source listings.

Every function draws on matplotlib and returns the figure (or axes) so that a
notebook cell can adjust it. Images are shown with ``cmap="gray"`` and a fixed
``vmin``/``vmax`` so that brightness means the same thing in every panel.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["to_numpy_image", "show_images", "plot_curves", "show_source", "add_zoom_box",
           "animate_images", "glue", "GLUE_PREFIX"]

GLUE_PREFIX = "application/papermill.record/"
"""MIME prefix under which a hidden glued value is stored (the format myst-nb reads)."""


def to_numpy_image(img: torch.Tensor | np.ndarray) -> np.ndarray:
    """Turn ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` into ``(H, W)`` or ``(H, W, 3)``."""
    if isinstance(img, torch.Tensor):
        img = img.detach().float().cpu().numpy()
    img = np.asarray(img)
    while img.ndim > 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim == 3:
        img = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
    if img.ndim not in (2, 3):
        raise ValueError(f"cannot show an array of shape {img.shape} as an image.")
    return img


def show_images(
    images: Sequence[torch.Tensor | np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "gray",
    ncols: int | None = None,
    size: float = 2.6,
    suptitle: str | None = None,
    crop: tuple[slice, slice] | None = None,
    colorbar: bool = False,
):
    """Show images side by side with the same grey scale.

    Parameters
    ----------
    images : sequence of tensors or arrays
        Each ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)``.
    titles : sequence of str, optional
        One title per image.
    vmin, vmax : float
        The grey-scale limits, shared by all panels (default 0 and 1).
    cmap : str
        Colour map for single-channel images.
    ncols : int, optional
        Panels per row (default: all in one row).
    size : float
        Panel size in inches.
    suptitle : str, optional
        Title of the whole figure.
    crop : (slice, slice), optional
        Show only ``image[rows, cols]`` (a zoomed crop), the same for all panels.
    colorbar : bool
        Add a colour bar to each panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = len(images)
    ncols = ncols or n
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = to_numpy_image(images[i])
        if crop is not None:
            img = img[crop[0], crop[1]]
        im = ax.imshow(img, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
        if colorbar:
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def add_zoom_box(ax, rows: slice, cols: slice, color: str = "tab:red"):
    """Draw the rectangle ``[rows, cols]`` on ``ax`` to show where a crop comes from."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((cols.start - 0.5, rows.start - 0.5), cols.stop - cols.start,
                           rows.stop - rows.start, fill=False, edgecolor=color, linewidth=1.5))
    return ax


def plot_curves(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    ax=None,
    logy: bool = False,
    styles: dict[str, dict] | None = None,
):
    """Plot named ``(x, y)`` curves on one labelled axes and return the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for name, (xs, ys) in curves.items():
        ax.plot(xs, ys, label=name, **(styles or {}).get(name, {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return ax


def glue(name: str, value, display: bool = False) -> None:
    """Record ``value`` under ``name`` in the cell's output, for ``{glue:text}`name```.

    This writes the same output that myst-nb's ``glue`` writes (a display output whose
    metadata is ``{"scrapbook": {"name": name, "mime_prefix": ...}}``), so the book
    inserts the value into the prose where ``{glue:text}`name``` (or ``{glue}``)
    appears, while the chapter needs only IPython: a student on Colab, where myst-nb is
    not installed, runs the same cell. With ``display=False`` (the default) nothing
    is shown in the notebook; outside IPython the call does nothing.
    """
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display as ipy_display
    except ImportError:  # pragma: no cover - IPython comes with every kernel
        return
    if get_ipython() is None:
        return
    bundle, metadata = format_display_data(value)
    prefix = "" if display else GLUE_PREFIX
    metadata["scrapbook"] = {"name": name, "mime_prefix": prefix}
    ipy_display({prefix + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def show_source(obj) -> None:
    """Print the source code of a package function or class, so a chapter can show it."""
    try:
        from IPython.display import Code, display

        display(Code(inspect.getsource(obj), language="python"))
    except ImportError:  # pragma: no cover - outside IPython
        print(inspect.getsource(obj))


def animate_images(
    frames: dict[str, Sequence[torch.Tensor | np.ndarray]],
    labels: Sequence[str],
    *,
    vmin: float = 0.0,
    vmax: float = 1.0,
    size: float = 2.0,
    interval: int = 400,
    suptitle: str = "",
    dpi: int = 60,
):
    """An animation of image sequences side by side, one panel per name.

    ``frames[name][i]`` is panel ``name`` at frame ``i``; ``labels[i]`` titles frame ``i``
    (e.g. "step 10"). Show it in a notebook without a kernel with
    ``IPython.display.HTML(anim.to_jshtml())`` and close the figure
    (``plt.close(anim._fig)``) so that the still figure is not shown too. Keep frames few
    and images small: every frame is embedded as a PNG in the page; ``dpi`` sets the
    frames' resolution (default 60, to keep pages light).

    Returns
    -------
    matplotlib.animation.FuncAnimation
    """
    from matplotlib.animation import FuncAnimation

    names = list(frames)
    n = len(labels)
    if any(len(frames[k]) != n for k in names):
        raise ValueError(f"every sequence needs one image per label ({n}); got lengths "
                         f"{ {k: len(v) for k, v in frames.items()} }.")
    fig, axes = plt.subplots(1, len(names), figsize=(size * len(names), size + 0.5),
                             squeeze=False, dpi=dpi)
    ims = []
    for ax, k in zip(axes[0], names, strict=True):
        ims.append(ax.imshow(to_numpy_image(frames[k][0]), cmap="gray", vmin=vmin, vmax=vmax,
                             interpolation="nearest"))
        ax.set_title(k, fontsize=9)
        ax.axis("off")
    title = fig.suptitle(f"{suptitle} {labels[0]}".strip())
    fig.tight_layout()

    def draw(i):
        for im, k in zip(ims, names, strict=True):
            im.set_data(to_numpy_image(frames[k][i]))
        title.set_text(f"{suptitle} {labels[i]}".strip())
        return [*ims, title]

    return FuncAnimation(fig, draw, frames=n, interval=interval, blit=False)
