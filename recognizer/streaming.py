"""Streaming recognition: audio in pieces, text as it arrives, the offline result at the end.

    session = recognizer.load("lcblstm.ckpt").stream()
    for piece in microphone():                # float32 samples at the model's rate, any size
        partial = session.feed(piece)         # Partial(text, stable)
        print(partial.stable, "|", partial.text[len(partial.stable):])
    print(session.finish().text)              # decoded with the session's decoder (greedy, beam, lm)

Three stages keep state across pieces: the front-end's log-mel (``audio.LogMelStream``: the frames
whose window has arrived), the encoder (``EncoderStream``: normalization, frame stacking, and a
*streaming stack*, see below) and the search (``Decoder.stream``: the greedy or prefix beam search over
the final frames, carried from piece to piece; the ``lm`` decoder's partial results come from the prefix
beam). The encoder's output frames are final once their chunk and its right context have arrived:
they equal what the whole input gives (``forward``). ``Partial.stable`` is what the search over the
final frames has settled (the best path's labels; for a beam, the labels every prefix in it begins
with), which later audio only extends; ``Partial.text`` reads on over the frames still waiting for
their chunk. ``finish`` decodes all the final frames with the session's decoder: the offline result.

A streaming stack is an encoder's recurrent stack (``rnn``) with ``chunk_size`` and ``right_context``
(output frames), ``initial_state(batch, like)`` and ``step(window, lengths, central, state)`` (see
``encoders.lcblstm.LCBLSTM`` and ``encoders.lstm.LSTMStack``); its ``forward`` must be those steps over
the chunks. The BLSTM encoder reads whole inputs and does not stream.
"""

from __future__ import annotations

import copy
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .encoders.layers import stack_frames
from .encoders.recurrent import RecurrentEncoder
from .waveform import checked_mono

if TYPE_CHECKING:
    from .decoding import Decoder
    from .transcribe import Recognizer, Transcript


@dataclass(frozen=True)
class Partial:
    """What a stream has given so far: ``text`` the best reading now, ``stable`` its beginning that
    more audio will not change (what the search over the final frames has settled; empty for ``lm``,
    whose final search may rewrite anything), ``frames`` those final frames."""

    text: str
    stable: str
    frames: int


