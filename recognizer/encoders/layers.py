"""Building blocks of the encoders: padding masks, frame stacking, feature normalization, convolutions
over time and over (time, frequency), and a bidirectional LSTM stack whose outputs do not depend on padding.

Padding never reaches the backward direction, as with packed sequences, but without
``PackedSequence``: each direction is a unidirectional LSTM over the padded batch, and the backward
one reads every utterance reversed within its own length, so its padding comes last. On CPU this
trains about 10x faster than packed sequences (benchmarks/RESULTS.md) and gives the same outputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def padding_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(batch, max_length) boolean mask, True on real frames."""
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def stacked_lengths(lengths: torch.Tensor, stride: int) -> torch.Tensor:
    """Frames left after stacking with ``stride``: every input frame is covered, so ceil(T / stride)."""
    return torch.div(lengths + stride - 1, stride, rounding_mode="floor")


def stack_frames(
    features: torch.Tensor, lengths: torch.Tensor, stack: int, stride: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Concatenate ``stack`` consecutive frames every ``stride`` frames.

    (batch, T, F) -> (batch, ceil(T / stride), stack * F). Frames past the end are zeros, so the
    caller must zero the padding first for an utterance to give the same result alone and in a batch.
    """
    if stack == 1 and stride == 1:
        return features, lengths
    out_frames = (features.shape[1] + stride - 1) // stride  # not -(-T // stride): ONNX divides towards 0
    # A fixed pad and strided slices rather than unfold: the same frames, and it exports to ONNX with a
    # dynamic length (unfold does not). Slice k holds frame j x stride + k of every window j.
    padded = F.pad(features, (0, 0, 0, stack))
    stacked = torch.cat([padded[:, k : k + out_frames * stride : stride] for k in range(stack)], dim=-1)
    return stacked, stacked_lengths(lengths, stride)


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of a (batch, T, ...) tensor within its length; padding stays in place."""
    batch, frames = x.shape[0], x.shape[1]
    positions = torch.arange(frames, device=x.device)[None, :]
    lengths = lengths.to(x.device)[:, None]
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    # Whole rows of the flattened batch: one row copy per frame (ONNX Gather), not one gather per value
    rows = index + torch.arange(batch, device=x.device)[:, None] * frames
    return x.reshape(batch * frames, *x.shape[2:]).index_select(0, rows.reshape(-1)).view(x.shape)


class TimeConvolution(nn.Module):
    """1-D convolutions over time, each followed by a ReLU (a TDNN, as in Waibel et al. 1989, or
    Deep Speech 2's convolutions in one dimension): each output frame sees ``kernel`` frames around it
    per layer. 'Same' padding keeps the frame count, and the padded frames are zeroed after every
    layer, so a frame near an utterance's end reads the zeros it would read alone: exact under padding
    (the input's padding must be zeros, as ``stack_frames`` leaves it)."""

    def __init__(self, input_size: int, channels: int, num_layers: int, kernel: int) -> None:
        super().__init__()
        if channels < 1 or num_layers < 1 or kernel < 1 or kernel % 2 == 0:
            raise ValueError(
                f"a time convolution needs channels >= 1, layers >= 1 and an odd kernel (so that it is "
                f"centred on its frame), got {channels}, {num_layers} and {kernel}"
            )
        self.output_size = channels
        sizes = [input_size] + [channels] * (num_layers - 1)
        self.convs = nn.ModuleList(nn.Conv1d(size, channels, kernel, padding=kernel // 2) for size in sizes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(batch, T, input_size), (batch,) -> (batch, T, channels), padded frames zero."""
        real = padding_mask(lengths.to(x.device), x.shape[1])[:, None, :].to(x.dtype)
        y = x.transpose(1, 2)
        for conv in self.convs:
            y = F.relu(conv(y)) * real
        return y.transpose(1, 2)


class SpectralConvolution(nn.Module):
    """Two 2-D convolutions over (time, frequency) in place of frame stacking, each followed by a ReLU:
    the convolutional front of Deep Speech 2 and of ESPnet's VGG and ``Conv2dSubsampling`` encoders,
    kept narrow for a CPU. The first reads, for each output frame, the ``stack`` frames every ``stride``
    that ``stack_frames`` would concatenate, and 3 neighbouring bins every 2 (halving the frequency
    axis); the second is 3 x 3 at the output rate, halving it again. A filter shared along frequency
    sees a formant wherever a speaker puts it, which a stacked vector's dense weights cannot.
    Exact under padding as ``TimeConvolution``: the input's padding must be zeros, and the padded
    output frames are zeroed after each layer.

    (batch, T, input_dim), (batch,) -> (batch, ceil(T / stride), channels * ceil(input_dim / 4)), lengths.
    """

    def __init__(self, input_dim: int, channels: int, stack: int, stride: int) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"a spectral convolution needs channels >= 1, got {channels}")
        self.stack, self.stride = stack, stride
        self.first = nn.Conv2d(1, channels, (stack, 3), stride=(stride, 2), padding=(0, 1))
        self.second = nn.Conv2d(channels, channels, 3, stride=(1, 2), padding=1)
        bins = (input_dim + 1) // 2  # each layer: ceil(bins / 2) with a 3-wide kernel padded by 1
        self.output_size = channels * ((bins + 1) // 2)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_frames = (x.shape[1] + self.stride - 1) // self.stride  # as stack_frames (ONNX divides towards 0)
        # output frame j reads input frames j x stride ... j x stride + stack - 1, zeros past the end
        padded = F.pad(x, (0, 0, 0, self.stack))[:, : (out_frames - 1) * self.stride + self.stack]
        out_lengths = stacked_lengths(lengths, self.stride)
        real = padding_mask(out_lengths.to(x.device), out_frames)[:, None, :, None].to(x.dtype)
        y = F.relu(self.first(padded.unsqueeze(1))) * real
        y = F.relu(self.second(y)) * real  # (batch, channels, frames, bins)
        return y.transpose(1, 2).flatten(2), out_lengths


class ConvolvedStack(nn.Module):
    """A recurrent stack that reads its input through a ``TimeConvolution``; the ``(x, lengths, tap)``
    call of the recurrent stacks (``recognizer.encoders.recurrent``)."""

    def __init__(self, convolution: TimeConvolution, recurrent: nn.Module) -> None:
        super().__init__()
        self.convolution, self.recurrent = convolution, recurrent
        self.taps = getattr(recurrent, "taps", False)  # an intermediate layer's output is the stack's

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, tap: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.recurrent(self.convolution(x, lengths), lengths, tap)


class BLSTM(nn.Module):
    """Stacked bidirectional LSTM over padded batches whose outputs on real frames do not depend
    on the padding (see the module docstring). Dropout is applied between layers.

    Two options ease the gradient's way through a deep stack (off by default, as in the first models):
    ``layer_norm`` normalizes each layer's input from the second layer on, and the stack's output, per
    frame (so padding stays exact); ``residual`` adds each of those layers' input to its output
    (pre-norm residual, as in Transformers). Dropout comes before the norm by default, as the AN4 recipe
    was measured with it: the norm rescales what dropout left, so a layer's input is about sqrt(1 - p) as
    large in training as in inference; ``dropout_after_norm`` drops out the normalized input instead,
    which keeps training and inference at one scale. Either way inference computes the same. An
    intermediate layer's output (``tap``) is the residual sum, before the last norm.

    ``weight_drop`` p regularizes the recurrence itself (DropConnect on the hidden-to-hidden weights, as
    in Merity et al., "Regularizing and optimizing LSTM language models", ICLR 2018): in training, every
    layer and direction runs each batch with its own random p of those weights zeroed (the rest scaled
    by 1 / (1 - p)), the same mask at every time step, so the step-to-step state cannot rely on any
    single connection. Inference uses the full weights: the option changes no trained model's outputs."""

    taps = True  # can return an intermediate layer's output (intermediate CTC)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        dropout: float = 0.0,
        residual: bool = False,
        layer_norm: bool = False,
        weight_drop: float = 0.0,
        dropout_after_norm: bool = False,
    ) -> None:
        super().__init__()
        if not 0 <= weight_drop < 1:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop}")
        if dropout_after_norm and not layer_norm:
            raise ValueError("dropout_after_norm needs layer_norm: without it there is no norm to come after")
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)
        self.residual = residual
        self.weight_drop = weight_drop
        self.dropout_after_norm = dropout_after_norm
        # one norm per layer input from layer 2 on, and one for the output; the first layer's input is
        # the normalized features already
        self.norms = nn.ModuleList(nn.LayerNorm(2 * hidden_size) for _ in sizes) if layer_norm else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, tap: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(batch, T, input_size), (batch,) -> (batch, T, 2 * hidden_size), and the output of layer
        ``tap`` (1-based; None for 0); padded frames are junk."""
        tapped = None
        for layer, (forward, backward) in enumerate(zip(self.forward_layers, self.backward_layers)):
            inputs = x
            if layer:
                x = self._layer_input(x, layer)
            ahead = self._lstm(forward, x)
            behind = self._lstm(backward, reverse_padded(x, lengths))
            x = torch.cat([ahead, reverse_padded(behind, lengths)], dim=-1)
            if layer and self.residual:
                x = x + inputs
            if layer + 1 == tap:
                tapped = x
        if self.norms is not None:
            x = self.norms[-1](x)
        return x, tapped

    def _layer_input(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """What layer ``layer`` (0-based; called from the second on) reads: the previous output,
        dropped out and normalized."""
        if self.norms is None:
            return self.dropout(x)
        norm = self.norms[layer - 1]
        return self.dropout(norm(x)) if self.dropout_after_norm else norm(self.dropout(x))

    def _lstm(self, lstm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """One direction's outputs; in training with ``weight_drop``, through a dropped-out copy of its
        recurrent weights (the parameters themselves stay whole and get the gradient)."""
        if not (self.training and self.weight_drop):
            return lstm(x)[0]
        weights: dict[str, torch.Tensor] = dict(lstm.named_parameters())
        weights["weight_hh_l0"] = F.dropout(weights["weight_hh_l0"], self.weight_drop)
        return torch.func.functional_call(lstm, weights, (x,))[0]


class FeatureNormalizer(nn.Module):
    """Global mean/variance normalization with statistics from the training set, kept as buffers."""

    mean: torch.Tensor
    std: torch.Tensor
    initialized: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("initialized", torch.tensor(False))

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Install training-set statistics (std is floored to keep constant features finite)."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-5))
        self.initialized.fill_(True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std
