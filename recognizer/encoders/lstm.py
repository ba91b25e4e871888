"""A unidirectional LSTM encoder: each output depends only on the input up to its frame, so it can
run on a stream (the basis for streaming recognition)."""

from __future__ import annotations

import torch
from torch import nn

from .recurrent import RecurrentEncoder

#: output frames a stream is read in: any size gives the same outputs, and with no look-ahead each frame
#: is final as soon as its input has arrived, so a stream takes each one then
CHUNK_SIZE = 1

#: the LSTM's (h, c), each (layers, batch, hidden)
State = tuple[torch.Tensor, torch.Tensor]


class LSTMStack(nn.Module):
    """``nn.LSTM`` with the ``(x, lengths, tap)`` call of the recurrent encoders. Padding comes after the
    real frames, so a left-to-right LSTM never reads it before them: no packing is needed. Its layers
    run as one cuDNN/oneDNN call, so there is no layer output to tap (no intermediate CTC).

    A streaming stack (``recognizer.streaming``): ``initial_state`` and ``step``, chunks of
    ``chunk_size`` with no look-ahead (``right_context`` 0)."""

    taps = False
    chunk_size = CHUNK_SIZE
    right_context = 0

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> None:
        super().__init__()
        between = dropout if num_layers > 1 else 0.0  # nn.LSTM warns about dropout after a lone layer
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=between)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        zeros = like.new_zeros(self.lstm.num_layers, batch, self.lstm.hidden_size)
        return zeros, zeros

    def step(
        self, window: torch.Tensor, lengths: torch.Tensor, central: int, state: State, tap: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """The next ``central`` frames (there is no right context) from the state after the previous ones."""
        if tap:
            raise ValueError("LSTMStack has no intermediate layer outputs")
        output, state = self.lstm(window[:, :central], state)
        return output, None, state

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, tap: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        if tap:
            raise ValueError("LSTMStack has no intermediate layer outputs")
        return self.lstm(x)[0], None


class LSTMEncoder(RecurrentEncoder):
    """Normalization -> frame stacking -> unidirectional LSTM stack -> linear -> log-softmax.

    Settings: see ``RecurrentEncoder``.
    """

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        return LSTMStack(input_size, hidden_size, num_layers, dropout), hidden_size