class EncoderStream:
    """An encoder fed feature frames as they come: ``feed`` returns the log-probabilities (frames,
    vocab) that are final, ``finish`` the rest, ``pending`` a provisional reading of the frames still
    waiting for their chunk or right context (without changing the stream)."""

    def __init__(self, encoder: Any) -> None:
        rnn: Any = getattr(encoder, "rnn", None)
        if not isinstance(encoder, RecurrentEncoder) or not hasattr(rnn, "step") or encoder.subsampling is not None:
            raise ValueError(
                f"{type(encoder).__name__} reads whole inputs and cannot stream: train a streaming encoder "
                "(recognizer.encoders.LCBLSTMEncoder or LSTMEncoder)"
            )
        self.encoder, self.rnn = encoder, rnn
        self.features = torch.zeros(0, encoder.input_dim)  # normalized, not yet stacked
        self.stacked = torch.zeros(0, encoder.input_dim * encoder.stack)  # stacked, not yet through the stack
        self.state: Any = None

    @torch.no_grad()
    def feed(self, features: torch.Tensor) -> torch.Tensor:
        self.features = torch.cat([self.features.to(features), self.encoder.normalizer(features)])
        self._stack(final=False)
        return self._run(final=False, like=features)

    @torch.no_grad()
    def finish(self) -> torch.Tensor:
        self._stack(final=True)
        return self._run(final=True, like=self.stacked)

    def pending(self) -> torch.Tensor:
        """The frames after the final ones as if the input ended now (the stream itself is unchanged)."""
        return copy.copy(self).finish()

    def _stack(self, final: bool) -> None:
        """Move the feature frames that complete a stack (all of them at the end, zero-padded as
        ``stack_frames`` pads) to ``stacked``."""
        stack, stride = self.encoder.stack, self.encoder.stride
        available = self.features.shape[0]
        count = -(-available // stride) if final else max(0, (available - stack) // stride + 1)
        if count == 0:
            return
        stacked, _ = stack_frames(self.features[None], torch.tensor([available]), stack, stride)
        self.stacked = torch.cat([self.stacked.to(stacked), stacked[0, :count]])
        self.features = self.features[count * stride :]

    def _run(self, final: bool, like: torch.Tensor) -> torch.Tensor:
        """The chunks whose right context has arrived (all of them at the end) through the stack."""
        chunk, right = self.rnn.chunk_size, self.rnn.right_context
        if self.state is None:
            self.state = self.rnn.initial_state(1, like)
        outputs = []
        with _without_onednn():
            while self.stacked.shape[0] >= chunk + right or (final and self.stacked.shape[0]):
                central = min(chunk, self.stacked.shape[0])
                window = self.stacked[: central + right]
                output, _, self.state = self.rnn.step(
                    window[None], torch.tensor([window.shape[0]]), central, self.state
                )
                outputs.append(self.encoder._log_probs(self.encoder.output, output)[0])
                self.stacked = self.stacked[central:]
        return torch.cat(outputs) if outputs else like.new_zeros(0, self.encoder.vocab_size)


@contextmanager
def _without_onednn() -> Iterator[None]:
    """oneDNN's LSTM builds a kernel for every new input shape (tens of ms each): a stream's chunks are
    small and of varying sizes, which PyTorch's own LSTM runs 5-10x faster."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the flags' restore warns about TF32 on Intel GPUs
        with torch.backends.mkldnn.flags(enabled=False):
            yield


class StreamSession:
    """One stream through a ``Recognizer``'s model (``Recognizer.stream``): ``feed`` samples, read
    ``Partial`` results, ``finish`` for the ``Transcript``."""

    def __init__(self, recognizer: Recognizer, decoder: Decoder) -> None:
        model = recognizer.model
        stream = getattr(model.frontend, "feature_stream", None)
        if stream is None or not isinstance(model, torch.nn.Module):
            raise ValueError(
                f"streaming needs a speech model run by PyTorch (a checkpoint or model file), not this "
                f"{model.frontend.modality} model{' in ONNX' if not isinstance(model, torch.nn.Module) else ''}"
            )
        self.recognizer, self.decoder = recognizer, decoder
        self.frontend = stream()
        self.encoder = EncoderStream(model.encoder)
        self.final: list[torch.Tensor] = []  # the final log-probabilities, piece by piece
        self.reading = decoder.stream()  # the decoder's search over them, carried from piece to piece
        self.frames = 0
        self.finished = False

    def feed(self, samples: Any) -> Partial:
        """The next samples (mono, at the model's rate, scaled to [-1, 1]; float or PCM integers)."""
        if self.finished:
            raise ValueError("this stream is finished: start another with Recognizer.stream()")
        if len(samples) == 0:  # nothing new (a read that returned no whole sample)
            return self.partial()
        waveform = torch.from_numpy(checked_mono(samples, "<stream>")).to(self.recognizer.device)
        final = self.encoder.feed(self.frontend.feed(waveform))
        self.final.append(final)
        self.reading.advance(final.cpu())
        self.frames += final.shape[0]
        return self.partial()

    def partial(self) -> Partial:
        """The reading so far: the search carried over the final frames, read on (in a copy) over the
        frames still waiting for their chunk; its work does not grow with the stream's length."""
        ahead = self.reading.copy()
        ahead.advance(self.encoder.pending().cpu())
        ahead.finish()
        decode = self.recognizer.tokenizer.decode
        return Partial(text=decode(ahead.best()), stable=decode(self.reading.agreed()), frames=self.frames)

    def finish(self, timestamps: bool = False) -> Transcript:
        """The transcript of everything fed, decoded by the session's decoder (with word timestamps, in
        seconds from the stream's start, if asked); the stream ends."""
        if self.finished:
            raise ValueError("this stream is finished: start another with Recognizer.stream()")
        self.finished = True
        for last in (self.encoder.feed(self.frontend.finish()), self.encoder.finish()):
            self.final.append(last)
            self.reading.advance(last.cpu())
        self.reading.finish()
        (transcript,) = self.recognizer.decode_log_probs([torch.cat(self.final)], self.decoder, timestamps=timestamps)
        transcript.source = "<stream>"
        return transcript


#: audio per piece fed by ``recognizer-transcribe --stream`` (a microphone's typical buffer)
CHUNK_MS = 100
#: ``recognizer-transcribe --stream -``: raw audio on standard input, 16-bit little-endian mono PCM
STDIN = "-"


def stream_inputs(
    recognizer: Recognizer,
    inputs: list[str],
    decoder: Decoder,
    chunk_ms: float = CHUNK_MS,
    on_error: str = "raise",
    show: Callable[[str, Partial], object] | None = None,
    timestamps: bool = False,
) -> Iterator[tuple[int, Transcript]]:
    """``recognizer-transcribe --stream``: each input (a file, or ``STDIN``) played through a session in
    pieces of ``chunk_ms``, each partial result given to ``show``; yields ``(index, Transcript)`` like
    ``Recognizer.transcribe_iter``."""
    from .transcripts import Transcript, check_on_error

    check_on_error(on_error)
    rate = getattr(recognizer.frontend, "sample_rate", None)
    if rate is None:
        raise ValueError(f"--stream needs a speech model, not a {recognizer.modality} one")
    if not chunk_ms > 0:
        raise ValueError(f"--chunk-ms must be positive, got {chunk_ms}")
    piece = max(1, round(rate * chunk_ms / 1000))
    for index, source in enumerate(inputs):
        try:
            session = recognizer.stream(decoder)
            samples = _stdin_pieces(piece) if source == STDIN else _file_pieces(recognizer, source, piece)
            for samples_piece in samples:
                partial = session.feed(samples_piece)
                if show is not None:
                    show(source, partial)
            transcript = session.finish(timestamps)
        except (ValueError, OSError) as error:
            if on_error == "raise":
                raise
            transcript = Transcript.failure(source, error)
        transcript.source = source
        yield index, transcript


def _file_pieces(recognizer: Recognizer, path: str, size: int) -> Iterator[np.ndarray]:
    recognizer.check_source(path)
    waveform = recognizer.frontend.load(path).cpu().numpy()  # resampled to the model's rate
    for start in range(0, len(waveform), size):
        yield waveform[start : start + size]


def _stdin_pieces(size: int) -> Iterator[np.ndarray]:
    while chunk := sys.stdin.buffer.read(2 * size):
        yield np.frombuffer(chunk[: len(chunk) // 2 * 2], dtype="<i2")


def show_partial(source: str, partial: Partial) -> None:
    """``recognizer-transcribe --stream``'s display on stderr: the reading so far, its stable part
    then ``|`` and the provisional rest; rewritten in place on a terminal, one line per change elsewhere."""
    line = f"{source}\t{partial.stable}|{partial.text[len(partial.stable) :]}"
    if sys.stderr.isatty():
        print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
    elif line != getattr(show_partial, "last", None):
        print(line, file=sys.stderr, flush=True)
    show_partial.last = line  # type: ignore[attr-defined]
