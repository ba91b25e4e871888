"""CTC decoding, shared by every modality, on log-probabilities of shape (batch, time, vocab) with lengths.

Used alike by validation/test, ``recognizer-transcribe`` and notebooks.
"""

from ..ctc import min_ctc_frames
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
from .flashlight import LexiconError, LMDecoder, read_lexicon
from .frames import collapse_blank_frames
from .greedy import greedy_decode
from .search import DECODERS, DEFAULT_BEAM_SIZE, Decoder, DecodingOptions, decode, prepare

__all__ = [
    "DECODERS",
    "DEFAULT_BEAM_SIZE",
    "Decoder",
    "DecodingOptions",
    "decode",
    "prepare",
    "LMDecoder",
    "LexiconError",
    "read_lexicon",
    "Hypothesis",
    "prefix_beam_search",
    "collapse_blank_frames",
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
