"""Loss functions for image reconstruction.

Functional forms take ``(x, y)`` image batches of shape ``(N, C, H, W)`` and return a
scalar (``reduction="mean"``) or one value per image (``reduction="none"``); the
``nn.Module`` classes wrap them for use in training loops.
"""

from .adversarial import GAN_KINDS, discriminator_loss, generator_loss, r1_penalty
from .combined import (
    CombinedLoss,
    MixLoss,
    UncertaintyWeightedLoss,
    gaussian_weighted_l1,
    mix_l1_sigma,
)
from .gradient import (
    GradientLoss,
    LaplacianLoss,
    TVLoss,
    gradient_loss,
    laplacian,
    laplacian_loss,
    sobel,
    total_variation,
)
from .perceptual import (
    ContentStyleLoss,
    PerceptualLoss,
    TextureLoss,
    feature_loss,
    gram_matrix,
    texture_loss,
)
from .pixel import (
    CharbonnierLoss,
    HuberLoss,
    L1Loss,
    MSELoss,
    charbonnier,
    huber,
    mae,
    mse,
    smooth_l1,
)
from .structural import (
    MS_SSIM_WEIGHTS,
    MSSSIMLoss,
    SSIMLoss,
    gaussian_window,
    ms_ssim,
    ssim,
    ssim_components,
)

__all__ = [
    "mse",
    "mae",
    "huber",
    "smooth_l1",
    "charbonnier",
    "MSELoss",
    "L1Loss",
    "HuberLoss",
    "CharbonnierLoss",
    "gaussian_window",
    "ssim_components",
    "ssim",
    "ms_ssim",
    "MS_SSIM_WEIGHTS",
    "SSIMLoss",
    "MSSSIMLoss",
    "CombinedLoss",
    "MixLoss",
    "UncertaintyWeightedLoss",
    "gaussian_weighted_l1",
    "mix_l1_sigma",
    "sobel",
    "laplacian",
    "gradient_loss",
    "laplacian_loss",
    "total_variation",
    "GradientLoss",
    "LaplacianLoss",
    "TVLoss",
    "gram_matrix",
    "feature_loss",
    "texture_loss",
    "PerceptualLoss",
    "TextureLoss",
    "ContentStyleLoss",
    "GAN_KINDS",
    "discriminator_loss",
    "generator_loss",
    "r1_penalty",
]
