"""Networks used in the book's training chapters. Models never import losses."""

from .autoencoder import ConvAutoencoder
from .dncnn import DnCNN
from .edsr import EDSR
from .espcn import ESPCN
from .patchgan import PatchGANDiscriminator
from .tiny import TinyCNN
from .unet import UNet
from .vgg import VGG16_LAYERS, VGG16Features, load_feature_net, offline_feature_net

__all__ = ["TinyCNN", "DnCNN", "UNet", "ESPCN", "EDSR", "ConvAutoencoder", "PatchGANDiscriminator",
           "VGG16Features", "VGG16_LAYERS", "load_feature_net", "offline_feature_net"]
