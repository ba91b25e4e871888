"""``recognizer export``: a trained model as a Lightning-free model file, or as ONNX (optionally int8).

    recognizer export runs/an4/.../averaged.ckpt --out an4.pt               # model file (weights + settings)
    recognizer export runs/an4/.../averaged.ckpt --out an4.onnx             # ONNX, front-end inside
    recognizer export runs/an4/.../averaged.ckpt --out an4-int8.onnx --int8 # LSTM and linear weights in int8

The ONNX graph of a speech model takes raw waveforms at the model's sample rate (``waveform``
(batch, samples) float32 in [-1, 1], ``lengths`` (batch,) int64) and holds the log-mel front-end and
the feature normalization, so onnxruntime and the file are all a user needs. The graph of an ink model
takes the per-point (or per-curve) features (``features`` (batch, frames, dim), ``lengths``): reading,
normalizing and resampling an ink stay in the Python front-end (``recognizer.ink``). Both give
``log_probs`` (batch, frames, vocab) and ``output_lengths``; batch and time are dynamic. The settings
(alphabet, front-end, encoder, decoding) are stored in the model's metadata under ``recognizer``, so
``recognizer.load("model.onnx")`` needs no other file.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .artifacts import (
    FEATURES,
    MODEL_FORMAT,
    MODEL_VERSION,
    ONNX_METADATA_KEY,
    ONNX_SUFFIX,
    WAVEFORM,
    first_line,
    save_atomically,
)
from .audio import LOG_FLOOR, UTTERANCE_STD_FLOOR, AudioFrontend, fft_size, torchaudio
from .encoders.layers import padding_mask
from .model import Model

#: ONNX operator set of the export (onnxruntime 1.17+ runs it)
OPSET = 17
#: the graph's nodes computing features, kept in float32 by ``--int8`` (their module's name)
FEATURES_MODULE = "log_mel"
#: the encoder's output layer (its module's path), also kept in float32 by ``--int8``: quantizing its
#: input on the fly costs more than the small product saves, and the labels' scores keep their precision
#: (benchmarks/RESULTS.md, "Deployment")
OUTPUT_MODULE = "encoder/output"
FORMATS = ("pt", "onnx")


class LogMel(nn.Module):
    """``recognizer.audio.log_mel`` for a padded batch, built from operators that export to ONNX: the
    short-time Fourier transform as a convolution with the windowed DFT basis (the window's own taps),
    the same mel filterbank, and the centring's reflection padding within each waveform's own length.

    (batch, samples), (batch,) -> log-mel (batch, frames, n_mels), frames (batch,)
    """

    basis: torch.Tensor
    filterbank: torch.Tensor

    def __init__(self, frontend: AudioFrontend) -> None:
        super().__init__()
        win_length, self.hop = frontend.win_length, frontend.hop_length
        self.n_fft = fft_size(win_length)
        self.utterance_norm = frontend.utterance_norm
        # torch.stft centres the window in n_fft samples around each hop; the taps outside it are zeros,
        # so the basis keeps only the window's own taps (a fifth less work for a 25 ms window in 512)
        self.win_length = win_length
        window = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
        bins = self.n_fft // 2 + 1
        taps = torch.arange(win_length, dtype=torch.float64) + (self.n_fft - win_length) // 2
        angle = 2 * math.pi * torch.outer(torch.arange(bins, dtype=torch.float64), taps)
        angle = angle.remainder(2 * math.pi * self.n_fft) / self.n_fft  # exact phases before float32
        basis = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window
        self.register_buffer("basis", basis.float().unsqueeze(1))  # (2 x bins, 1, win_length)
        filterbank = torchaudio.functional.melscale_fbanks(
            bins, 0.0, frontend.sample_rate / 2, frontend.n_mels, frontend.sample_rate
        )
        self.register_buffer("filterbank", filterbank.float())  # (bins, n_mels), as MelSpectrogram's

    def frames(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames of waveforms of ``lengths`` samples (centred windows: one per hop, plus one)."""
        return torch.div(lengths, self.hop, rounding_mode="floor") + 1

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) waveforms, (batch,) lengths of at least n_fft / 2 samples (the front-end
        requires a window) -> (batch, frames, n_mels) features, (batch,) frames."""
        # The window of frame j covers samples j x hop - before ... j x hop + after - 1; both ends of each
        # waveform are reflected within its own length (torch.stft's centring), beyond it is junk that the
        # frame count leaves out. Only those few samples are indexed, not the whole signal.
        before = self.n_fft // 2 - (self.n_fft - self.win_length) // 2
        after = self.win_length - before
        first = waveform[:, 1 : before + 1].flip(1)  # sample -i is sample i
        offsets = torch.arange(after, device=waveform.device)[None, :]
        last = waveform.gather(1, lengths[:, None] - 2 - offsets)  # sample n - 1 + i is sample n - 1 - i
        signal = torch.cat([first, waveform, torch.zeros_like(last)], dim=1)
        signal = signal.scatter(1, before + lengths[:, None] + offsets, last)
        spectrum = nn.functional.conv1d(signal.unsqueeze(1), self.basis, stride=self.hop)  # (batch, 2 x bins, frames)
        real, imag = spectrum.chunk(2, dim=1)
        power = (real * real + imag * imag).transpose(1, 2)  # (batch, frames, bins)
        features = torch.log(power @ self.filterbank + LOG_FLOOR)
        frames = self.frames(lengths)
        if self.utterance_norm is not None:
            features = self._normalize(features, frames)
        return features, frames

    def _normalize(self, features: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
        """``recognizer.audio.utterance_normalize`` over each utterance's own frames."""
        mask = padding_mask(frames, features.shape[1]).unsqueeze(-1).to(features.dtype)
        count = frames[:, None, None].to(features.dtype)
        mean = (features * mask).sum(dim=1, keepdim=True) / count
        centred = features - mean
        if self.utterance_norm != "meanvar":
            return centred
        variance = (centred * centred * mask).sum(dim=1, keepdim=True) / count
        return centred / variance.sqrt().clamp_min(UTTERANCE_STD_FLOOR)


