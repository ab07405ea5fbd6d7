"""Networks used in the book's training chapters."""

from .tiny import TinyCNN

__all__ = ["TinyCNN"]
