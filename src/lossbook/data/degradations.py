"""Degradations: what turns a clean image into the input a reconstruction network sees.

Every function takes an image batch ``x`` of shape ``(N, C, H, W)`` with values in
``[0, 1]`` and returns the degraded batch on the same device. Random degradations
(noise, speckle) take an optional ``torch.Generator`` so a run is reproducible; the
deterministic ones (blur, downsampling, JPEG) accept ``generator`` too and ignore it,
so any of them can be handed to :class:`lossbook.data.PatchSampler` as is, e.g.
``functools.partial(add_gaussian_noise, sigma=25)``.

None of them clips its output to ``[0, 1]`` unless it says so: Gaussian noise is
left unclipped so that its statistics stay exactly those stated (pass ``clip=True``
for what a camera would record).
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F

from .._validate import check_finite, check_image, check_number

__all__ = [
    "add_gaussian_noise",
    "gaussian_kernel1d",
    "gaussian_blur",
    "downsample",
    "upsample",
    "jpeg",
    "speckle",
]


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise shaped like ``x``, drawn with ``generator`` wherever it lives."""
    if generator is None or generator.device == x.device:
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    # A generator on another device (e.g. a CPU generator for CUDA data): draw there, move.
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


def add_gaussian_noise(
    x: torch.Tensor,
    sigma: float | tuple[float, float],
    generator: torch.Generator | None = None,
    *,
    clip: bool = False,
) -> torch.Tensor:
    r"""Add white Gaussian noise whose standard deviation is given on the 0-255 scale.

    .. math:: y = x + \frac{\sigma}{255}\, n, \qquad n \sim \mathcal{N}(0, 1) \text{ i.i.d.}

    ``sigma=25`` therefore adds noise of standard deviation :math:`25/255 \approx 0.098`
    to an image in ``[0, 1]``: the convention of the denoising literature
    (e.g. DnCNN, Zhang et al. 2017, trains at :math:`\sigma \in \{15, 25, 50\}`).

    Parameters
    ----------
    x : torch.Tensor
        Clean images, shape ``(N, C, H, W)``, values in ``[0, 1]``.
    sigma : float or (float, float)
        Noise level on the 0-255 scale (>= 0). A pair ``(low, high)`` draws one level
        per image uniformly in that range ("blind" denoising).
    generator : torch.Generator, optional
        Source of randomness (a generator on another device than ``x`` also works).
    clip : bool
        Clip the result to ``[0, 1]`` (default ``False``: the noise stays exactly
        Gaussian, so the result can leave ``[0, 1]``).

    Returns
    -------
    torch.Tensor
        Noisy images, same shape, dtype and device as ``x``.

    References
    ----------
    K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian denoiser: residual
    learning of deep CNN for image denoising", IEEE TIP 26(7), 2017.
    """
    check_image(x)
    check_finite(x, "x")
    if isinstance(sigma, (tuple, list)):
        if len(sigma) != 2:
            raise ValueError(f"sigma as a range must be a pair (low, high); got {sigma!r}.")
        lo = check_number(sigma[0], "sigma's low end", nonnegative=True,
                          meaning="noise level on the 0-255 scale")
        hi = check_number(sigma[1], "sigma's high end", nonnegative=True,
                          meaning="noise level on the 0-255 scale")
        if not lo <= hi:
            raise ValueError(
                f"sigma as a range must be a pair (low, high) with 0 <= low <= high on the "
                f"0-255 scale; got {sigma!r}."
            )
        u = _rand_like_batch(x, generator)
        std = (lo + (hi - lo) * u).view(-1, 1, 1, 1) / 255.0
    else:
        std = check_number(sigma, "sigma", nonnegative=True,
                           meaning="on the 0-255 scale: 25 means a standard deviation of "
                                   "25/255 for images in [0, 1]") / 255.0
    y = x + std * _randn_like(x, generator)
    return y.clamp(0.0, 1.0) if clip else y


