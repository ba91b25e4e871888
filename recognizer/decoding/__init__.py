"""CTC decoding, shared by every modality, on log-probabilities of shape (batch, time, vocab) with lengths.

Used alike by validation/test, ``recognizer-transcribe``, ``recognizer-tune`` and notebooks, all through
``decode`` (or a decoder from ``build_decoder``). Where things are:

* ``base``: what a decoder is (``Decoder``, its options made with ``option``), the registry,
  ``DecodingOptions`` and ``decode``;
* one file per built-in decoder: ``greedy`` (best path), ``beam`` (prefix beam search),
  ``flashlight`` (``lm``: lexicon and n-gram LM through flashlight-text);
* ``arguments``: the command-line flags, generated from the registered decoders;
* ``frames`` (collapsing confident blank runs before a search), ``alignment`` (forced alignment,
  character and word spans).

No list of decoders is kept here: the registry imports this package's modules the first time it is
asked for a decoder (``base``), so a new decoder is just its file.
"""

from ..ctc import min_ctc_frames
from .alignment import (
    AlignmentError,
    CharSpan,
    WordSpan,
    align_chars,
    align_words,
    forced_align,
    place_spans,
    scale_spans,
)
from .base import (
    DEFAULT_DECODER,
    Decoder,
    DecodingOptions,
    Hypothesis,
    build_decoder,
    decode,
    decoder_class,
    decoder_names,
    option,
    register,
    unregister,
)
from .beam import BeamDecoder, BeamOptions, prefix_beam_search
from .frames import collapse_blank_frames
from .greedy import GreedyDecoder, GreedyOptions, greedy_decode
from .lm import LexiconError, LMDecoder, LMOptions, read_lexicon

__all__ = [
    "DEFAULT_DECODER",
    "Decoder",
    "DecodingOptions",
    "Hypothesis",
    "build_decoder",
    "decode",
    "decoder_class",
    "decoder_names",
    "option",
    "register",
    "unregister",
    "GreedyDecoder",
    "GreedyOptions",
    "greedy_decode",
    "BeamDecoder",
    "BeamOptions",
    "prefix_beam_search",
    "LMDecoder",
    "LMOptions",
    "LexiconError",
    "read_lexicon",
    "collapse_blank_frames",
    "min_ctc_frames",
    "forced_align",
    "AlignmentError",
    "CharSpan",
    "WordSpan",
    "align_chars",
    "align_words",
    "place_spans",
    "scale_spans",
]
