"""Character tokenizer for CTC: index 0 is the blank, characters follow in alphabet order.

The tokenizer's settings (alphabet and text normalization) are plain values stored in every
checkpoint, so a model always decodes with the vocabulary it was trained with.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .ctc import BLANK_SYMBOL

Case = Literal["keep", "lower", "upper"]
Unknown = Literal["error", "drop", "replace"]
#: defaults of the text settings, shared by the DataModule and recognizer-lm
CASE: Case = "keep"
UNKNOWN: Unknown = "error"
REPLACEMENT = " "


class TokenizerError(ValueError):
    """A transcript that cannot be encoded; the message names the utterance and the character."""


@dataclass
class Tokenizer:
    """Maps text to label indices (1..len(alphabet)) and back.

    Args:
        alphabet: the characters the model outputs, in index order (index 1 is ``alphabet[0]``).
        case: case folding applied before encoding.
        keep: optional regular-expression character class; characters it does not match are deleted
            during normalization (e.g. ``"[a-z' ]"`` removes punctuation). This is normalization, not
            an error: the user asked for it.
        unknown: what to do with a character that survives normalization but is not in the alphabet:
            ``"error"`` raises, ``"drop"`` deletes it, ``"replace"`` substitutes ``replacement``.
            Drops and replacements are counted in ``self.unknown_counts``.
        replacement: the substitute for ``unknown="replace"``; must be in the alphabet.
    """

    alphabet: str
    case: Case = CASE
    keep: str | None = None
    unknown: Unknown = UNKNOWN
    replacement: str = REPLACEMENT
    unknown_counts: Counter = field(default_factory=Counter, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.alphabet:
            raise TokenizerError("the alphabet is empty")
        duplicates = [c for c, n in Counter(self.alphabet).items() if n > 1]
        if duplicates:
            raise TokenizerError(f"the alphabet repeats {duplicates!r}")
        if self.unknown not in ("error", "drop", "replace"):
            raise TokenizerError(f"unknown={self.unknown!r}: expected 'error', 'drop' or 'replace'")
        if self.unknown == "replace" and self.replacement not in self.alphabet:
            raise TokenizerError(f"replacement {self.replacement!r} is not in the alphabet")
        self._index = {c: i + 1 for i, c in enumerate(self.alphabet)}
        self._delete = re.compile(f"(?!{self.keep}).", re.DOTALL) if self.keep else None

    @classmethod
    def from_texts(cls, texts: Iterable[str], **options: Any) -> Tokenizer:
        """Build the alphabet from (training) transcripts after normalization, sorted."""
        probe = cls(alphabet=" ", **{k: v for k, v in options.items() if k in ("case", "keep")})
        chars: set[str] = set()
        for text in texts:
            chars.update(probe.normalize(text))
        if not chars:
            raise TokenizerError("no characters in the transcripts to build an alphabet from")
        return cls(alphabet="".join(sorted(chars)), **options)

    @property
    def vocab_size(self) -> int:
        """Number of output classes including the blank."""
        return len(self.alphabet) + 1

    @property
    def tokens(self) -> list[str]:
        """Output symbols by index: the blank then the alphabet."""
        return [BLANK_SYMBOL, *self.alphabet]

    def normalize(self, text: str) -> str:
        """Case folding, deletion of characters outside ``keep``, whitespace collapsed to one space."""
        if self.case == "lower":
            text = text.lower()
        elif self.case == "upper":
            text = text.upper()
        if self._delete is not None:
            text = self._delete.sub("", text)
        return " ".join(text.split())

    def encode(self, text: str, utterance: str = "<text>") -> list[int]:
        """Normalize and map to label indices; ``utterance`` names the source in errors."""
        labels = []
        for char in self.normalize(text):
            index = self._index.get(char)
            if index is not None:
                labels.append(index)
            elif self.unknown == "error":
                raise TokenizerError(
                    f"{utterance}: character {char!r} (U+{ord(char):04X}) is not in the alphabet "
                    f"{self.alphabet!r}; set the tokenizer's unknown='drop' or 'replace' to allow it"
                )
            else:
                self.unknown_counts[char] += 1
                if self.unknown == "replace":
                    labels.append(self._index[self.replacement])
        return labels

    def target_text(self, text: str, utterance: str = "<text>") -> str:
        """The text the model is trained to output for ``text``: normalized, and characters outside the
        alphabet handled by the ``unknown`` policy (``decode(encode(text))``). Other tools that must agree
        with the model's text, such as the LM builder, use it."""
        return self.decode(self.encode(text, utterance))

    def decode(self, labels: Sequence[int]) -> str:
        """Map label indices to text; the blank and out-of-range indices are ignored."""
        return "".join(self.alphabet[i - 1] for i in labels if 0 < i <= len(self.alphabet))

    def to_dict(self) -> dict[str, Any]:
        """Plain settings, safe to store in a checkpoint and reload with ``Tokenizer(**d)``."""
        settings = asdict(self)
        settings.pop("unknown_counts")
        return settings
