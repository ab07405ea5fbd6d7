r"""Super-resolution data: low-/high-resolution pairs, patch sampling, classical upscalers.

A super-resolution data set is made from high-resolution (HR) images alone: each
low-resolution (LR) input is the HR image *reduced* by an integer ``scale`` with a
bicubic kernel, and the network learns the way back. How the reduction is done is
part of the task's definition (a network trained on one kind of LR image does worse
on another), so it is stated here once:

``F.interpolate(hr, size=(H // scale, W // scale), mode="bicubic", antialias=True,
align_corners=False)``

*Antialiasing* matters: without it PyTorch evaluates the bicubic kernel at its normal
width, so a x4 reduction keeps one weighted sample per 4 x 4 block and fine detail
folds back into false low-frequency patterns (aliasing). With ``antialias=True`` the
kernel is stretched by ``scale`` and low-pass filters before sampling, as Pillow's
``Image.resize(..., Image.BICUBIC)`` and MATLAB's ``imresize`` (the function that made
the LR images of the standard benchmarks, Set5, Set14, DIV2K's "bicubic" track) do.

Everything here stays on the device of its inputs; :class:`SRPatchSampler` cuts random
HR patches *and* makes their LR versions on the training device, like
:class:`~lossbook.data.PatchSampler` (it is one, with the bicubic reduction as its
degradation).

References
----------
W. Shi et al., "Real-time single image and video super-resolution using an efficient
sub-pixel convolutional neural network", CVPR 2016 (bicubic LR inputs, sub-pixel
convolution). B. Lim, S. Son, H. Kim, S. Nah, K. M. Lee, "Enhanced deep residual
networks for single image super-resolution", CVPRW 2017 (EDSR; Y-channel evaluation
with ``scale`` pixels shaved).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .._validate import check_image
from .corpus import load_image
from .patches import PatchSampler

__all__ = [
    "SR_SCALES",
    "check_scale",
    "crop_to_multiple",
    "bicubic_downsample",
    "bicubic_upsample",
    "lanczos_upsample",
    "sr_pair",
    "sr_pairs",
    "SRPatchSampler",
]

SR_SCALES: tuple[int, ...] = (2, 3, 4)
"""The usual super-resolution factors (any integer >= 2 works here)."""


def check_scale(scale: object) -> int:
    """Return ``scale`` as an int >= 2, or raise a ``ValueError`` saying what to pass."""
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 2:
        raise ValueError(
            f"scale must be an integer >= 2 (the usual ones are 2, 3, 4); got {scale!r}."
        )
    return int(scale)


def crop_to_multiple(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom/right of ``x`` ``(N, C, H, W)`` so that ``scale`` divides H and W.

    The benchmark convention ("modcrop"): the HR image is cut to a multiple of the scale
    before it is reduced, so that LR and HR pixels line up exactly.
    """
    check_image(x)
    scale = check_scale(scale)
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise ValueError(f"an image of {h} x {w} is smaller than scale={scale}.")
    return x[..., : h - h % scale, : w - w % scale]


