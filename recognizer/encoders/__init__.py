"""Encoders: features -> CTC log-probabilities, chosen in the config (``model.encoder``).

- ``base``: the contract every encoder meets, and building one from ``{class_path, init_args}``.
- ``blstm``: ``BLSTMEncoder``, bidirectional LSTMs, exact under padding (the default).
- ``lstm``: ``LSTMEncoder``, unidirectional LSTMs (for streaming).
- ``lcblstm``: ``LCBLSTMEncoder``, latency-controlled BLSTMs: bidirectional within chunks plus a
  bounded look-ahead (for streaming).
- ``recurrent``: what those two share; ``layers``: the building blocks.

A new encoder is one file: subclass ``Encoder`` (or ``RecurrentEncoder``), then name it in a config
as ``model.encoder.class_path``.
"""

from .base import DEFAULT_ENCODER, Encoder, EncoderFactory, build_encoder, encoder_config
from .blstm import BLSTMEncoder
from .lcblstm import LCBLSTMEncoder
from .lstm import LSTMEncoder
from .recurrent import RecurrentEncoder

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EncoderFactory",
    "build_encoder",
    "encoder_config",
    "BLSTMEncoder",
    "LCBLSTMEncoder",
    "LSTMEncoder",
    "RecurrentEncoder",
]
