"""Reading audio and checking waveforms, with numpy and soundfile only: what every runtime does to
an input before the model's front-end (``recognizer.audio`` for PyTorch, the graph itself for ONNX).
Without torch, so that an ONNX speech model runs without it (``recognizer.onnx_runtime``)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from .artifacts import first_line

#: sample values beyond this are not audio scaled to [-1, 1] (e.g. int16 values in a float array,
#: whose features would be far louder than anything the model saw, or overflow); clipped or
#: resampled audio overshoots 1 by far less
MAX_AMPLITUDE = 8.0

# libsndfile's container names that are also file suffixes (wav, flac, ogg, mp3, aiff, au, ...)
_LIBSNDFILE_SUFFIXES = {name.lower() for name in soundfile.available_formats()} | {"aif", "opus", "sph", "oga"}
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".sph", ".aiff", ".aif", ".au", ".opus", ".m4a")


class AudioError(ValueError):
    """Audio that cannot be used (unreadable, empty, non-finite); the message names the file."""


def to_samples(sample_rate: int, ms: float) -> int:
    """A duration in milliseconds (a window, a hop) in samples."""
    return round(sample_rate * ms / 1000)


def _by_libsndfile(path: str) -> bool:
    return Path(path).suffix.lower().lstrip(".") in _LIBSNDFILE_SUFFIXES or not Path(path).suffix


def _unreadable(path: str, error: Exception) -> AudioError:
    reason = str(error).replace(f"Error opening {path!r}: ", "")  # soundfile repeats the path
    return AudioError(f"{path}: cannot read audio ({reason})")


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """An audio file's samples mixed to mono (float32, not yet checked: see ``checked_mono``) and its rate."""
    path = str(path)
    try:
        if _by_libsndfile(path):
            data, rate = soundfile.read(path, dtype="float32", always_2d=True)
            data = data.mean(axis=1)
        else:  # e.g. M4A/AAC: librosa's audioread fallback, which needs a system decoder
            import librosa

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data, rate = librosa.load(path, sr=None, mono=True, dtype=np.float32)
    except Exception as error:
        raise _unreadable(path, error) from None
    return data, int(rate)


def audio_seconds(path: str | os.PathLike) -> float | None:
    """An audio file's duration from its header, without decoding it; None for a format whose length
    is known only once decoded (M4A/AAC through librosa). An unreadable file is an ``AudioError``."""
    path = str(path)
    if not _by_libsndfile(path):
        return None
    try:
        info = soundfile.info(path)
    except Exception as error:
        raise _unreadable(path, error) from None
    return info.frames / info.samplerate if info.samplerate > 0 else 0.0


def checked_mono(waveform: Any, name: str = "<array>") -> np.ndarray:
    """An in-memory waveform as mono float32 in [-1, 1]; ``name`` is used in errors.

    Checks it (not empty, finite, scaled to [-1, 1]), scales PCM integers to [-1, 1) and mixes channels
    to mono. A 2-D input is (channels, samples) if its first dimension is the smaller one.
    """
    if hasattr(waveform, "is_floating_point"):  # a torch tensor (not imported here): float32 first, as numpy
        # has no bfloat16; integers stay integers, to be scaled as PCM below
        waveform = (waveform.float() if waveform.is_floating_point() else waveform).detach().cpu().numpy()
    pcm = isinstance(waveform, np.ndarray) and np.issubdtype(waveform.dtype, np.integer)  # not a list of ints
    try:
        waveform = np.asarray(waveform)
    except ValueError as error:  # ragged lists
        raise AudioError(f"{name}: not a waveform ({first_line(error)})") from None
    if np.iscomplexobj(waveform):
        raise AudioError(f"{name}: not a waveform of real numbers (complex values)")
    if pcm:
        info = np.iinfo(waveform.dtype)  # PCM integers -> [-1, 1)
        half = (int(info.max) - int(info.min) + 1) // 2  # 32768 for int16, 128 for uint8
        offset = half if info.min == 0 else 0  # unsigned PCM (8-bit WAV) is centred on half
        waveform = (waveform.astype(np.float64) - offset) / half
    try:
        samples = np.ascontiguousarray(waveform, dtype=np.float32)
    except (TypeError, ValueError) as error:  # strings, objects
        raise AudioError(f"{name}: not a waveform of numbers ({first_line(error)})") from None
    if samples.ndim == 2:
        samples = samples.mean(axis=0 if samples.shape[0] <= samples.shape[1] else 1, dtype=np.float32)
    if samples.ndim != 1:
        raise AudioError(f"{name}: expected a 1-D or 2-D waveform, got shape {tuple(samples.shape)}")
    if samples.size == 0:
        raise AudioError(f"{name}: the audio is empty (zero samples)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: the audio contains NaN or infinite samples")
    peak = float(np.abs(samples).max())
    if peak > MAX_AMPLITUDE:
        raise AudioError(
            f"{name}: sample values reach {peak:.4g}; expected audio scaled to [-1, 1] "
            "(divide 16-bit PCM values by 32768, or pass the integer array itself)"
        )
    return samples


def read_input(source: Any, sample_rate: int, name: str | None = None) -> tuple[np.ndarray, int, str]:
    """An input as every runtime takes it (a path, a waveform already at ``sample_rate``, or a
    ``(waveform, rate)`` pair): its mono samples checked by ``checked_mono``, their rate (resampling is
    the caller's), and the name errors give it (``name``, else the path or ``<array>``)."""
    if isinstance(source, (str, os.PathLike)):
        name = name or str(source)
        data, rate = read_audio(source)
    elif isinstance(source, tuple) and len(source) == 2:
        data, rate = source
    else:
        data, rate = source, sample_rate
    name = name or "<array>"
    if (
        isinstance(rate, bool)
        or not isinstance(rate, (int, float, np.number))
        or not (rate > 0 and float(rate).is_integer())
    ):
        raise AudioError(f"{name}: sample rate {rate!r}: expected a positive whole number of samples per second")
    return checked_mono(data, name), int(rate), name


def check_window(samples: int, sample_rate: int, window_ms: float, name: str) -> None:
    """A waveform of ``samples`` must hold one analysis window of ``window_ms`` for the front-end."""
    window = to_samples(sample_rate, window_ms)
    if samples < window:
        raise AudioError(
            f"{name}: the audio is too short ({samples} samples at {sample_rate} Hz): "
            f"at least one {window_ms:g} ms analysis window ({window} samples) is needed"
        )
