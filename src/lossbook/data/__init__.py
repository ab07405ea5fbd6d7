"""Data: the offline image corpus, synthetic and procedural images, degradations,
random patch sampling on the training device, and verified downloads."""

from .corpus import (
    MIN_SIDE,
    PROCEDURAL_IMAGES,
    TEST_IMAGES,
    TRAIN_IMAGES,
    list_images,
    load_image,
    load_images,
)
from .degradations import (
    add_gaussian_noise,
    downsample,
    gaussian_blur,
    gaussian_kernel1d,
    jpeg,
    speckle,
    upsample,
)
from .download import download, sha256sum
from .patches import PatchSampler
from .procedural import ShiftedEdges, step_edge
from .sr import (
    SR_SCALES,
    SRPatchSampler,
    bicubic_downsample,
    bicubic_upsample,
    crop_to_multiple,
    lanczos_upsample,
    sr_pair,
    sr_pairs,
)
from .synthetic import checkerboard, dead_leaves, siemens_star, zone_plate

__all__ = [
    "ShiftedEdges",
    "step_edge",
    "list_images",
    "load_image",
    "load_images",
    "TRAIN_IMAGES",
    "TEST_IMAGES",
    "PROCEDURAL_IMAGES",
    "MIN_SIDE",
    "add_gaussian_noise",
    "gaussian_blur",
    "gaussian_kernel1d",
    "downsample",
    "upsample",
    "jpeg",
    "speckle",
    "PatchSampler",
    "download",
    "sha256sum",
    "siemens_star",
    "zone_plate",
    "checkerboard",
    "dead_leaves",
    "SR_SCALES",
    "SRPatchSampler",
    "bicubic_downsample",
    "bicubic_upsample",
    "crop_to_multiple",
    "lanczos_upsample",
    "sr_pair",
    "sr_pairs",
]