class SpeechGraph(nn.Module):
    """Waveforms -> log-mel -> the model: what a speech model's ONNX file computes."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        if not isinstance(model.frontend, AudioFrontend):
            raise ValueError(f"a speech graph needs an audio model, not a {model.frontend.modality} one")
        self.log_mel = LogMel(model.frontend)
        self.model = model

    def forward(self, waveform: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, samples) waveforms and lengths -> log-probabilities and output lengths."""
        return self.model(*self.log_mel(waveform, lengths))


def graph_input(model: Model) -> str:
    """What the exported graph of ``model`` takes: ``waveform`` (speech) or ``features``."""
    return WAVEFORM if isinstance(model.frontend, AudioFrontend) else FEATURES


def metadata(model: Model) -> dict[str, Any]:
    """The settings stored in an ONNX model: enough to rebuild the tokenizer and the front-end, and to
    know what the graph takes."""
    name = graph_input(model)
    return {  # also what OnnxModel reads back
        "format": MODEL_FORMAT,
        "version": MODEL_VERSION,
        "input": name,
        # what the graph's time axis counts per feature frame (batching budgets count frames)
        "rows_per_frame": model.frontend.hop_length if name == WAVEFORM else 1,  # type: ignore[attr-defined]
        "stride": model.stride,
        **model.settings,
    }


def export_onnx(model: Model, path: str | os.PathLike, int8: bool = False) -> Path:
    """Write ``model`` as ONNX (see the module docstring); ``int8``: dynamic quantization of the LSTM and
    linear weights (onnxruntime's ``quantize_dynamic``), the front-end and the output layer kept in float32. The model is
    moved to the CPU in float32, in place. The written graph is checked against PyTorch on a batch
    size and lengths other than the traced ones: a graph with a length baked in is an error, not a file."""
    path = Path(path)
    if not model.encoder.onnx_exportable:
        raise ValueError(
            f"{path}: a {type(model.encoder).__name__} cannot be exported to ONNX yet; ship the model file (.pt)"
        )
    model = model.cpu().float().eval()
    name = graph_input(model)
    # eval: the exporter puts each module back in its mode afterwards, and a new graph starts in training's
    graph: nn.Module = (SpeechGraph(model) if name == WAVEFORM else model).eval()

    def write(temporary: Path) -> None:
        _trace(graph, _example(model, name, batch=2), name, temporary)
        _add_metadata(temporary, metadata(model))
        if int8:
            _quantize(temporary, name)
        _check(graph, temporary, _example(model, name, batch=3, seed=1), name, int8)

    try:
        return save_atomically(path, write)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def _trace(graph: nn.Module, example: tuple[torch.Tensor, torch.Tensor], name: str, out: Path) -> None:
    # The tracer warns about Python ints taken from shapes and about LSTM batch sizes; whether the graph
    # really follows every length is what _check tests, on other shapes than the traced ones.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", module=r"torch\.onnx")
        try:
            torch.onnx.export(
                graph,
                example,
                str(out),
                dynamo=False,  # the TorchScript exporter turns nn.LSTM into ONNX LSTM operators
                input_names=[name, "lengths"],
                output_names=["log_probs", "output_lengths"],
                dynamic_axes={
                    name: {0: "batch", 1: "time"},
                    "lengths": {0: "batch"},
                    "log_probs": {0: "batch", 1: "frames"},
                    "output_lengths": {0: "batch"},
                },
                opset_version=OPSET,
            )
        except (RuntimeError, TypeError, ValueError) as error:  # torch.onnx.errors.* are RuntimeErrors
            raise ValueError(f"cannot export the model to ONNX ({first_line(error)})") from None


def _add_metadata(path: Path, settings: dict[str, Any]) -> None:
    import onnx  # only exporting needs it; running needs onnxruntime alone

    exported = onnx.load(str(path))
    entry = exported.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(settings)
    onnx.save(exported, str(path))


