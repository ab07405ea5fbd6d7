"""Interactive explorers for the chapters, each with a static twin for the HTML book.

The explorers need a live kernel (Jupyter, Colab): moving a slider recomputes. The static
twins precompute a sweep and return an animation with a JavaScript slider
(:meth:`matplotlib.animation.FuncAnimation.to_jshtml`), which works in the rendered book
without a kernel. Only notebooks import this module.

The 2AFC study of Chapter 11 follows the same pattern: :func:`study_app` is the live
study (two images side by side, buttons and F/J keys, progress, a results view; every
answer on disk at once through :class:`lossbook.subjective.StudySession`), and
:func:`study_static` its static twin (the stimuli and the analysis of a simulated
observer's answers, labelled as simulated).
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from . import distortions as _dist
from . import subjective as _subj
from .losses.structural import ssim_components
from .viz import animate_images, show_images, to_numpy_image

__all__ = ["window_size_for", "ssim_view", "ssim_explorer", "ssim_sweep", "png_bytes",
           "stimuli_figure", "scale_figure", "agreement_figure", "study_app", "study_static",
           "STATIC_STUDY_NOTE"]

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


# ------------------------------------------------------------------------ 2AFC study

STATIC_STUDY_NOTE = (
    "This page is static, so the answers below come from a SIMULATED observer (a stated "
    "model plus noise; see lossbook.subjective.SimulatedObserver), not from people. Run "
    "the chapter on Colab or in Jupyter to take the study yourself: your answers are saved "
    "as you give them, and the same analysis then runs on them."
)
"""The note that goes with every static (no-kernel) version of the study."""


def png_bytes(img: torch.Tensor | np.ndarray) -> bytes:
    """An image ``(H, W)``, ``(C, H, W)`` or ``(1, C, H, W)`` in [0, 1] as PNG bytes (8 bit)."""
    from PIL import Image

    arr = np.clip(to_numpy_image(img), 0.0, 1.0)
    arr = (arr * 255.0 + 0.5).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def stimuli_figure(stimuli: Mapping[str, torch.Tensor], reference: torch.Tensor | None = None,
                   *, captions: Mapping[str, str] | None = None, ncols: int | None = None,
                   size: float = 2.2, suptitle: str = "The stimuli of the study"):
    """All conditions of a study in one grid (the reference first, when given)."""
    images, titles = [], []
    if reference is not None:
        images.append(reference)
        titles.append("reference")
    for name, img in stimuli.items():
        images.append(img)
        titles.append(name + (f"\n{captions[name]}" if captions and name in captions else ""))
    ncols = ncols or min(len(images), 4)
    return show_images(images, titles, ncols=ncols, size=size, suptitle=suptitle)


def scale_figure(fit: Mapping, *, ax=None, title: str | None = None):
    """The quality scale of :func:`lossbook.subjective.fit_scale` with its intervals.

    Conditions are sorted by their scale value; the title says who answered (e.g.
    "simulated observer").
    """
    order = np.argsort(fit["scale"])
    names = [fit["conditions"][i] for i in order]
    val = np.asarray(fit["scale"])[order]
    err = np.vstack([val - np.asarray(fit["low"])[order], np.asarray(fit["high"])[order] - val])
    if ax is None:
        _, ax = plt.subplots(figsize=(6.0, 0.35 * len(names) + 1.4))
    ax.errorbar(val, np.arange(len(names)), xerr=err, fmt="o", capsize=3, color="tab:blue")
    ax.set_yticks(np.arange(len(names)), names)
    ax.axvline(0.0, color="0.7", lw=1, zorder=0)
    short = "Thurstone units" if fit["model"].startswith("Thurstone") else "Bradley-Terry units"
    ax.set_xlabel(f"quality scale ({short}; higher is better)")
    pct = int(round(100 * fit["confidence"]))
    ax.set_title(title or f"{fit['model']} scale, {pct}% intervals\n"
                 f"{fit['n_responses']} answers from: {fit['label']}", fontsize=10)
    ax.figure.tight_layout()
    return ax.figure


def agreement_figure(fit: Mapping, metrics: Mapping[str, Mapping[str, float]], *,
                     seed: int = 0):
    """Each metric against the subjective scale, with Spearman's and Kendall's coefficients.

    Parameters
    ----------
    fit : dict
        A result of :func:`lossbook.subjective.fit_scale`.
    metrics : dict
        ``{metric name: {condition: value}}``; orient every metric so that higher is
        better (e.g. pass ``-MAE``) or read negative correlations accordingly.
    seed : int
        Seed of the bootstrap intervals of the correlations.

    Returns
    -------
    matplotlib.figure.Figure
        With ``fig.correlations = {metric: (spearman result, kendall result)}``.
    """
    names = list(metrics)
    correlations = _subj.metric_agreement(fit, metrics, seed=seed)
    fig, axes = plt.subplots(1, len(names), figsize=(3.1 * len(names), 3.0), squeeze=False)
    scale = np.asarray(fit["scale"])
    for ax, m in zip(axes[0], names, strict=True):
        x = np.array([metrics[m][c] for c in fit["conditions"]], dtype=float)
        ax.scatter(x, scale, s=18)
        ax.set_xlabel(m)
        ax.set_ylabel("quality scale")
        rho, tau = correlations[m]
        if rho is None:
            ax.set_title(f"{m}: constant, no ranking", fontsize=9)
        else:
            ax.set_title(f"{m}: Spearman {rho['rho']:+.2f}\nKendall {tau['tau']:+.2f}",
                         fontsize=9)
    fig.suptitle(f"Metrics against the scale ({fit['label']})", fontsize=10)
    fig.tight_layout()
    fig.correlations = correlations
    return fig


def study_app(stimuli: Mapping[str, torch.Tensor], path: str | os.PathLike,
              design: _subj.StudyDesign | None = None, *, reference: torch.Tensor | None = None,
              observer: str = "you", model: str = "thurstone", width: int = 256,
              metrics: Mapping[str, Mapping[str, float]] | None = None):
    """The 2AFC study as an ipywidgets app: pick the better of two images, trial by trial.

    Every answer is appended to ``path`` before the next pair appears (see
    :class:`lossbook.subjective.StudySession`), so closing the tab or restarting the
    kernel loses nothing: calling this again with the same ``path`` resumes. Answer with
    the two buttons, or click into the key box and press F (left) or J (right). When
    every trial is answered (or on "Show results") the app fits the scale and shows it
    (and, with ``metrics``, each metric against it).

    Parameters
    ----------
    stimuli : dict of str to tensor
        One image per condition, ``(1, C, H, W)`` or ``(C, H, W)`` in [0, 1].
    path : path
        The responses file (JSON lines).
    design : StudyDesign, optional
        Default: :func:`lossbook.subjective.design_2afc` over the stimuli (seed 0), or
        the design stored in ``path`` when resuming.
    reference : tensor, optional
        The undistorted image, shown above the pair when given.
    observer : str
        Stored with every answer.
    model : str
        Scaling model for the results view.
    width : int
        Displayed width of each image in pixels.
    metrics : dict, optional
        ``{metric: {condition: value}}`` for the results view.

    Returns
    -------
    ipywidgets.VBox
        With ``app.session`` (the :class:`~lossbook.subjective.StudySession`) and
        ``app.answer(choice)`` (what the buttons call; handy in tests).
    """
    import ipywidgets as w

    if design is None and not os.path.exists(path):
        design = _subj.design_2afc(list(stimuli), seed=0)
    session = _subj.StudySession(path, design, observer=observer)
    missing = [c for c in session.design.conditions if c not in stimuli]
    if missing:
        raise ValueError(f"the study needs images for {missing}; pass them in stimuli.")
    png = {name: png_bytes(img) for name, img in stimuli.items()}

    left = w.Image(format="png", width=width)
    right = w.Image(format="png", width=width)
    progress = w.IntProgress(min=0, max=session.design.n_trials)
    status = w.HTML()
    b_left = w.Button(description="Left looks better (F)", button_style="info")
    b_right = w.Button(description="Right looks better (J)", button_style="info")
    b_results = w.Button(description="Show results")
    keys = w.Text(placeholder="click here, then press F or J", layout=w.Layout(width="260px"))
    out = w.Output()
    shown = {"t": time.monotonic()}
    top = []
    if reference is not None:
        top = [w.HTML("<b>Reference</b>"), w.Image(value=png_bytes(reference), format="png",
                                                   width=width)]

    def show_next() -> None:
        t = session.next_trial()
        progress.value = session.n_answered
        if t is None:
            status.value = (f"<b>Done:</b> {session.n_answered} answers saved in "
                            f"<code>{session.path}</code>.")
            b_left.disabled = b_right.disabled = keys.disabled = True
            show_results()
            return
        left.value, right.value = png[t.left], png[t.right]
        status.value = (f"Trial {session.n_answered + 1} of {session.design.n_trials}: which "
                        "image looks better? (answers are saved as you go)")
        shown["t"] = time.monotonic()

    def answer(choice: str) -> None:
        if session.done:
            return
        session.record(choice, response_time_s=time.monotonic() - shown["t"])
        show_next()

    def show_results(*_) -> None:
        out.clear_output()
        with out:
            if not session.responses:
                print("No answers yet.")
                return
            fit = _subj.fit_scale(session.responses, session.design.conditions, model=model)
            rep = _subj.repeat_agreement(session.responses)
            print(f"{session.n_answered} answers ({fit['label']}); repeated pairs answered the "
                  f"same way: {rep['agree']} of {rep['n']}.")
            scale_figure(fit)
            plt.show()
            if metrics:
                agreement_figure(fit, metrics)
                plt.show()

    def on_key(change) -> None:
        key = (change["new"] or "").strip().lower()[-1:]
        if key in ("f", "j"):
            answer("left" if key == "f" else "right")
        if change["new"]:
            keys.value = ""

    b_left.on_click(lambda _: answer("left"))
    b_right.on_click(lambda _: answer("right"))
    b_results.on_click(show_results)
    keys.observe(on_key, names="value")
    app = w.VBox([*top, status, w.HBox([left, right]), w.HBox([b_left, b_right, keys]),
                  w.HBox([progress, b_results]), out])
    app.session = session
    app.answer = answer
    show_next()
    return app


def study_static(stimuli: Mapping[str, torch.Tensor], responses: Sequence[Mapping], *,
                 reference: torch.Tensor | None = None,
                 metrics: Mapping[str, Mapping[str, float]] | None = None,
                 model: str = "thurstone", seed: int = 0, print_note: bool = True) -> dict:
    """The static twin of :func:`study_app`: the stimuli and the analysis of given answers.

    For the HTML book the answers are a simulated observer's; the note
    :data:`STATIC_STUDY_NOTE` is printed and every figure title names the source of the
    answers (:func:`lossbook.subjective.source_label`).

    Returns
    -------
    dict
        ``fit`` (:func:`lossbook.subjective.fit_scale`), ``repeat`` and ``triads``
        (consistency), ``figures`` (stimuli, scale and, with ``metrics``, agreement) and
        ``correlations`` (``{metric: (spearman, kendall)}``).
    """
    conditions = list(stimuli)
    fit = _subj.fit_scale(responses, conditions, model=model)
    label = fit["label"]
    if print_note and fit["simulated"]:
        print(STATIC_STUDY_NOTE)
    figs = {"stimuli": stimuli_figure(stimuli, reference,
                                      suptitle=f"The stimuli (answers below: {label})")}
    figs["scale"] = scale_figure(fit)
    out = {"fit": fit, "repeat": _subj.repeat_agreement(responses),
           "triads": _subj.circular_triads(responses, conditions), "figures": figs,
           "correlations": {}}
    if metrics:
        figs["agreement"] = agreement_figure(fit, metrics, seed=seed)
        out["correlations"] = figs["agreement"].correlations
    return out
