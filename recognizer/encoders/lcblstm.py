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

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .layers import reverse_padded
from .recurrent import RecurrentEncoder

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
        output, tapped, state = self._chunks(
            window[:, None, :central], window[:, None, central:], lengths.to(window.device)[:, None], state, tap
        )
        return output[:, 0], None if tapped is None else tapped[:, 0], state

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, tap: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, T, input_size), (batch,) -> (batch, T, 2 x hidden), and the output of layer ``tap``;
        padded frames are junk. The same numbers as the chunks fed one after another (``step``)."""
        batch, frames, size = x.shape
        if frames == 0:
            return x.new_zeros(batch, 0, 2 * self.hidden_size), None
        chunk, right = self.chunk_size, self.right_context
        chunks = -(-frames // chunk)
        padded = F.pad(x, (0, 0, 0, chunks * chunk + right - frames))
        central = padded[:, : chunks * chunk].reshape(batch, chunks, chunk, size)
        ahead = torch.stack([padded[:, (k + 1) * chunk : (k + 1) * chunk + right] for k in range(chunks)], dim=1)
        starts = torch.arange(chunks, device=x.device) * chunk
        within = (lengths.to(x.device)[:, None] - starts).clamp(0, chunk + right)
        output, tapped, _ = self._chunks(central, ahead, within, self.initial_state(batch, x), tap)
        output = output.reshape(batch, chunks * chunk, -1)[:, :frames]
        return output, None if tapped is None else tapped.reshape(batch, chunks * chunk, -1)[:, :frames]

    def _chunks(
        self, central: torch.Tensor, ahead: torch.Tensor, within: torch.Tensor, state: State, tap: int
    ) -> tuple[torch.Tensor, torch.Tensor | None, State]:
        """Consecutive chunks of a batch, layer by layer: ``central`` (batch, chunks, chunk, size) and
        ``ahead`` (batch, chunks, right context, size) their frames and look-ahead, ``within`` (batch,
        chunks) each window's real frames, ``state`` the forward state before the first chunk.

        Only the forward direction over the chunks' own frames runs chunk after chunk (its state is
        carried); the look-ahead and the backward direction of all windows run as one batch each, so a
        layer costs the recurrence steps of one pass over the input plus one window, not three passes."""
        batch, chunks, chunk, _ = central.shape
        right = ahead.shape[2]
        rows = within.reshape(-1)
        tapped, carried = None, []
        for layer, (forward, backward) in enumerate(zip(self.forward_layers, self.backward_layers)):
            if layer:
                central, ahead = self.dropout(central), self.dropout(ahead)
            h, c = state[layer]
            outputs, starts_h, starts_c = [], [], []
            for k in range(chunks):
                output, (h, c) = forward(central[:, k], (h, c))
                outputs.append(output)
                starts_h.append(h)
                starts_c.append(c)
            carried.append((h, c))
            ahead_forward = central.new_zeros(batch, chunks, 0, self.hidden_size)
            if right:  # each look-ahead continues from its chunk's end; that state is dropped
                start = (torch.stack(starts_h, dim=2).flatten(1, 2), torch.stack(starts_c, dim=2).flatten(1, 2))
                ahead_forward = forward(ahead.flatten(0, 1), start)[0].view(batch, chunks, right, -1)
            windows = torch.cat([central, ahead], dim=2).flatten(0, 1)
            behind = reverse_padded(backward(reverse_padded(windows, rows))[0], rows).view(
                batch, chunks, chunk + right, -1
            )
            central = torch.cat([torch.stack(outputs, dim=1), behind[:, :, :chunk]], dim=-1)
            ahead = torch.cat([ahead_forward, behind[:, :, chunk:]], dim=-1)
            if layer + 1 == tap:
                tapped = central
        return central, tapped, carried


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
        *,
        chunk_size: int = CHUNK_SIZE,
        right_context: int = RIGHT_CONTEXT,
        **kwargs: Any,
    ) -> None:
        self.chunk_size, self.right_context = chunk_size, right_context  # read by _recurrent
        super().__init__(input_dim, vocab_size, **kwargs)

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        return LCBLSTM(
            input_size, hidden_size, num_layers, dropout, self.chunk_size, self.right_context
        ), 2 * hidden_size
