"""CTC conventions every layer shares: the blank's index, the frames a transcript needs, the word
separator of lexicons and character LMs. A leaf: it imports nothing from the project, so data,
tokenizer, decoding and the LM builder can all depend on it without depending on each other."""

from __future__ import annotations

from collections.abc import Sequence

#: label index of the CTC blank; the tokenizer's labels start at 1
BLANK = 0
#: how the blank is shown in token lists
BLANK_SYMBOL = "<blank>"
#: the word separator token of flashlight/wav2letter lexicons and of character n-gram LMs (the space)
WORD_BOUNDARY = "|"
#: the unknown-word token of n-gram LMs
UNK = "<unk>"


def min_ctc_frames(labels: Sequence[int]) -> int:
    """Fewest frames CTC needs for a label sequence: one per label plus a blank between repeats."""
    return len(labels) + sum(a == b for a, b in zip(labels, labels[1:]))