def bicubic_downsample(x: torch.Tensor, scale: int, *, antialias: bool = True,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Reduce HR images by ``scale`` with the bicubic kernel: the LR input of SR.

    ``F.interpolate(x, size=(H // scale, W // scale), mode="bicubic",
    antialias=antialias, align_corners=False)``. With ``antialias=True`` (default) the
    cubic kernel (:math:`a = -0.5`, Keys 1981) is stretched to :math:`4 \times` scale
    taps so that it low-pass filters before sampling, which is what MATLAB's
    ``imresize`` and Pillow do; ``antialias=False`` samples the un-stretched kernel
    (:math:`a = -0.75`), aliasing fine detail. See the module docstring.

    Parameters
    ----------
    x : torch.Tensor
        HR images ``(N, C, H, W)``, ``H`` and ``W`` divisible by ``scale`` (use
        :func:`crop_to_multiple`).
    scale : int
        Reduction factor, >= 2.
    antialias : bool
        Low-pass filter before sampling (default True).
    generator : torch.Generator, optional
        Ignored (the reduction is deterministic); accepted so that it can serve as a
        :class:`~lossbook.data.PatchSampler` degradation.

    Returns
    -------
    torch.Tensor
        ``(N, C, H // scale, W // scale)``, not clipped (bicubic overshoot can leave values
        slightly outside ``[0, 1]``).
    """
    check_image(x)
    scale = check_scale(scale)
    h, w = x.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(
            f"image height and width must be divisible by scale={scale}; got {h} x {w}. "
            f"Crop first: lossbook.data.crop_to_multiple(x, {scale})."
        )
    return F.interpolate(x, size=(h // scale, w // scale), mode="bicubic",
                         antialias=antialias, align_corners=False)


def bicubic_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The classical baseline: bicubic interpolation of LR images by ``scale``.

    ``F.interpolate(x, size=(scale * h, scale * w), mode="bicubic", align_corners=False)``
    (PyTorch's cubic, :math:`a = -0.75`; antialiasing does not apply to enlargement).
    ``(N, C, h, w) -> (N, C, scale * h, scale * w)``, not clipped.
    """
    check_image(x)
    scale = check_scale(scale)
    h, w = x.shape[-2:]
    return F.interpolate(x, size=(h * scale, w * scale), mode="bicubic", align_corners=False)


def lanczos_upsample(x: torch.Tensor, scale: int) -> torch.Tensor:
    """The second classical baseline: Pillow's Lanczos (3 lobes) enlargement by ``scale``.

    Each channel is resized as a 32-bit float image (Pillow mode ``"F"``, so nothing is
    rounded to 8 bits) with ``Image.resize((scale * w, scale * h), Image.LANCZOS)``.
    Runs on the CPU and returns a tensor on ``x``'s device and dtype,
    ``(N, C, scale * h, scale * w)``, not clipped.
    """
    from PIL import Image

    check_image(x)
    scale = check_scale(scale)
    h, w = x.shape[-2:]
    arr = x.detach().float().cpu().numpy()
    out = np.empty(arr.shape[:2] + (h * scale, w * scale), dtype=np.float32)
    for n in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            img = Image.fromarray(np.ascontiguousarray(arr[n, c]), mode="F")
            out[n, c] = np.asarray(img.resize((w * scale, h * scale), Image.LANCZOS))
    return torch.from_numpy(out).to(device=x.device, dtype=x.dtype)


def sr_pair(hr: torch.Tensor, scale: int, *, antialias: bool = True
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lr, hr)`` for HR images ``(N, C, H, W)``: ``hr`` cropped to a multiple of
    ``scale`` and its bicubic reduction (:func:`bicubic_downsample`)."""
    hr = crop_to_multiple(hr, scale)
    return bicubic_downsample(hr, scale, antialias=antialias), hr


def sr_pairs(names: Sequence[str], size: int, scale: int, *, color: bool = True,
             antialias: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Test pairs from the corpus: ``size x size`` HR images and their LR versions.

    Parameters
    ----------
    names : sequence of str
        Corpus images (e.g. ``lossbook.data.TEST_IMAGES``).
    size : int
        HR side, a multiple of ``scale`` (at most 300 for every natural image).
    scale : int
        2, 3, 4, ...
    color : bool
        RGB (default): colour images keep their colour, gray ones are repeated into the
        three channels (the corpus mixes both). ``False``: one luma channel.
    antialias : bool
        See :func:`bicubic_downsample`.

    Returns
    -------
    (lr, hr)
        ``(N, C, size // scale, size // scale)`` and ``(N, C, size, size)``, CPU, float32.
    """
    scale = check_scale(scale)
    if size % scale:
        raise ValueError(f"size={size} must be a multiple of scale={scale}; use "
                         f"{size - size % scale}.")
    if not names:
        raise ValueError("names is empty; give at least one corpus image name.")
    hr = torch.cat([load_image(n, size, color=color) for n in names])
    return sr_pair(hr, scale, antialias=antialias)


class SRPatchSampler(PatchSampler):
    """Random ``(lr, hr)`` training patches, cut and reduced on the training device.

    A :class:`~lossbook.data.PatchSampler` whose degradation is
    :func:`bicubic_downsample`: ``sampler(batch_size, generator)`` draws ``batch_size``
    HR patches of ``patch_size`` pixels (random image, position and, if ``augment``,
    one of the 8 flips/rotations) and returns ``(lr, hr)`` with ``lr`` of side
    ``patch_size // scale``. Same seed, same batches.

    Parameters
    ----------
    images : tensor or sequence of tensors
        HR training images (``(N, C, H, W)`` or a list of ``(1, C, H, W)``), in ``[0, 1]``.
    scale : int
        Reduction factor; must divide ``patch_size``.
    patch_size : int
        Side of the HR patches.
    device : str or torch.device
        Where the images are kept and the batches made.
    antialias : bool
        See :func:`bicubic_downsample` (default True).
    augment : bool
        Random flips and 90-degree rotations (default True).

    Examples
    --------
    >>> from lossbook.data import load_images
    >>> s = SRPatchSampler(load_images(["astronaut", "coffee"], 128, color=True), 2, 32)
    >>> lr, hr = s(4, torch.Generator().manual_seed(0))
    >>> tuple(lr.shape), tuple(hr.shape)
    ((4, 3, 16, 16), (4, 3, 32, 32))
    """

    def __init__(self, images: torch.Tensor | Sequence[torch.Tensor], scale: int,
                 patch_size: int, device: str | torch.device = "cpu", *,
                 antialias: bool = True, augment: bool = True) -> None:
        scale = check_scale(scale)
        if isinstance(patch_size, int) and not isinstance(patch_size, bool) \
                and patch_size % scale:
            raise ValueError(
                f"patch_size={patch_size} must be a multiple of scale={scale} so that the LR "
                f"patch has whole pixels; use {patch_size - patch_size % scale or scale}."
            )
        self.scale, self.antialias = scale, antialias
        super().__init__(images, functools.partial(bicubic_downsample, scale=scale,
                                                   antialias=antialias),
                         patch_size, device, augment=augment)

    def __repr__(self) -> str:
        return (f"SRPatchSampler({len(self)} images, scale={self.scale}, "
                f"patch_size={self.patch_size}, device={self.device}, "
                f"antialias={self.antialias}, augment={self.augment})")
