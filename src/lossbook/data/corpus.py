"""The offline image corpus: scikit-image's bundled photographs plus synthetic images.

Everything here loads without a network: the natural images are the PNG/JPEG files
that ship *inside* the scikit-image package (never the ones its ``skimage.data``
fetches with pooch), the synthetic ones are computed (:mod:`lossbook.data.synthetic`).

The train/test split is fixed here, in code, so every chapter trains and evaluates on
the same images:

``test`` (held out, never trained on)
    ``camera`` (a photographer: sharp edges on smooth sky and grass),
    ``coins`` (round objects with fine relief on a textured background),
    ``chelsea`` (a cat: fur, whiskers, colour),
    ``grass`` (a dense natural texture).
``train``
    ``astronaut``, ``coffee``, ``rocket``, ``brick``, ``gravel``, ``moon``,
    ``hubble_deep_field``, ``retina``, ``motorcycle_left``, ``cell``,
    ``immunohistochemistry``, ``shepp_logan_phantom``.
``procedural``
    ``siemens_star``, ``zone_plate``, ``checkerboard``, ``dead_leaves``: in neither
    split, for illustrations and stress tests.

Every natural image is at least 300 pixels on its short side, so ``size <= 300``
works for the whole corpus. Images are grayscale by default (scikit-image's
``rgb2gray``: ITU-R BT.709 luma, ``0.2125 R + 0.7154 G + 0.0721 B``).

References
----------
S. van der Walt et al., "scikit-image: image processing in Python", PeerJ 2:e453, 2014.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from .synthetic import GENERATORS

__all__ = ["TRAIN_IMAGES", "TEST_IMAGES", "PROCEDURAL_IMAGES", "list_images",
           "load_image", "load_images", "MIN_SIDE"]

TEST_IMAGES: tuple[str, ...] = ("camera", "coins", "chelsea", "grass")
TRAIN_IMAGES: tuple[str, ...] = (
    "astronaut", "coffee", "rocket", "brick", "gravel", "moon", "hubble_deep_field",
    "retina", "motorcycle_left", "cell", "immunohistochemistry", "shepp_logan_phantom",
)
PROCEDURAL_IMAGES: tuple[str, ...] = tuple(GENERATORS)
MIN_SIDE = 300
"""The shortest side of any natural image in the corpus (``chelsea``: 300 x 451)."""

_SPLITS = ("train", "test", "all", "procedural")
_PROCEDURAL_DEFAULT_SIZE = 512


def list_images(split: str = "all") -> list[str]:
    """Names of the images in a split of the corpus.

    Parameters
    ----------
    split : {"train", "test", "all", "procedural"}
        ``"all"`` is ``train + test`` (the natural images); ``"procedural"`` lists the
        synthetic images, which belong to neither split.

    Returns
    -------
    list of str
        Names to pass to :func:`load_image`, in a fixed order.
    """
    if split == "train":
        return list(TRAIN_IMAGES)
    if split == "test":
        return list(TEST_IMAGES)
    if split == "all":
        return list(TRAIN_IMAGES + TEST_IMAGES)
    if split == "procedural":
        return list(PROCEDURAL_IMAGES)
    raise ValueError(f"split must be one of {', '.join(map(repr, _SPLITS))}; got {split!r}.")


@functools.cache
def _natural(name: str) -> np.ndarray:
    """The full-resolution image as float32 (H, W, 3) or (H, W), read-only, cached."""
    from skimage import data as skdata
    from skimage.util import img_as_float32

    if name == "motorcycle_left":
        arr = skdata.stereo_motorcycle()[0]
    else:
        arr = getattr(skdata, name)()
    arr = np.clip(img_as_float32(arr), 0.0, 1.0)
    if arr.ndim == 3 and arr.shape[2] == 4:  # RGBA: drop alpha
        arr = arr[..., :3]
    arr.setflags(write=False)
    return arr


@functools.lru_cache(maxsize=32)
def _synthetic(name: str, size: int) -> torch.Tensor:
    return GENERATORS[name](size)


def _to_channels(arr: np.ndarray, color: bool) -> np.ndarray:
    """(C, H, W) float32: gray -> 1 channel (or 3 copies if ``color``), RGB -> luma or 3."""
    if arr.ndim == 2:
        return np.repeat(arr[None], 3, axis=0) if color else arr[None]
    if color:
        return arr.transpose(2, 0, 1)
    from skimage.color import rgb2gray

    return rgb2gray(arr).astype(np.float32)[None]


def load_image(name: str, size: int | None = None, *, color: bool = False) -> torch.Tensor:
    """Load an image of the offline corpus as a float tensor in ``[0, 1]``.

    Parameters
    ----------
    name : str
        One of :func:`list_images` ``("all")`` or ``("procedural")``.
    size : int, optional
        Return a ``size x size`` image: the largest centred square is cropped, then
        reduced by area averaging (``F.interpolate(mode="area")``, i.e. every output pixel
        is the mean of the input pixels it covers, so nothing aliases). ``size`` must not
        exceed the image's short side (upsampling would invent detail); every natural
        image allows ``size <= 300``. ``None`` returns the full image, uncropped
        (synthetic images are then made at 512 x 512).
    color : bool
        ``False`` (default): one gray channel (BT.709 luma). ``True``: three RGB channels;
        gray images are repeated into all three.

    Returns
    -------
    torch.Tensor
        Shape ``(1, C, H, W)``, dtype float32, values in ``[0, 1]``, on the CPU (a fresh
        tensor: modifying it does not change the cache).

    Examples
    --------
    >>> x = load_image("camera", 128)
    >>> tuple(x.shape), float(x.min()) >= 0, float(x.max()) <= 1
    ((1, 1, 128, 128), True, True)
    """
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int or None; got {size!r}.")
    if name in GENERATORS:
        img = _synthetic(name, size or _PROCEDURAL_DEFAULT_SIZE)
        return img.repeat(1, 3, 1, 1) if color else img.clone()
    if name not in TRAIN_IMAGES + TEST_IMAGES:
        raise ValueError(
            f"unknown image {name!r}; available: {', '.join(list_images('all'))} "
            f"(natural) and {', '.join(PROCEDURAL_IMAGES)} (procedural). "
            "See lossbook.data.list_images()."
        )
    x = torch.from_numpy(np.array(_to_channels(_natural(name), color), dtype=np.float32))[None]
    if size is None:
        return x
    h, w = x.shape[-2:]
    side = min(h, w)
    if size > side:
        raise ValueError(
            f"size={size} exceeds the short side of {name!r} ({h} x {w}); the corpus never "
            f"upsamples. Use size <= {side} (any size <= {MIN_SIDE} works for every image)."
        )
    top, left = (h - side) // 2, (w - side) // 2
    x = x[..., top:top + side, left:left + side]
    if size != side:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x.clamp(0.0, 1.0).contiguous()


def load_images(names: str | list[str] | tuple[str, ...], size: int, *,
                color: bool = False) -> torch.Tensor:
    """Load several images at one ``size`` as a batch ``(N, C, size, size)``.

    ``names`` is a list of names or a split name (``"train"``, ``"test"``, ``"all"``,
    ``"procedural"``). See :func:`load_image`.
    """
    if isinstance(names, str):
        names = list_images(names)
    if not names:
        raise ValueError("names is empty; give at least one image name or a split name.")
    return torch.cat([load_image(n, size, color=color) for n in names])
