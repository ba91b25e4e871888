"""Audio front-end: read any soundfile/librosa format, mono, resample, log-mel, per-utterance
normalization, SpecAugment, speed and volume perturbation.

Pure functions (``load_audio``, ``mono_resampled``, ``log_mel``, ``utterance_normalize``,
``spec_augment``, ``speed_perturb``, ``perturb``) and the
``AudioFrontend`` that holds their settings for the data pipeline and the checkpoint. Every default is
a named constant below, shared by the functions and the front-end.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import soundfile
import torch

from .environment import import_torchaudio
from .frontend import Frontend
from .masking import check_time_masks, mask_time
from .waveform import AUDIO_SUFFIXES, AudioError, check_window, checked_mono, read_audio, read_input, to_samples

torchaudio = import_torchaudio()  # a torch/torchaudio mismatch is one clear error, not a linker message

SAMPLE_RATE = 16000
N_MELS = 80
WINDOW_MS = 25.0
HOP_MS = 10.0
LOG_FLOOR = 1e-6  # keeps log() finite in digital silence
# SpecAugment defaults (training only): mask counts, the widest frequency mask in bins, and the widest
# time mask as a fraction of the utterance
FREQ_MASKS = 2
FREQ_WIDTH = 27
TIME_MASKS = 2
TIME_WIDTH = 0.05
# Waveform perturbation defaults (training only): off. Kaldi and ESPnet recipes use speeds (0.9, 1.0, 1.1).
SPEED_FACTORS: tuple[float, ...] = ()
VOLUME_RANGE: tuple[float, float] | None = None  # gain range in dB
#: per-utterance normalization of the log-mel features, before the model's global one: off, each bin's
#: mean over the utterance removed (cepstral mean normalization: a fixed channel, i.e. microphone and
#: gain, is a constant offset in log-mel), or its mean removed and its variance scaled to 1
UTTERANCE_NORMS = (None, "mean", "meanvar")
UTTERANCE_NORM: str | None = None
#: floor of the per-utterance standard deviation, so constant bins (digital silence) stay finite
UTTERANCE_STD_FLOOR = 1e-3
#: a speed factor is applied as the nearest ratio p/q with q up to this (exact for 0.9, 1.1, 0.95, ...):
#: the resampling kernel grows with p and q, and 1.0001 would otherwise need a kernel of 10^4 x 10^4
SPEED_DENOMINATOR = 100
#: a manifest duration may differ from the file's length by this much (or 10 %) before it is an error
DURATION_TOLERANCE_S = 0.5


def load_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Read an audio file as a mono float32 waveform at ``sample_rate``, shape (samples,)."""
    data, rate = read_audio(path)
    return mono_resampled(data, rate, sample_rate, name=str(path))


def mono_resampled(
    waveform: torch.Tensor | np.ndarray, rate: int, sample_rate: int = SAMPLE_RATE, name: str = "<array>"
) -> torch.Tensor:
    """An in-memory waveform at ``rate`` as mono float32 at ``sample_rate``; ``name`` is used in errors.

    Checks it (not empty, finite, scaled to [-1, 1]), scales PCM integers to [-1, 1), mixes channels to
    mono and resamples. A 2-D input is (channels, samples) if its first dimension is the smaller one.
    """
    return resampled(checked_mono(waveform, name), rate, sample_rate)


def resampled(samples: np.ndarray, rate: int, sample_rate: int) -> torch.Tensor:
    """Checked mono samples (``waveform.checked_mono``) at ``rate`` as a tensor at ``sample_rate``."""
    waveform = torch.from_numpy(samples)
    return waveform if rate == sample_rate else torchaudio.functional.resample(waveform, rate, sample_rate)


#: log_mel reads a longer waveform this many frames at a time (10 minutes at a 10 ms hop): the same
#: features, without an hour's spectrogram in memory at once
MEL_BLOCK_FRAMES = 60_000


def fft_size(win_length: int) -> int:
    """The FFT size of a window: the next power of two."""
    return 1 << (win_length - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _mel_transform(
    sample_rate: int, n_mels: int, win_length: int, hop_length: int, center: bool = True
) -> torch.nn.Module:
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=sample_rate,
        n_fft=fft_size(win_length),
        win_length=win_length,
        hop_length=hop_length,
        n_mels=n_mels,
        power=2.0,
        center=center,
    )


