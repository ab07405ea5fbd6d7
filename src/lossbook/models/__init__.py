"""Networks used in the book's training chapters. Models never import losses."""

from .dncnn import DnCNN
from .tiny import TinyCNN

__all__ = ["TinyCNN", "DnCNN"]
