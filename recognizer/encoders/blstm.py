"""The default encoder: a stack of bidirectional LSTMs over stacked frames, exact under padding."""

from __future__ import annotations

from torch import nn

from .layers import BLSTM
from .recurrent import RecurrentEncoder


class BLSTMEncoder(RecurrentEncoder):
    """Normalization -> frame stacking -> bidirectional LSTM stack -> linear -> log-softmax.

    An utterance gets the same outputs alone and in a padded batch (``recognizer.encoders.layers.BLSTM``).
    Settings: see ``RecurrentEncoder`` (``hidden_size`` is per direction).
    """

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        return BLSTM(input_size, hidden_size, num_layers, dropout), 2 * hidden_size
