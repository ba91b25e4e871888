"""CTC decoding, shared by every modality, on log-probabilities of shape (batch, time, vocab) with lengths.

Used alike by validation/test, ``recognizer-transcribe`` and notebooks.
"""

from .alignment import (
    AlignmentError,
    CharSpan,
    WordSpan,
    align_chars,
    align_words,
    forced_align,
    scale_spans,
)
from .beam import Hypothesis, prefix_beam_search
from .greedy import greedy_decode, min_ctc_frames
from .search import DECODERS, Decoder, decode

__all__ = [
    "DECODERS",
    "Decoder",
    "decode",
    "Hypothesis",
    "prefix_beam_search",
    "greedy_decode",
    "min_ctc_frames",
    "forced_align",
    "AlignmentError",
    "CharSpan",
    "WordSpan",
    "align_chars",
    "align_words",
    "scale_spans",
]
