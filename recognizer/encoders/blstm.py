"""The default encoder: a stack of bidirectional LSTMs over stacked frames, exact under padding."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from .layers import BLSTM
from .recurrent import RecurrentEncoder


class BLSTMEncoder(RecurrentEncoder):
    """Normalization -> frame stacking -> bidirectional LSTM stack -> linear -> log-softmax.

    An utterance gets the same outputs alone and in a padded batch (``recognizer.encoders.layers.BLSTM``).
    Settings: see ``RecurrentEncoder`` (``hidden_size`` is per direction), and ``residual`` and
    ``layer_norm``, ``weight_drop`` and ``dropout_after_norm`` of ``BLSTM``.
    """

    training_only = (*RecurrentEncoder.training_only, "weight_drop", "dropout_after_norm")

    def __init__(
        self,
        input_dim: int,
        vocab_size: int,
        *,
        residual: bool = False,
        layer_norm: bool = False,
        weight_drop: float = 0.0,
        dropout_after_norm: bool = False,
        **kwargs: Any,
    ) -> None:
        # BLSTM with its own options, for _recurrent, which the base calls
        self._make_stack = partial(
            BLSTM,
            residual=residual,
            layer_norm=layer_norm,
            weight_drop=weight_drop,
            dropout_after_norm=dropout_after_norm,
        )
        super().__init__(input_dim, vocab_size, **kwargs)

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        stack = self._make_stack(input_size, hidden_size, num_layers, dropout)
        return stack, 2 * hidden_size
