"""Online handwriting: the ink sample, readers, preprocessing and the ink front-end."""

from .ink import Ink, InkError

__all__ = ["Ink", "InkError"]
