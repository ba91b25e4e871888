"""Online handwriting: the ink sample (ink.py), readers (formats.py), preprocessing (functional.py),
plots (plot.py) and the ink front-end (frontend.py)."""

from .ink import Ink, InkError

__all__ = ["Ink", "InkError"]
