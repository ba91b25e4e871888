"""What the recurrent encoders share: normalize -> stack frames -> recurrent stack -> linear -> log-softmax.

A subclass says only which recurrent stack it runs (``_recurrent``): a module mapping
``(x (batch, T', input_size), lengths, tap)`` to ``(batch, T', output_size)`` whose outputs on real
frames do not depend on the padding, and the output of its layer ``tap`` (1-based; None for 0).

Intermediate CTC (Lee and Watanabe, "Intermediate loss regularization for CTC-based speech
recognition", ICASSP 2021; ESPnet's ``interctc``): with ``intermediate_ctc`` k, a second output layer
reads the stack after its layer k and training adds its CTC loss, weighted by ``intermediate_weight``:
lower layers learn to predict characters on their own, which regularizes a deep stack. Transcription
uses only the last layer.
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
INTERMEDIATE_WEIGHT = 0.3  # ESPnet's interctc_weight in its AN4/LibriSpeech recipes


class RecurrentEncoder(Encoder):
    """Base of ``BLSTMEncoder``, ``LSTMEncoder`` and ``LCBLSTMEncoder``.

    Args:
        input_dim, vocab_size: from the front-end and the tokenizer.
        hidden_size: LSTM units (per direction).
        num_layers: stacked recurrent layers.
        stack, stride: ``stack`` consecutive frames are concatenated every ``stride`` frames; the
            output rate is the input rate divided by ``stride``.
        dropout: between recurrent layers and before the output layer.
        intermediate_ctc: recurrent layer (1 to num_layers - 1) after which an auxiliary CTC output is
            trained (see the module docstring); 0 = none.
        intermediate_weight: its share of the training loss, ``(1 - w) * final + w * intermediate``.
    """

    training_only = (*Encoder.training_only, "intermediate_weight")
    label_layers = ("output", "intermediate_output")

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        hidden_size: int = HIDDEN_SIZE,
        num_layers: int = NUM_LAYERS,
        stack: int = STACK,
        stride: int = STRIDE,
        dropout: float = DROPOUT,
        intermediate_ctc: int = 0,
        intermediate_weight: float = INTERMEDIATE_WEIGHT,
    ) -> None:
        super().__init__(input_dim, vocab_size)
        if stride < 1 or stack < stride:
            raise ValueError(
                f"frame stacking needs 1 <= stride <= stack (stride {stride}, stack {stack}): "
                "a stack smaller than the stride would skip input frames"
            )
        if not 0 <= intermediate_ctc < num_layers:
            raise ValueError(
                f"intermediate_ctc must name a layer below the last (1 to {num_layers - 1}) or be 0, "
                f"got {intermediate_ctc}"
            )
        if not 0 <= intermediate_weight < 1:
            raise ValueError(f"intermediate_weight must be in [0, 1), got {intermediate_weight}")
        self.stack, self.stride = stack, stride
        self.intermediate_ctc = intermediate_ctc
        self.auxiliary_weight = intermediate_weight if intermediate_ctc else 0.0
        self.dropout = nn.Dropout(dropout)
        self.subsampling: nn.Module | None = None
        input_size = input_dim * stack
        subsampling = self._subsampling(input_dim, stack, stride)
        if subsampling is not None:
            self.subsampling, input_size = subsampling
        self.rnn, output_size = self._recurrent(input_size, hidden_size, num_layers, dropout)
        if intermediate_ctc and not getattr(self.rnn, "taps", False):
            raise ValueError(f"{type(self).__name__} has no intermediate_ctc: its recurrent stack runs as one call")
        self.output = nn.Linear(output_size, vocab_size)
        # every recurrent layer of a stack has the same output size
        self.intermediate_output = nn.Linear(output_size, vocab_size) if intermediate_ctc else None

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        """The recurrent stack, and the size of its output per frame."""
        raise NotImplementedError

    def _subsampling(self, input_dim: int, stack: int, stride: int) -> tuple[nn.Module, int] | None:
        """What takes the normalized features to the output frame rate in place of ``stack_frames``: a
        module ``(x, lengths) -> (x, lengths)`` and its output size per frame; None for the stacking."""
        return None

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return stacked_lengths(lengths, self.stride)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, lengths, _ = self._run(features, lengths, tap=0)
        return self._log_probs(self.output, x), lengths

    def forward_auxiliary(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        x, lengths, tapped = self._run(features, lengths, tap=self.intermediate_ctc)
        head = self.intermediate_output
        auxiliary = [] if tapped is None or head is None else [self._log_probs(head, tapped)]
        return self._log_probs(self.output, x), lengths, auxiliary

    def _run(
        self, features: torch.Tensor, lengths: torch.Tensor, tap: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        x = self.normalize(features, lengths)
        if self.subsampling is None:
            x, lengths = stack_frames(x, lengths, self.stack, self.stride)
        else:
            x, lengths = self.subsampling(x, lengths)
        x, tapped = self.rnn(x, lengths, tap)
        return x, lengths, tapped

    def _log_probs(self, output: nn.Module, x: torch.Tensor) -> torch.Tensor:
        logits = output(self.dropout(x))
        # float32 whatever autocast computed the layers in: bfloat16 keeps 3 digits, too few for log-probabilities
        return logits.float().log_softmax(dim=-1)
