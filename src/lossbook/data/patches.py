"""Random (degraded, clean) patch pairs drawn on the training device.

The images are stored once, as one tensor on the device; every batch is cut,
augmented and degraded there with a handful of tensor operations, so a GPU never
waits for a CPU data loader (and nothing is copied per step).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch

from .._validate import check_finite, check_image

__all__ = ["PatchSampler"]

Degrade = Callable[..., torch.Tensor]


def _accepts_generator(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return "generator" in params or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()
    )


class PatchSampler:
    """Draw random ``patch_size x patch_size`` crops and degrade them, on ``device``.

    Calling ``sampler(batch_size, generator)`` returns ``(degraded, clean)``:

    1. for each of the ``batch_size`` patches, pick an image uniformly at random and a
       crop position uniformly among all positions that fit inside it;
    2. if ``augment``, apply one of the 8 flips/rotations by 90 degrees (the dihedral
       group), chosen uniformly per patch;
    3. ``degraded = degrade(clean, generator=generator)`` (or ``degrade(clean)`` if the
       function takes no ``generator``); ``degrade=None`` returns ``clean`` twice
       (an autoencoder's target).

    All random draws use ``generator``, so the same seed gives the same batches; draws
    happen on the generator's device (``fit`` passes a generator on the training
    device, so nothing crosses between devices).

    Parameters
    ----------
    images : tensor or sequence of tensors
        Clean images: one tensor ``(N, C, H, W)``, or a sequence of ``(1, C, H, W)`` or
        ``(C, H, W)`` tensors of possibly different sizes (same ``C``), each at least
        ``patch_size`` on each side. Values in ``[0, 1]``.
    degrade : callable or None
        Turns a clean batch ``(B, C, p, p)`` into the network's input, e.g.
        ``functools.partial(add_gaussian_noise, sigma=25)`` or
        ``functools.partial(downsample, factor=2)`` (the output may have another size).
    patch_size : int
        Side of the square patches (pixels).
    device : str or torch.device
        Where the images are kept and the batches made.
    augment : bool
        Random flips and 90-degree rotations (default ``True``).

    Examples
    --------
    >>> import functools
    >>> from lossbook.data import add_gaussian_noise, load_images
    >>> sampler = PatchSampler(load_images("train", 128),
    ...                        functools.partial(add_gaussian_noise, sigma=25), 32)
    >>> noisy, clean = sampler(8, torch.Generator().manual_seed(0))
    >>> tuple(noisy.shape), tuple(clean.shape)
    ((8, 1, 32, 32), (8, 1, 32, 32))
    """

    def __init__(self, images: torch.Tensor | Sequence[torch.Tensor], degrade: Degrade | None,
                 patch_size: int, device: str | torch.device = "cpu", *,
                 augment: bool = True) -> None:
        if isinstance(patch_size, bool) or not isinstance(patch_size, int) or patch_size < 1:
            raise ValueError(f"patch_size must be a positive int; got {patch_size!r}.")
        if isinstance(images, torch.Tensor):
            check_image(images, "images")
            check_finite(images, "images")
            imgs = list(images.unbind(0))
        else:
            imgs = [im[0] if im.ndim == 4 and im.shape[0] == 1 else im for im in images]
            if not imgs:
                raise ValueError("images is empty; give at least one image.")
            for i, im in enumerate(imgs):
                check_image(im, f"images[{i}]", ndim=3)
                check_finite(im, f"images[{i}]")
        channels = {im.shape[0] for im in imgs}
        if len(channels) != 1:
            raise ValueError(
                f"all images must have the same number of channels; got {sorted(channels)}. "
                "Load them all with the same color= setting."
            )
        sizes = torch.tensor([tuple(im.shape[-2:]) for im in imgs])
        too_small = [i for i, (h, w) in enumerate(sizes.tolist()) if min(h, w) < patch_size]
        if too_small:
            raise ValueError(
                f"patch_size={patch_size} is larger than image(s) {too_small} "
                f"(sizes {[tuple(s) for s in sizes[too_small].tolist()]}); use a smaller "
                "patch_size or larger images."
            )
        self.device = torch.device(device)
        self.patch_size = patch_size
        self.degrade = degrade
        self.augment = augment
        self._pass_generator = degrade is not None and _accepts_generator(degrade)
        c = imgs[0].shape[0]
        hmax, wmax = (int(v) for v in sizes.max(0).values)
        # One padded tensor: crops are taken only inside each image's own (h, w).
        self.images = torch.zeros(len(imgs), c, hmax, wmax, device=self.device,
                                  dtype=imgs[0].dtype)
        for i, im in enumerate(imgs):
            self.images[i, :, : im.shape[1], : im.shape[2]] = im.to(self.device)
        self.sizes = sizes.to(self.device)
        self._offsets = torch.arange(patch_size, device=self.device)
        self._channels = torch.arange(c, device=self.device)

    def __len__(self) -> int:
        """Number of source images."""
        return self.images.shape[0]

    def clean_patches(self, batch_size: int, generator: torch.Generator | None = None
                      ) -> torch.Tensor:
        """Only the random clean patches ``(batch_size, C, p, p)`` (steps 1 and 2)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
        gdev = self.device if generator is None else generator.device
        p = self.patch_size
        u = torch.rand(batch_size, 3, generator=generator, device=gdev).to(self.device)
        idx = (u[:, 0] * len(self)).long().clamp(max=len(self) - 1)
        room = (self.sizes[idx] - p + 1).float()  # number of valid positions (h, w)
        # floor(u * room) is uniform on {0, ..., room - 1}; the minimum guards u -> 1.
        pos = torch.minimum((u[:, 1:] * room).long(), room.long() - 1)
        top, left = pos[:, 0], pos[:, 1]
        # Output pixel (i, j) of patch b reads image pixel (top + R, left + C). Augmenting
        # only changes the index grids R, C (transpose swaps them, flips reverse them), so
        # cutting and augmenting is one gather.
        i, j = self._offsets[:, None].expand(p, p), self._offsets[None, :].expand(p, p)
        if self.augment:
            t, fv, fh = (torch.rand(3, batch_size, generator=generator, device=gdev) < 0.5
                         ).to(self.device)[:, :, None, None]
            rows, cols = torch.where(t, j, i), torch.where(t, i, j)
            rows = torch.where(fv, p - 1 - rows, rows)
            cols = torch.where(fh, p - 1 - cols, cols)
        else:
            rows, cols = i.expand(batch_size, p, p), j.expand(batch_size, p, p)
        rows = (top[:, None, None] + rows)[:, None]
        cols = (left[:, None, None] + cols)[:, None]
        patches = self.images[idx[:, None, None, None], self._channels[None, :, None, None],
                              rows, cols]
        return patches.contiguous()

    def __call__(self, batch_size: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self.clean_patches(batch_size, generator)
        if self.degrade is None:
            return clean, clean
        if self._pass_generator:
            degraded = self.degrade(clean, generator=generator)
        else:
            degraded = self.degrade(clean)
        return degraded, clean

    def __repr__(self) -> str:
        return (f"PatchSampler({len(self)} images, patch_size={self.patch_size}, "
                f"device={self.device}, augment={self.augment}, degrade={self.degrade!r})")