def _check(graph: nn.Module, path: Path, example: tuple[torch.Tensor, torch.Tensor], name: str, int8: bool) -> None:
    """The exported graph gives PyTorch's log-probabilities (float32: within 1e-3; int8: the same lengths)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, lengths = example
    log_probs, out_lengths = session.run(None, {name: inputs.numpy(), "lengths": lengths.numpy()})
    with torch.no_grad():
        expected, expected_lengths = graph(inputs, lengths)
    same = expected.shape == log_probs.shape and torch.equal(expected_lengths, torch.from_numpy(out_lengths))
    if same and not int8:
        mask = torch.arange(expected.shape[1])[None, :, None] < expected_lengths[:, None, None]
        same = bool(((expected - torch.from_numpy(log_probs)).abs() * mask).max() <= 1e-3)
    if not same:
        raise ValueError(
            "the exported graph does not reproduce the model on another batch size and lengths "
            "(a length or batch size fixed while tracing?); not written"
        )


def _example(model: Model, name: str, batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` inputs of different lengths (nothing in the trace may depend on one length)."""
    if name == WAVEFORM:
        rate = model.frontend.sample_rate  # type: ignore[attr-defined]  # an AudioFrontend
        lengths = torch.tensor([rate - rate // 7 * i for i in range(batch)])
        dim = None
    else:
        lengths, dim = torch.tensor([60 - 13 * i for i in range(batch)]), model.frontend.feature_dim
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, int(lengths.max())) if dim is None else (batch, int(lengths.max()), dim)
    values = torch.randn(shape, generator=generator) * (0.1 if dim is None else 1.0)
    return values, lengths


def _quantize(path: Path, name: str) -> None:
    """Int8 weights, one scale per output channel, for the LSTM and MatMul/Gemm operators of the encoder
    but its output layer, in place."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = [node.name for node in onnx.load(str(path)).graph.node]
    features = [node for node in nodes if node.startswith(f"/{FEATURES_MODULE}/")]
    output = [node for node in nodes if f"/{OUTPUT_MODULE}/" in node]
    if (name == WAVEFORM and not any("MatMul" in node for node in features)) or not output:
        # the exporter named the nodes otherwise: quantizing would put the mel filterbank or the output in int8
        raise ValueError(
            f"cannot tell the front-end's (/{FEATURES_MODULE}/...) and output layer's (/{OUTPUT_MODULE}/...) "
            "nodes from the rest of the encoder for int8"
        )
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)  # the quantizer logs advice on static graph pre-processing to the root logger
        save_atomically(
            path,
            lambda quantized: quantize_dynamic(
                str(path),
                str(quantized),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["LSTM", "MatMul", "Gemm"],
                per_channel=True,  # 99 of 100 AN4 dev transcripts as in float32, against 96 per tensor
                # 7-bit weights: CPUs without VNNI (AVX2) multiply u8 x s8 pairs into a saturating int16, which
                # full-range weights overflow (an untrained model's best label then changed on 8-26 % of
                # frames there, against 0-2 % with this); the model may run on any CPU, so always
                reduce_range=True,
                nodes_to_exclude=features + output,
            ),
        )
    finally:
        root.setLevel(level)


def export(checkpoint: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None, int8: bool = False) -> Path:
    """Export a training checkpoint or model file to ``out``: a model file (``pt``) or ONNX (``onnx``);
    the format defaults to ``out``'s suffix (``.onnx``: ONNX, anything else: a model file)."""
    out = Path(out)
    onnx_suffix = out.suffix.lower() == ONNX_SUFFIX
    fmt = fmt or ("onnx" if onnx_suffix else "pt")
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if int8 and fmt != "onnx":
        raise ValueError("--int8 quantizes an ONNX export: use --format onnx (or an --out ending in .onnx)")
    if (fmt == "onnx") != onnx_suffix:  # recognizer.load tells the runtimes apart by the suffix
        raise ValueError(f"{out}: an ONNX model's name ends in {ONNX_SUFFIX}, and only an ONNX model's does")
    if not out.parent.is_dir():
        raise OSError(f"{out}: its folder {out.parent} does not exist")
    model = Model.load(checkpoint)
    return export_onnx(model, out, int8) if fmt == "onnx" else model.save(out)


def build_parser() -> argparse.ArgumentParser:
    """``recognizer export``'s arguments."""
    parser = argparse.ArgumentParser(prog="recognizer export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt written by `recognizer fit`, or a model file")
    parser.add_argument("--out", required=True, help="the file to write (.onnx for ONNX, e.g. .pt for a model file)")
    parser.add_argument("--format", choices=FORMATS, help="pt (model file) or onnx; default: from --out's suffix")
    parser.add_argument("--int8", action="store_true", help="ONNX only: int8 weights for the LSTM and linear layers")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer export CKPT --out FILE``: prints the written file and its size."""
    args = build_parser().parse_args(argv)
    path = export(args.checkpoint, args.out, args.format, args.int8)
    print(f"{path}\t{path.stat().st_size / 2**20:.1f} MiB")
    return 0
