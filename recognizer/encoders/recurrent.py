"""What the recurrent encoders share: normalize -> stack frames -> recurrent stack -> linear -> log-softmax.

A subclass says only which recurrent stack it runs (``_recurrent``): a module mapping
``(x (batch, T', input_size), lengths)`` to ``(batch, T', output_size)`` whose outputs on real frames
do not depend on the padding.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Encoder
from .layers import stack_frames, stacked_lengths

HIDDEN_SIZE = 320
NUM_LAYERS = 4
STACK = 3
STRIDE = 3
DROPOUT = 0.2


class RecurrentEncoder(Encoder):
    """Base of ``BLSTMEncoder`` and ``LSTMEncoder``.

    Args:
        input_dim, vocab_size: from the front-end and the tokenizer.
        hidden_size: LSTM units (per direction).
        num_layers: stacked recurrent layers.
        stack, stride: ``stack`` consecutive frames are concatenated every ``stride`` frames; the
            output rate is the input rate divided by ``stride``.
        dropout: between recurrent layers and before the output layer.
    """

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        hidden_size: int = HIDDEN_SIZE,
        num_layers: int = NUM_LAYERS,
        stack: int = STACK,
        stride: int = STRIDE,
        dropout: float = DROPOUT,
    ) -> None:
        super().__init__(input_dim, vocab_size)
        if stride < 1 or stack < stride:
            raise ValueError(
                f"frame stacking needs 1 <= stride <= stack (stride {stride}, stack {stack}): "
                "a stack smaller than the stride would skip input frames"
            )
        self.stack, self.stride = stack, stride
        self.dropout = nn.Dropout(dropout)
        self.rnn, output_size = self._recurrent(input_dim * stack, hidden_size, num_layers, dropout)
        self.output = nn.Linear(output_size, vocab_size)

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        """The recurrent stack, and the size of its output per frame."""
        raise NotImplementedError

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return stacked_lengths(lengths, self.stride)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.normalize(features, lengths)
        x, lengths = stack_frames(x, lengths, self.stack, self.stride)
        x = self.rnn(x, lengths)
        logits = self.output(self.dropout(x))
        return logits.log_softmax(dim=-1), lengths
