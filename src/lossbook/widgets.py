"""Interactive explorers for the chapters, each with a static twin for the HTML book.

The explorers need a live kernel (Jupyter, Colab): moving a slider recomputes. The static
twins precompute a sweep and return an animation with a JavaScript slider
(:meth:`matplotlib.animation.FuncAnimation.to_jshtml`), which works in the rendered book
without a kernel. Only notebooks import this module.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from . import distortions as _dist
from .losses.structural import ssim_components
from .viz import animate_images, to_numpy_image

__all__ = ["window_size_for", "ssim_view", "ssim_explorer", "ssim_sweep"]

DEFAULTS = {"distortion": "gaussian noise", "strength": 0.1, "k1": 0.01, "k2": 0.03,
            "sigma": 1.5}


def window_size_for(sigma: float) -> int:
    """Odd window side for a Gaussian of ``sigma``: ``2 * int(3.5 * sigma + 0.5) + 1``.

    scikit-image's rule (truncation at 3.5 sigma); 11 for sigma = 1.5.
    """
    return 2 * int(3.5 * sigma + 0.5) + 1


def _compute(x: torch.Tensor, distortion: str, strength: float, k1: float, k2: float,
             sigma: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    distorted = _dist.DISTORTIONS[distortion].fn(x, strength)
    comp = ssim_components(distorted, x, k1=k1, k2=k2, sigma=sigma,
                           win_size=window_size_for(sigma))
    mse = float((distorted.double() - x.double()).pow(2).mean())
    return distorted, comp.ssim, float(comp.ssim.mean()), mse


def ssim_view(x: torch.Tensor, **params: float | str):
    """One figure: the distorted image and its SSIM map, titled with SSIM and MSE.

    ``params``: ``distortion`` (a name in :data:`lossbook.distortions.DISTORTIONS`),
    ``strength``, ``k1``, ``k2``, ``sigma`` (defaults in :data:`DEFAULTS`).
    """
    p = {**DEFAULTS, **params}
    distorted, smap, value, mse = _compute(x, p["distortion"], p["strength"], p["k1"], p["k2"],
                                           p["sigma"])
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    axes[0].imshow(to_numpy_image(distorted), cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"{p['distortion']} (strength {p['strength']:.3g})\nMSE "
                      f"{mse * 255**2:.1f} on the 0-255 scale", fontsize=9)
    im = axes[1].imshow(to_numpy_image(smap), cmap="gray", vmin=0, vmax=1)
    axes[1].set_title(f"SSIM map (black <= 0, white = 1)\nSSIM = {value:.4f}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.colorbar(im, ax=axes[1], fraction=0.046, pad=0.04)
    fig.suptitle(f"K1={p['k1']:.3g}, K2={p['k2']:.3g}, window sigma={p['sigma']:.2g}",
                 fontsize=10)
    fig.tight_layout()
    return fig


def ssim_explorer(x: torch.Tensor):
    """An ipywidgets explorer: distortion, strength, K1, K2 and window sigma -> SSIM map.

    Needs a running kernel; in the static book use :func:`ssim_sweep` instead.

    Returns
    -------
    ipywidgets.interactive
        Display it (it is the last expression of a cell, or ``display(...)``).
    """
    import ipywidgets as w

    def show(distortion, strength, k1, k2, sigma):
        d = _dist.DISTORTIONS[distortion]
        s = d.low + strength * (d.high - d.low)
        fig = ssim_view(x, distortion=distortion, strength=s, k1=k1, k2=k2, sigma=sigma)
        plt.show()
        return fig

    return w.interactive(
        show,
        distortion=w.Dropdown(options=list(_dist.DISTORTIONS), value=DEFAULTS["distortion"]),
        strength=w.FloatSlider(value=0.1, min=0.0, max=1.0, step=0.01,
                               description="strength (fraction of range)"),
        k1=w.FloatLogSlider(value=0.01, base=10, min=-4, max=0, step=0.1),
        k2=w.FloatLogSlider(value=0.03, base=10, min=-4, max=0, step=0.1),
        sigma=w.FloatSlider(value=1.5, min=0.5, max=4.0, step=0.25),
    )


def ssim_sweep(x: torch.Tensor, param: str, values, *, dpi: int = 60, **fixed: float | str):
    """The static twin of :func:`ssim_explorer`: vary one parameter, return an animation.

    Parameters
    ----------
    x : torch.Tensor
        The reference image ``(1, C, H, W)`` in [0, 1] (keep it small: every frame is
        embedded in the page).
    param : str
        ``"strength"``, ``"k1"``, ``"k2"`` or ``"sigma"``.
    values : sequence of float
        The values, one per frame.
    dpi : int
        Resolution of the frames.
    **fixed
        The other parameters (defaults in :data:`DEFAULTS`).

    Returns
    -------
    matplotlib.animation.FuncAnimation
        Show it with ``IPython.display.HTML(anim.to_jshtml())``, then ``plt.close(anim._fig)``.
        The SSIM and MSE of every frame are in ``anim.ssim_values`` and ``anim.mse_values``.
    """
    if param not in ("strength", "k1", "k2", "sigma"):
        raise ValueError(f"param must be 'strength', 'k1', 'k2' or 'sigma'; got {param!r}.")
    p = {**DEFAULTS, **fixed}
    images, maps, labels, ssims, mses = [], [], [], [], []
    for v in values:
        p[param] = v
        distorted, smap, value, mse = _compute(x, p["distortion"], p["strength"], p["k1"],
                                               p["k2"], p["sigma"])
        images.append(distorted)
        maps.append(smap.clamp(0, 1))
        ssims.append(value)
        mses.append(mse)
        labels.append(f"{param}={v:.3g}: SSIM {value:.3f}, MSE {mse * 255**2:.0f} (0-255)")
    anim = animate_images({f"{p['distortion']}": images, "SSIM map": maps}, labels, dpi=dpi,
                          size=2.6)
    anim.ssim_values, anim.mse_values = ssims, mses
    return anim