def _rand_like_batch(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = x.device if generator is None else generator.device
    return torch.rand(x.shape[0], generator=generator, device=dev, dtype=x.dtype).to(x.device)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    r"""Normalised 1-D Gaussian kernel :math:`g_i \propto e^{-i^2 / (2\sigma^2)}`.

    The radius is ``int(truncate * sigma + 0.5)``, as in
    :func:`scipy.ndimage.gaussian_filter`, so the kernel has ``2 * radius + 1`` taps that
    sum to 1.
    """
    radius = _radius(sigma, truncate)
    i = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (i / float(sigma)) ** 2)
    return (g / g.sum()).float()


def _radius(sigma: object, truncate: object = 4.0) -> int:
    """``int(truncate * sigma + 0.5)`` after checking both (before anything is allocated)."""
    sigma = check_number(sigma, "sigma", positive=True, meaning="pixels")
    truncate = check_number(truncate, "truncate", positive=True,
                            meaning="kernel radius in sigmas, e.g. 4.0")
    return int(truncate * sigma + 0.5)


def gaussian_blur(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Blur with a separable Gaussian of standard deviation ``sigma`` pixels.

    .. math:: y = g_\sigma * x, \qquad g_\sigma(i, j) \propto e^{-(i^2 + j^2)/(2\sigma^2)}

    The kernel is truncated at :math:`4\sigma` (like :func:`scipy.ndimage.gaussian_filter`)
    and normalised to sum to 1, so a constant image stays constant and the image mean is
    preserved up to border effects. Borders are mirrored without repeating the edge pixel
    (PyTorch ``"reflect"`` padding, SciPy ``mode="mirror"``).

    Parameters
    ----------
    x : torch.Tensor
        Images, shape ``(N, C, H, W)``; each channel is blurred separately.
        ``H`` and ``W`` must exceed the kernel radius ``int(4 * sigma + 0.5)``.
    sigma : float
        Standard deviation in pixels (> 0).
    generator : torch.Generator, optional
        Ignored (the blur is deterministic); accepted so that all degradations share a
        signature.

    Returns
    -------
    torch.Tensor
        Blurred images, same shape, dtype and device.
    """
    check_image(x)
    check_finite(x, "x")
    r = _radius(sigma)  # checked against the image before a kernel is allocated
    n, c, h, w = x.shape
    if r >= h or r >= w:
        raise ValueError(
            f"the blur kernel radius {r} (= int(4 * sigma + 0.5) for sigma={sigma}) must be "
            f"smaller than the image height and width; got an image of {h} x {w}. Use a "
            "smaller sigma or a larger image."
        )
    k = gaussian_kernel1d(sigma).to(device=x.device, dtype=x.dtype)
    y = x.reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1))
    y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1))
    return y.reshape(n, c, h, w)


def _check_factor(factor: object) -> int:
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive int (e.g. 2 or 4); got {factor!r}.")
    return factor


def downsample(
    x: torch.Tensor, factor: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""Bicubic downsampling by an integer ``factor``, with anti-aliasing.

    Calls ``torch.nn.functional.interpolate(x, scale_factor=1/factor, mode="bicubic",
    antialias=True, align_corners=False)``. With ``antialias=True`` the bicubic kernel
    (:math:`a = -0.5`) is stretched by ``factor`` so it also low-pass filters, as
    Pillow's ``Image.resize(..., BICUBIC)`` and MATLAB's ``imresize`` do; without it,
    a x4 reduction would alias (it would sample the image almost pointwise). This is
    the usual way low-resolution inputs for super-resolution are made (e.g. ESPCN,
    Shi et al. 2016).

    Parameters
    ----------
    x : torch.Tensor
        High-resolution images, shape ``(N, C, H, W)``; ``H`` and ``W`` must be
        divisible by ``factor`` so that low- and high-resolution pixels line up.
    factor : int
        Reduction factor (2, 3, 4, ...).
    generator : torch.Generator, optional
        Ignored; accepted so that all degradations share a signature.

    Returns
    -------
    torch.Tensor
        Shape ``(N, C, H // factor, W // factor)``. Bicubic overshoot can leave values
        slightly outside ``[0, 1]``; they are not clipped.
    """
    check_image(x)
    check_finite(x, "x")
    factor = _check_factor(factor)
    h, w = x.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(
            f"image height and width must be divisible by factor={factor}; got {h} x {w}. "
            f"Crop it first, e.g. x[..., :{h - h % factor}, :{w - w % factor}]."
        )
    if factor == 1:
        return x.clone()
    return F.interpolate(x, size=(h // factor, w // factor), mode="bicubic",
                         antialias=True, align_corners=False)


#: The most values an output of :func:`upsample` may hold (8 GiB of float32).
_MAX_ELEMENTS = 2**31


def upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Bicubic upsampling by an integer ``factor``: the classical super-resolution baseline.

    ``F.interpolate(x, scale_factor=factor, mode="bicubic", align_corners=False)``
    (:math:`a = -0.75`, PyTorch's default), shape ``(N, C, H, W)`` ->
    ``(N, C, factor * H, factor * W)``. Values are not clipped.
    """
    check_image(x)
    check_finite(x, "x")
    factor = _check_factor(factor)
    h, w = x.shape[-2:]
    if x.numel() * factor * factor > _MAX_ELEMENTS:
        raise ValueError(
            f"upsampling {tuple(x.shape)} by {factor} would make {x.numel() * factor ** 2:.3g} "
            f"values (more than {_MAX_ELEMENTS:.3g}); use a smaller factor or fewer images."
        )
    return F.interpolate(x, size=(h * factor, w * factor), mode="bicubic",
                         align_corners=False)


def jpeg(x: torch.Tensor, quality: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """JPEG-compress and decompress each image with Pillow at the given ``quality``.

    Each image is rounded to 8 bits, encoded with ``PIL.Image.save(..., "JPEG",
    quality=quality)`` (grayscale for ``C == 1``, RGB with Pillow's default 4:2:0 chroma
    subsampling for ``C == 3``) and decoded back to float in ``[0, 1]``. The operation runs
    on the CPU image by image and is not differentiable: use it to make training inputs,
    not inside a loss.

    Parameters
    ----------
    x : torch.Tensor
        Images, shape ``(N, C, H, W)`` with ``C`` in {1, 3}, values in ``[0, 1]``
        (clipped before encoding).
    quality : int
        Pillow's JPEG quality, 1 (worst) to 100 (best; Pillow advises at most 95).
    generator : torch.Generator, optional
        Ignored; accepted so that all degradations share a signature.

    Returns
    -------
    torch.Tensor
        Decoded images, same shape, dtype and device as ``x``.
    """
    from PIL import Image

    check_image(x)
    check_finite(x, "x")  # NaN would silently become 0 in the 8-bit conversion
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(
            f"quality must be an int from 1 (worst) to 100 (best; Pillow advises at most 95); "
            f"got {quality!r}."
        )
    c = x.shape[1]
    if c not in (1, 3):
        raise ValueError(f"jpeg needs 1 (gray) or 3 (RGB) channels; got {c}.")
    arr = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    out = np.empty(arr.shape, dtype=np.float32)
    for i, img in enumerate(arr):
        pil = Image.fromarray(img[0]) if c == 1 else Image.fromarray(img.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        dec = np.asarray(Image.open(buf).convert("L" if c == 1 else "RGB"), dtype=np.float32)
        out[i] = dec[None] if c == 1 else dec.transpose(2, 0, 1)
    return torch.from_numpy(out / 255.0).to(device=x.device, dtype=x.dtype)


def speckle(x: torch.Tensor, looks: float = 1, generator: torch.Generator | None = None
            ) -> torch.Tensor:
    r"""Multiply by fully developed SAR intensity speckle with ``looks`` looks.

    .. math:: y = x \cdot s, \qquad s \sim \operatorname{Gamma}(L, 1/L)
       \;(\text{mean } 1, \text{ variance } 1/L)

    A thin wrapper around :func:`lossbook.sar.add_speckle` (see Chapter 6), so that
    speckle can be used like the other degradations.
    """
    from .. import sar  # imported lazily: data may import sar, never the reverse

    return sar.add_speckle(x, looks=looks, generator=generator)

