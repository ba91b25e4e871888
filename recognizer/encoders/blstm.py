"""The default encoder: a stack of bidirectional LSTMs over stacked frames, exact under padding."""

from __future__ import annotations

from functools import partial
from typing import Any

from torch import nn

from .layers import BLSTM, ConvolvedStack, SpectralConvolution, TimeConvolution
from .recurrent import RecurrentEncoder

CONV_CHANNELS = 256
CONV_KERNEL = 3


class BLSTMEncoder(RecurrentEncoder):
    """Normalization -> frame stacking or convolutions over (time, frequency) -> [convolutions over time]
    -> bidirectional LSTM stack -> linear -> log-softmax.

    An utterance gets the same outputs alone and in a padded batch (``recognizer.encoders.layers.BLSTM``).
    Settings: see ``RecurrentEncoder`` (``hidden_size`` is per direction), ``residual`` and
    ``layer_norm``, ``weight_drop`` and ``dropout_after_norm`` of ``BLSTM``, and:

    Args:
        conv_layers: 1-D convolutions (``TimeConvolution``) between the frame stacking and the first
            BLSTM layer, at the output frame rate; 0 = none (the stacked frames go to the BLSTM).
        conv_channels: their output channels, the first BLSTM layer's input size.
        conv_kernel: their width in stacked frames (odd): each layer widens what a frame sees by
            ``conv_kernel - 1`` of them.
        spectral_channels: channels of two 2-D convolutions over (time, frequency) that replace the frame
            stacking (``SpectralConvolution``: the first reads each output frame's stacked frames, the
            second one output frame either side; a quarter of the bins per channel); 0 = stacking. For
            spectrogram features: on ink features they would mix unrelated quantities.
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
        conv_layers: int = 0,
        conv_channels: int = CONV_CHANNELS,
        conv_kernel: int = CONV_KERNEL,
        spectral_channels: int = 0,
        **kwargs: Any,
    ) -> None:
        # the BLSTM and the convolutions with their own options, for _recurrent, which the base calls
        self._make_stack = partial(
            BLSTM,
            residual=residual,
            layer_norm=layer_norm,
            weight_drop=weight_drop,
            dropout_after_norm=dropout_after_norm,
        )
        if conv_layers < 0:
            raise ValueError(f"conv_layers must be >= 0, got {conv_layers}")
        self._make_convolution = (
            partial(TimeConvolution, channels=conv_channels, num_layers=conv_layers, kernel=conv_kernel)
            if conv_layers
            else None
        )
        if spectral_channels < 0:
            raise ValueError(f"spectral_channels must be >= 0, got {spectral_channels}")
        self._spectral_channels = spectral_channels
        super().__init__(input_dim, vocab_size, **kwargs)

    def _subsampling(self, input_dim: int, stack: int, stride: int) -> tuple[nn.Module, int] | None:
        if not self._spectral_channels:
            return None
        convolution = SpectralConvolution(input_dim, self._spectral_channels, stack, stride)
        return convolution, convolution.output_size

    def _recurrent(self, input_size: int, hidden_size: int, num_layers: int, dropout: float) -> tuple[nn.Module, int]:
        if self._make_convolution is None:
            return self._make_stack(input_size, hidden_size, num_layers, dropout), 2 * hidden_size
        convolution = self._make_convolution(input_size)
        stack = self._make_stack(convolution.output_size, hidden_size, num_layers, dropout)
        return ConvolvedStack(convolution, stack), 2 * hidden_size