def log_mel(
    waveform: torch.Tensor,
    sample_rate: int = SAMPLE_RATE,
    n_mels: int = N_MELS,
    window_ms: float = WINDOW_MS,
    hop_ms: float = HOP_MS,
) -> torch.Tensor:
    """Log mel filterbank energies of a mono waveform, shape (frames, n_mels): one frame centred on every
    hop, the ends padded by reflection."""
    win_length, hop = to_samples(sample_rate, window_ms), to_samples(sample_rate, hop_ms)
    frames = waveform.numel() // hop + 1
    with torch.no_grad():
        if frames <= MEL_BLOCK_FRAMES:
            mel = _mel_transform(sample_rate, n_mels, win_length, hop)(waveform.float())
        else:  # in blocks of frames, each read from the padded waveform that centring would make
            transform = _mel_transform(sample_rate, n_mels, win_length, hop, center=False)
            n_fft = fft_size(win_length)
            padded = torch.nn.functional.pad(waveform.float()[None, None], (n_fft // 2, n_fft // 2), mode="reflect")[
                0, 0
            ]
            mel = torch.cat(
                [
                    transform(padded[first * hop : (first + count - 1) * hop + n_fft])
                    for first in range(0, frames, MEL_BLOCK_FRAMES)
                    for count in [min(MEL_BLOCK_FRAMES, frames - first)]
                ],
                dim=-1,
            )
    return torch.log(mel + LOG_FLOOR).T.contiguous()


class LogMelStream:
    """``log_mel`` of a waveform that arrives in pieces: ``feed`` gives the frames whose window has
    arrived, ``finish`` the rest (the end reflected, as ``log_mel`` does). The frames are ``log_mel``'s:
    the same windows through the same transform. A frame waits for half an FFT window of audio after
    its centre: 16 ms at 16 kHz with a 25 ms window (512 samples)."""

    def __init__(
        self, sample_rate: int = SAMPLE_RATE, n_mels: int = N_MELS, window_ms: float = WINDOW_MS, hop_ms: float = HOP_MS
    ) -> None:
        win_length, self.hop = to_samples(sample_rate, window_ms), to_samples(sample_rate, hop_ms)
        self.n_fft = fft_size(win_length)
        self.pad = self.n_fft // 2
        # a copy: moving the cached transform to a stream's device would move it for log_mel too
        self.transform = copy.deepcopy(_mel_transform(sample_rate, n_mels, win_length, self.hop, center=False))
        self.sample_rate, self.window_ms, self.n_mels = sample_rate, window_ms, n_mels
        self.samples = 0  # received so far
        self.frames = 0  # given so far
        self.buffer = torch.zeros(0)  # the left-padded signal from the next frame's first sample on
        self.started = False  # whether the start's reflection (pad + 1 samples) could be made

    def feed(self, samples: torch.Tensor) -> torch.Tensor:
        """The next mono float32 samples -> the log-mel frames (frames, n_mels) that are now complete."""
        self.samples += samples.numel()
        self.buffer = torch.cat([self.buffer.to(samples.device), samples.float()])
        if not self.started:
            if self.buffer.numel() <= self.pad:
                return self._none(samples)
            start = self.buffer[1 : self.pad + 1].flip(0)  # log_mel's reflection of the first samples
            self.buffer, self.started = torch.cat([start, self.buffer]), True
        return self._take(
            (self.buffer.numel() - self.n_fft) // self.hop + 1 if self.buffer.numel() >= self.n_fft else 0
        )

    def finish(self, name: str = "<stream>") -> torch.Tensor:
        """The last frames, up to ``log_mel``'s count (one per hop, plus one), the end reflected."""
        if not self.started:
            check_window(self.samples, self.sample_rate, self.window_ms, name)
        end = self.buffer[-self.pad - 1 : -1].flip(0)
        self.buffer = torch.cat([self.buffer, end])
        return self._take(self.samples // self.hop + 1 - self.frames)

    def _take(self, count: int) -> torch.Tensor:
        if count <= 0:
            return self._none(self.buffer)
        with torch.no_grad():
            mel = self.transform.to(self.buffer.device)(self.buffer[: (count - 1) * self.hop + self.n_fft])
        self.buffer = self.buffer[count * self.hop :]
        self.frames += count
        return torch.log(mel + LOG_FLOOR).T.contiguous()

    def _none(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(0, self.n_mels)


def utterance_normalize(features: torch.Tensor, variance: bool = False) -> torch.Tensor:
    """(frames, bins) features with each bin's mean over the utterance removed, and with ``variance``
    its standard deviation scaled to 1 (floored at ``UTTERANCE_STD_FLOOR``)."""
    centred = features - features.mean(dim=0, keepdim=True)
    if not variance:
        return centred
    std = features.std(dim=0, unbiased=False, keepdim=True).clamp_min(UTTERANCE_STD_FLOOR)
    return centred / std


def spec_augment(
    features: torch.Tensor,
    rng: np.random.Generator,
    freq_masks: int = FREQ_MASKS,
    freq_width: int = FREQ_WIDTH,
    time_masks: int = TIME_MASKS,
    time_width: float = TIME_WIDTH,
) -> torch.Tensor:
    """SpecAugment masks on (frames, bins) features; masked cells take the utterance's mean.

    ``time_width`` is the largest time mask as a fraction of the utterance, so short utterances
    are never wiped out. Filling with the mean (rather than 0) keeps masks neutral after the
    model's global normalization.
    """
    features = features.clone()
    bins = features.shape[1]
    fill = features.mean()
    for _ in range(freq_masks):
        width = int(rng.integers(0, min(freq_width, bins) + 1))
        start = int(rng.integers(0, bins - width + 1))
        features[:, start : start + width] = fill
    return mask_time(features, rng, time_masks, time_width, fill)


def speed_ratio(factor: float) -> Fraction:
    """The ratio ``speed_perturb`` resamples by for ``factor`` (see ``SPEED_DENOMINATOR``)."""
    return Fraction(factor).limit_denominator(SPEED_DENOMINATOR)


def speed_perturb(waveform: torch.Tensor, factor: float) -> torch.Tensor:
    """The waveform played ``factor`` times as fast, like sox ``speed``: the duration changes by
    1 / ``factor`` and the pitch by ``factor`` (a factor below 1 slows down and lowers the voice)."""
    ratio = speed_ratio(factor)
    if ratio == 1:
        return waveform
    # Read as if sampled at factor x rate, written at the rate: the same samples, played faster.
    with torch.no_grad():
        return torchaudio.functional.resample(waveform, ratio.numerator, ratio.denominator)


def perturb(
    waveform: torch.Tensor,
    rng: np.random.Generator,
    speed_factors: Sequence[float] = SPEED_FACTORS,
    volume_range: tuple[float, float] | None = VOLUME_RANGE,
) -> torch.Tensor:
    """Speed and volume perturbation of a training waveform: a speed drawn uniformly from
    ``speed_factors`` (none when empty) and a gain in dB drawn uniformly from ``volume_range`` (none
    when None). Draws from ``rng`` only for what is on, so other augmentation keeps its draws."""
    if speed_factors:
        waveform = speed_perturb(waveform, float(speed_factors[int(rng.integers(len(speed_factors)))]))
    if volume_range is not None:
        waveform = waveform * 10 ** (float(rng.uniform(volume_range[0], volume_range[1])) / 20)
    return waveform


def _floats(name: str, value: Any, count: int | None = None) -> tuple[float, ...]:
    """``value`` (a list from YAML or a checkpoint, or a tuple) as a tuple of finite floats; a one-line
    ValueError naming the setting otherwise."""
    try:
        floats = None if isinstance(value, (str, bytes)) else tuple(float(v) for v in value)
    except (TypeError, ValueError):
        floats = None
    if floats is None or count not in (None, len(floats)) or not all(math.isfinite(v) for v in floats):
        expected = "a list of finite numbers" if count is None else f"{count} finite numbers"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return floats


@dataclass(frozen=True)
class AudioFrontend(Frontend):
    """Log-mel features of audio files or arrays, with SpecAugment for training.

    Args:
        sample_rate: the model's rate; inputs are resampled to it.
        n_mels: mel bins per frame.
        window_ms, hop_ms: analysis window and hop.
        freq_masks, freq_width, time_masks, time_width: SpecAugment (training only, see
            ``spec_augment``); set the mask counts to 0 to disable it.
        speed_factors: speed perturbation (training only, see ``speed_perturb``): each utterance is
            played at a factor drawn uniformly from these, anew each epoch, e.g. ``[0.9, 1.0, 1.1]``;
            empty (the default): off.
        volume_range: volume perturbation (training only): a gain in dB drawn uniformly from
            ``[low, high]`` per utterance and epoch, e.g. ``[-6, 6]``; None (the default): off.
        utterance_norm: per-utterance normalization before the model's global one (see
            ``UTTERANCE_NORMS``): None (the default), ``"mean"`` or ``"meanvar"``. Either removes any
            constant gain, so volume perturbation has no effect with it.
    """

    modality = "audio"
    path_key = "audio_filepath"
    suffixes = AUDIO_SUFFIXES
    timestamp_unit = "seconds"
    training_only = ("freq_masks", "freq_width", "time_masks", "time_width", "speed_factors", "volume_range")

    sample_rate: int = SAMPLE_RATE
    n_mels: int = N_MELS
    window_ms: float = WINDOW_MS
    hop_ms: float = HOP_MS
    freq_masks: int = FREQ_MASKS
    freq_width: int = FREQ_WIDTH
    time_masks: int = TIME_MASKS
    time_width: float = TIME_WIDTH
    # Later settings go last: checkpoints without them load with these defaults (off).
    speed_factors: tuple[float, ...] = SPEED_FACTORS
    volume_range: tuple[float, float] | None = VOLUME_RANGE
    utterance_norm: str | None = UTTERANCE_NORM

    def __post_init__(self) -> None:
        if self.utterance_norm not in UTTERANCE_NORMS:
            raise ValueError(
                f"utterance_norm must be one of {', '.join(map(str, UTTERANCE_NORMS))}, got {self.utterance_norm!r}"
            )
        # Tuples, whatever the caller passed (lists from YAML or a checkpoint): the settings stay hashable.
        factors = _floats("speed_factors", self.speed_factors)
        if not all(speed_ratio(factor) > 0 for factor in factors):  # below 0.005 the ratio rounds to 0
            raise ValueError(f"speed_factors must be positive (at least 0.01), got {list(factors)}")
        check_time_masks(self.time_masks, self.time_width)
        object.__setattr__(self, "speed_factors", factors)  # the dataclass is frozen
        if self.volume_range is not None:
            low, high = _floats("volume_range", self.volume_range, count=2)
            if low > high:
                raise ValueError(f"volume_range must be [low, high] in dB with low <= high, got {[low, high]}")
            object.__setattr__(self, "volume_range", (low, high))

    @property
    def feature_dim(self) -> int:
        return self.n_mels

    @property
    def frame_unit(self) -> float:
        return self.hop_ms / 1000

    @property
    def win_length(self) -> int:
        """Samples per analysis window."""
        return to_samples(self.sample_rate, self.window_ms)

    @property
    def hop_length(self) -> int:
        """Samples per hop: one feature frame."""
        return to_samples(self.sample_rate, self.hop_ms)

    def load(self, source: Any, name: str | None = None) -> torch.Tensor:
        """A path, a waveform already at ``sample_rate``, or a ``(waveform, rate)`` pair; ``name``
        replaces the source in error messages."""
        samples, rate, name = read_input(source, self.sample_rate, name)
        waveform = resampled(samples, rate, self.sample_rate)
        check_window(waveform.numel(), self.sample_rate, self.window_ms, name)
        return waveform

    def load_entry(self, entry: dict[str, Any]) -> torch.Tensor:
        """The entry's audio; a manifest ``duration`` far from the file's real length is an error."""
        where = entry.get("source", entry[self.path_key])
        waveform = self.load(entry[self.path_key], name=f"{where}: {entry[self.path_key]}")
        if "duration" in entry:
            actual = waveform.numel() / self.sample_rate
            if abs(actual - float(entry["duration"])) > max(DURATION_TOLERANCE_S, 0.1 * actual):
                raise AudioError(
                    f"{where}: duration {entry['duration']} s, but {entry[self.path_key]} is {actual:.2f} s long; "
                    "fix the manifest (batching and skips rely on it)"
                )
        return waveform

    def feature_stream(self) -> LogMelStream:
        """Features computed as the audio arrives (``LogMelStream``): the same as ``features`` for a
        front-end without per-utterance normalization, which needs the whole utterance."""
        if self.utterance_norm is not None:
            raise ValueError(
                f"a front-end with utterance_norm {self.utterance_norm!r} needs the whole utterance: it cannot stream"
            )
        return LogMelStream(self.sample_rate, self.n_mels, self.window_ms, self.hop_ms)

    def features(self, raw: torch.Tensor, rng: np.random.Generator | None = None) -> torch.Tensor:
        if rng is not None:  # training: perturb the waveform, then mask the spectrogram
            raw = perturb(raw, rng, self.speed_factors, self.volume_range)
        features = log_mel(raw, self.sample_rate, self.n_mels, self.window_ms, self.hop_ms)
        if self.utterance_norm is not None:
            features = utterance_normalize(features, variance=self.utterance_norm == "meanvar")
        if rng is None:
            return features
        return spec_augment(features, rng, self.freq_masks, self.freq_width, self.time_masks, self.time_width)

    def estimate_frames(self, entry: dict[str, Any]) -> int:
        duration = entry.get("duration")
        if duration is None:
            duration = soundfile.info(entry[self.path_key]).duration
        # An upper bound for batching by a length budget: the largest slowdown lengthens the utterance.
        stretch = max([1.0] + [1 / float(speed_ratio(factor)) for factor in self.speed_factors])
        if stretch == 1.0:
            return int(float(duration) * 1000 / self.hop_ms) + 1
        return int(float(duration) * stretch * 1000 / self.hop_ms) + 2  # +1: resampling rounds the length up
