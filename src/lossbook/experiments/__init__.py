"""Named, reproducible experiments: what the training chapters run, and the CLI too.

One module per experiment, each registering itself with :func:`core.register`; the shared
machinery (:class:`Experiment`, :func:`run_experiment`, :func:`evaluate`, tables, JSON)
is in :mod:`lossbook.experiments.core`. Experiment modules import ``core`` and never each
other. The chapters call the same functions as the command line::

    python -m lossbook list
    python -m lossbook run denoise-losses --budget cpu --out runs

Experiments
-----------
``denoise-losses`` (:mod:`.denoising`, Chapter 7)
    One DnCNN trained with each of eight losses on Gaussian noise, against tuned
    classical denoisers.
``despeckle-domains`` (:mod:`.despeckling`, Chapter 6)
    Despeckling single-look SAR images in the linear and the dB domain with four losses
    (MSE, MSE + SSIM, ID-CNN's MSE + TV, MSE + an ENL-aware term), against the Lee filter.
``perceptual-adversarial`` (:mod:`.features`, Chapter 8)
    One small residual CNN trained to deblur with L1, L1 + perceptual and perceptual
    losses, then fine-tuned with L1 + lambda x adversarial (PatchGAN) for a sweep of lambda.
``sr-losses`` (:mod:`.super_resolution`, Chapter 9)
    One small EDSR trained for bicubic super-resolution with every loss of the book
    (pixel, structural, feature, content + style, adversarial), against bicubic and
    Lanczos interpolation.
``practical-guide`` (:mod:`.practical`, Chapter 12)
    A SAR autoencoder through the experimentation order (MSE -> MSE + SSIM -> ... ->
    balanced weights), and every common issue produced on purpose, detected and fixed.
``signal-to-image`` (:mod:`.signal_to_image`, Chapter 10)
    Speed-of-sound maps from ultrasound traces (straight-ray travel-time toy): tuned
    Tikhonov and TV against direct and post-processing networks trained with MSE,
    MSE + SSIM and Huber + TV; errors in m/s, out-of-distribution phantoms.

Every public name of the modules is re-exported here, so ``experiments.denoise_sizes``
and ``experiments.run_experiment`` both work.
"""

from __future__ import annotations

# the test-image lists, used by the chapters as ``experiments.TEST_IMAGES``
from ..data import TEST_IMAGES, TRAIN_IMAGES
from . import (
    core,
    denoising,
    despeckling,
    features,
    practical,
    signal_to_image,
    super_resolution,
)
from .core import *  # noqa: F403
from .denoising import *  # noqa: F403
from .despeckling import *  # noqa: F403
from .features import *  # noqa: F403
from .practical import *  # noqa: F403
from .signal_to_image import *  # noqa: F403
from .super_resolution import *  # noqa: F403

_MODULES = (core, denoising, despeckling, features, super_resolution, practical,
            signal_to_image)
"""Every experiment module; a new experiment adds its module here (and above)."""

__all__ = ["TEST_IMAGES", "TRAIN_IMAGES"]
for _module in _MODULES:
    __all__ += list(_module.__all__)
