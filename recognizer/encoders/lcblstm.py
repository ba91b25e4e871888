"""A latency-controlled BLSTM encoder (Zhang et al., "Highway long short-term memory RNNs for distant
speech recognition", ICASSP 2016; Xue and Yan's LC-BLSTM): bidirectional layers that look ahead a
bounded number of frames, so that the model can stream.

The input (after frame stacking) is cut into chunks of ``chunk_size`` frames. Every layer reads each
chunk with ``right_context`` frames after it (a *window*):

- the forward direction runs over the chunk from the state it had at the end of the previous chunk
  (the state is carried, as in a unidirectional LSTM), then on over the right context from there
  (that part's state is dropped);
- the backward direction runs over the window from its end, starting from zeros.

The window's outputs feed the next layer's window; the outputs of the chunk's own frames are the
layer's output. So every output frame waits for at most ``right_context`` frames of input after its
chunk, however deep the stack, and a stream computed chunk by chunk (``step``) gives exactly what the
whole input gives (``forward``): training and streaming run the same code. Padding is exact: each
utterance's windows end at its own last frame.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import reverse_padded
from .recurrent import DROPOUT, HIDDEN_SIZE, INTERMEDIATE_WEIGHT, NUM_LAYERS, STACK, STRIDE, RecurrentEncoder

#: frames per chunk and look-ahead per chunk, in output frames (30 ms each at the default stride 3):
#: 600 ms chunks, 300 ms look-ahead
CHUNK_SIZE = 20
RIGHT_CONTEXT = 10

#: per layer, the forward direction's (h, c), each (1, batch, hidden)
State = list[tuple[torch.Tensor, torch.Tensor]]


class LCBLSTM(nn.Module):
    """Stacked latency-controlled BLSTM (see the module docstring); the recurrent stack of
    ``LCBLSTMEncoder``, and a streaming stack: ``initial_state`` and ``step``."""

    taps = True  # can return an intermediate layer's output (intermediate CTC)

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int, dropout: float, chunk_size: int, right_context: int
    ) -> None:
        super().__init__()
        if chunk_size < 1 or right_context < 0:
            raise ValueError(f"chunk_size must be >= 1 and right_context >= 0, got {chunk_size} and {right_context}")
        self.chunk_size, self.right_context, self.hidden_size = chunk_size, right_context, hidden_size
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        """The state before the first chunk: zeros, on ``like``'s device and in its dtype."""
        zeros = like.new_zeros(1, batch, self.hidden_size)
        return [(zeros, zeros) for _ in self.forward_layers]

    def step(
        self, window: torch.Tensor, lengths: torch.Tensor, central: int, state: State, tap: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """One chunk: ``window`` (batch, central + up to right_context, input_size) holds the chunk's
        ``central`` frames and the right context that follows; ``lengths`` (batch,) its real frames per
        utterance. Returns the outputs of the ``central`` frames (batch, central, 2 x hidden), those of
        layer ``tap`` (1-based; None for 0), and the state after the chunk."""
        tapped, carried = None, []
        x = window
        for layer, (forward, backward) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if layer:
                x = self.dropout(x)
            ahead, (h, c) = forward(x[:, :central], state[layer])
            carried.append((h, c))
            if x.shape[1] > central:  # the right context continues from the chunk's end; that state is dropped
                ahead = torch.cat([ahead, forward(x[:, central:], (h, c))[0]], dim=1)
            behind, _ = backward(reverse_padded(x, lengths))
            x = torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1)
            if layer + 1 == tap:
                tapped = x[:, :central]
        return x[:, :central], tapped, carried

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, tap: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, T, input_size), (batch,) -> (batch, T, 2 x hidden), and the output of layer ``tap``;
        padded frames are junk. The chunks one after another, as a stream would see them."""
        state = self.initial_state(x.shape[0], x)
        outputs, taps = [], []
        lengths = lengths.to(x.device)
        for start in range(0, x.shape[1], self.chunk_size):
            central = min(self.chunk_size, x.shape[1] - start)
            window = x[:, start : start + central + self.right_context]
            within = (lengths - start).clamp(0, window.shape[1])
            output, tapped, state = self.step(window, within, central, state, tap)
            outputs.append(output)
            taps.append(tapped)
        if not outputs:  # no frames at all
            return x.new_zeros(x.shape[0], 0, 2 * self.hidden_size), None
        return torch.cat(outputs, dim=1), None if tap == 0 else torch.cat(taps, dim=1)  # type: ignore[arg-type]


class LCBLSTMEncoder(RecurrentEncoder):
    """Normalization -> frame stacking -> latency-controlled BLSTM stack -> linear -> log-softmax: a
    bidirectional encoder that streams (see the module docstring).

    Args:
        chunk_size: output frames per chunk (30 ms each at the default stride of 3).
        right_context: output frames each chunk waits for after it (its algorithmic latency, on top
            of the chunk itself and the front-end's half window).
        Others: see ``RecurrentEncoder`` (``hidden_size`` is per direction).
    """

    #: its chunks are a Python loop, which ONNX tracing would unroll for one input length
    onnx_exportable = False

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
        chunk_size: int = CHUNK_SIZE,
        right_context: int = RIGHT_CONTEXT,
    ) -> None:
        self.chunk_size, self.right_context = chunk_size, right_context  # read by _recurrent
        super().__init__(
            input_dim,
            vocab_size,
            hidden_size,
            num_layers,
            stack,
            stride,
            dropout,
            intermediate_ctc,
            intermediate_weight,
        )

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        return LCBLSTM(
            input_size, hidden_size, num_layers, dropout, self.chunk_size, self.right_context
        ), 2 * hidden_size
