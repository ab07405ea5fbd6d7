"""Networks used in the book's training chapters. Models never import losses."""

from .autoencoder import ConvAutoencoder
from .dncnn import DnCNN
from .edsr import EDSR
from .espcn import ESPCN
from .patchgan import PatchGANDiscriminator
from .tiny import TinyCNN
from .unet import UNet

__all__ = ["TinyCNN", "DnCNN", "UNet", "ESPCN", "EDSR", "ConvAutoencoder", "PatchGANDiscriminator"]
