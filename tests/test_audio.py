import dataclasses
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from conftest import write_wav

from recognizer.audio import (
    AudioError,
    AudioFrontend,
    load_audio,
    log_mel,
    perturb,
    spec_augment,
    speed_perturb,
)

FIXTURES = Path(__file__).parent / "fixtures"


def test_stereo_is_mixed_and_resampled(tmp_path):
    t = np.arange(8000) / 8000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1) * 0.5
    path = tmp_path / "stereo.flac"
    soundfile.write(path, stereo, 8000)
    audio = load_audio(path, 16000)
    assert audio.ndim == 1 and abs(audio.numel() - 16000) <= 1
    assert 0.2 < audio.abs().max() < 0.3  # the silent channel halves the amplitude


def test_log_mel_shape():
    features = log_mel(torch.zeros(16000))
    assert features.shape == (101, 80)  # 10 ms hop, centred frames
    assert torch.isfinite(features).all()  # digital silence stays finite


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: write_wav(p, np.zeros(0)), "empty"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00garbage" * 10), "cannot read audio"),
        (lambda p: p.write_bytes(b""), "cannot read audio"),
    ],
    ids=["zero-samples", "corrupt", "zero-bytes"],
)
def test_bad_audio_names_the_file(tmp_path, make, message):
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(AudioError, match=f"{path}.*{message}"):
        AudioFrontend().load(path)


def test_non_finite_array_is_rejected():
    with pytest.raises(AudioError, match="NaN or infinite"):
        AudioFrontend().load(np.array([0.0, np.nan, 0.1], dtype=np.float32))


def test_spec_augment_masks_with_mean_and_keeps_shape():
    features = torch.randn(200, 80)
    rng = np.random.default_rng(0)
    masked = spec_augment(features, rng, freq_masks=2, freq_width=20, time_masks=2, time_width=0.1)
    assert masked.shape == features.shape
    changed = masked != features
    assert changed.any()
    assert torch.allclose(masked[changed], features.mean().expand(int(changed.sum())))


def test_spec_augment_draws_as_it_always_did():
    """The time masks moved to recognizer.masking (shared with ink); the same generator state still masks
    the same cells, so augmented audio training is unchanged. The reference is the loop as it was."""

    def before(features, rng, freq_masks, freq_width, time_masks, time_width):
        features = features.clone()
        frames, bins = features.shape
        fill = features.mean()
        for _ in range(freq_masks):
            width = int(rng.integers(0, min(freq_width, bins) + 1))
            start = int(rng.integers(0, bins - width + 1))
            features[:, start : start + width] = fill
        for _ in range(time_masks):
            width = int(rng.integers(0, int(time_width * frames) + 1))
            start = int(rng.integers(0, frames - width + 1))
            features[start : start + width, :] = fill
        return features

    features = torch.randn(300, 80)
    for seed in range(5):
        settings = (2, 27, 3, 0.1)
        expected = before(features, np.random.default_rng(seed), *settings)
        assert torch.equal(spec_augment(features, np.random.default_rng(seed), *settings), expected)


def test_frontend_config_round_trip():
    from recognizer.frontend import from_config

    frontend = AudioFrontend(n_mels=40, hop_ms=20)
    rebuilt = from_config(frontend.config())
    assert isinstance(rebuilt, AudioFrontend) and rebuilt.config() == frontend.config()
    assert rebuilt.estimate_frames({"duration": 1.0}) == 51
    assert rebuilt == frontend and hash(rebuilt) == hash(frontend)
    # The keys checkpoints have always held, then later ones, whose defaults apply to older checkpoints
    # (test_checkpoint_without_perturbation_settings_loads_with_them_off).
    assert list(frontend.config()) == ["modality", "class_path", "sample_rate", "n_mels", "window_ms", "hop_ms"] + [
        "freq_masks",
        "freq_width",
        "time_masks",
        "time_width",
        "speed_factors",
        "volume_range",
        "utterance_norm",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frontend.n_mels = 80  # type: ignore[misc]


def test_frontend_and_augmentation_share_their_defaults():
    defaults = {
        **inspect.signature(spec_augment).parameters,
        **inspect.signature(perturb).parameters,
    }
    frontend = AudioFrontend()
    for name in AudioFrontend.training_only:
        assert getattr(frontend, name) == defaults[name].default, name
    assert frontend.speed_factors == () and frontend.volume_range is None  # perturbation is off by default


def test_audio_shorter_than_one_window_is_a_clear_error(tmp_path):
    path = write_wav(tmp_path / "click.wav", np.full(100, 0.1))  # 6 ms
    with pytest.raises(AudioError, match=r"click\.wav: the audio is too short \(100 samples at 16000 Hz\)"):
        AudioFrontend().load(path)


def test_samples_far_outside_the_unit_range_are_refused_and_pcm_integers_scaled():
    frontend = AudioFrontend()
    tone = np.sin(np.linspace(0, 800 * np.pi, 16000)).astype(np.float32) * 0.5
    with pytest.raises(AudioError, match=r"<array>: sample values reach 1e\+20"):
        frontend.load(tone * 2e20)
    with pytest.raises(AudioError, match="divide 16-bit PCM values by 32768"):
        frontend.load(tone * 32767)
    pcm = (tone * 32767).astype(np.int16)  # integer PCM is scaled, not refused
    torch.testing.assert_close(frontend.load(pcm), torch.from_numpy(tone), atol=1e-4, rtol=0)
    assert torch.isfinite(frontend.features(frontend.load(pcm))).all()


def test_manifest_duration_far_from_the_file_is_an_error(tmp_path):
    path = write_wav(tmp_path / "a.wav", np.zeros(16000))
    frontend = AudioFrontend()
    assert frontend.load_entry({"audio_filepath": str(path), "duration": 1.2, "source": "m.jsonl:1"}).numel() == 16000
    with pytest.raises(AudioError, match=r"m\.jsonl:4: duration 12\.0 s, but .*a\.wav is 1\.00 s long"):
        frontend.load_entry({"audio_filepath": str(path), "duration": 12.0, "source": "m.jsonl:4"})


def tone(seconds: float = 1.0, hz: float = 1000.0, rate: int = 16000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    return 0.5 * torch.sin(2 * math.pi * hz * t)


def peak_hz(waveform: torch.Tensor, rate: int = 16000) -> float:
    spectrum = torch.fft.rfft(waveform).abs()
    return float(spectrum.argmax()) * rate / waveform.numel()


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1, 0.95])
def test_speed_perturbation_changes_length_and_pitch_by_the_factor(factor):
    wave = tone(2.0)
    faster = speed_perturb(wave, factor)
    assert abs(faster.numel() - wave.numel() / factor) <= 1  # duration / factor, like sox speed
    assert peak_hz(faster) == pytest.approx(1000 * factor, abs=2)  # pitch x factor
    # Through the front-end: the feature frames change by 1 / factor, and the batching estimate
    # stays an upper bound.
    frontend = AudioFrontend(speed_factors=(factor,), freq_masks=0, time_masks=0)
    frames = frontend.features(wave, np.random.default_rng(0)).shape[0]
    assert abs(frames - 201 / factor) <= 2
    estimate = frontend.estimate_frames({"duration": 2.0})
    assert frames <= estimate and (factor > 1 or estimate <= frames + 2)


def test_estimate_frames_allows_for_the_largest_slowdown():
    assert AudioFrontend().estimate_frames({"duration": 3.0}) == 301
    assert AudioFrontend(speed_factors=(1.0, 1.1)).estimate_frames({"duration": 3.0}) == 301  # only faster
    slowest = AudioFrontend(speed_factors=(1.1, 0.8, 0.9)).estimate_frames({"duration": 3.0})
    assert 3.0 / 0.8 * 100 < slowest <= 3.0 / 0.8 * 100 + 2


def test_perturbation_is_off_without_rng_and_reproducible_with_it():
    wave = tone(1.0, hz=440)
    plain = AudioFrontend()
    perturbed = AudioFrontend(speed_factors=(0.9, 1.0, 1.1), volume_range=(-6.0, 6.0))
    # Validation, test and inference (no rng): exactly the unperturbed features.
    torch.testing.assert_close(perturbed.features(wave), plain.features(wave), rtol=0, atol=0)
    # Training: the same (seed, epoch, item) gives the same draw; other epochs draw other speeds.
    first = perturbed.features(wave, np.random.default_rng([0, 1, 2]))
    torch.testing.assert_close(perturbed.features(wave, np.random.default_rng([0, 1, 2])), first, rtol=0, atol=0)
    lengths = {perturbed.features(wave, np.random.default_rng([0, epoch, 2])).shape[0] for epoch in range(20)}
    assert lengths == {91, 101, 112}  # 1 s at 1.1, 1.0 and 0.9


def test_perturbation_off_keeps_the_augmentation_draws():
    """With perturbation off the rng is not touched before SpecAugment: training runs are unchanged."""
    wave = tone(1.0, hz=440)
    features = AudioFrontend().features(wave, np.random.default_rng(7))
    expected = spec_augment(log_mel(wave), np.random.default_rng(7))
    torch.testing.assert_close(features, expected, rtol=0, atol=0)


def test_volume_perturbation_scales_by_the_gain_in_db():
    wave = tone(0.5)
    louder = perturb(wave, np.random.default_rng(0), volume_range=(6.0, 6.0))
    torch.testing.assert_close(louder, wave * 10 ** (6 / 20))
    gains = [float(perturb(wave, np.random.default_rng(i), volume_range=(-6.0, 6.0))[4] / wave[4]) for i in range(50)]
    assert all(10 ** (-6 / 20) - 1e-6 <= g <= 10 ** (6 / 20) + 1e-6 for g in gains) and max(gains) > 1 > min(gains)


def test_perturbation_settings_round_trip_and_stay_hashable():
    from recognizer.frontend import from_config

    frontend = AudioFrontend(speed_factors=[0.9, 1.0, 1.1], volume_range=[-6, 6])  # lists, as from YAML
    assert frontend.speed_factors == (0.9, 1.0, 1.1) and frontend.volume_range == (-6.0, 6.0)
    config = frontend.config()
    assert config["speed_factors"] == [0.9, 1.0, 1.1] and config["volume_range"] == [-6.0, 6.0]
    rebuilt = from_config(config)
    assert rebuilt == frontend and hash(rebuilt) == hash(frontend)
    assert set(AudioFrontend.training_only) >= {"speed_factors", "volume_range"}  # a resume may change them


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"speed_factors": (0.9, 0.0)}, r"speed_factors must be positive \(at least 0\.01\), got \[0\.9, 0\.0\]"),
        ({"speed_factors": (-1.1,)}, "speed_factors must be positive"),
        ({"speed_factors": (float("nan"),)}, "speed_factors must be a list of finite numbers, got"),
        ({"speed_factors": (1.0, float("inf"))}, "speed_factors must be a list of finite numbers"),
        ({"speed_factors": "fast"}, "speed_factors must be a list of finite numbers, got 'fast'"),
        ({"speed_factors": 1.1}, "speed_factors must be a list of finite numbers, got 1.1"),
        ({"volume_range": (6.0, -6.0)}, r"volume_range must be \[low, high\] in dB with low <= high"),
        ({"volume_range": (6.0,)}, "volume_range must be 2 finite numbers, got"),
        ({"volume_range": (float("nan"), 1.0)}, "volume_range must be 2 finite numbers"),
    ],
)
def test_bad_perturbation_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message) as error:
        AudioFrontend(**settings)
    assert "\n" not in str(error.value)


def test_checkpoint_without_perturbation_settings_loads_with_them_off():
    from recognizer import transcribe
    from recognizer.checkpoint import read_checkpoint

    assert "speed_factors" not in read_checkpoint(FIXTURES / "speech-v0.ckpt")["hyper_parameters"]["frontend"]
    frontend = transcribe.load(FIXTURES / "speech-v0.ckpt", device="cpu").model.frontend
    assert isinstance(frontend, AudioFrontend)
    assert frontend.speed_factors == () and frontend.volume_range is None


def test_utterance_normalization_removes_a_fixed_channel_gain():
    """With "mean" a gain (a constant offset in log-mel) leaves the features unchanged; "meanvar" also
    scales each bin to unit variance; digital silence stays finite; a bad value is a one-line error."""
    from recognizer.frontend import from_config

    wave = tone(1.0, hz=440) + 0.1 * torch.from_numpy(np.random.default_rng(0).standard_normal(16000)).float()
    mean = AudioFrontend(utterance_norm="mean")
    torch.testing.assert_close(mean.features(wave * 4.0), mean.features(wave), atol=1e-3, rtol=0)
    assert not torch.allclose(AudioFrontend().features(wave * 4.0), AudioFrontend().features(wave), atol=1e-3)
    assert mean.features(wave).mean(dim=0).abs().max() < 1e-4
    scaled = AudioFrontend(utterance_norm="meanvar").features(wave)
    torch.testing.assert_close(scaled.std(dim=0, unbiased=False), torch.ones(scaled.shape[1]), atol=1e-3, rtol=0)
    silence = AudioFrontend(utterance_norm="meanvar").features(torch.zeros(8000))
    assert torch.isfinite(silence).all() and silence.abs().max() < 0.01
    assert from_config(mean.config()) == mean  # saved in the checkpoint: it changes what the model sees
    assert "utterance_norm" not in AudioFrontend.training_only
    with pytest.raises(ValueError, match="utterance_norm must be one of None, mean, meanvar, got 'cmvn'"):
        AudioFrontend(utterance_norm="cmvn")


def test_long_audio_gets_the_same_log_mel_in_blocks(monkeypatch):
    """An hour's spectrogram is never held at once: a long waveform is read in blocks of frames."""
    from recognizer import audio

    waveform = torch.randn(16000 * 7 + 123, generator=torch.Generator().manual_seed(0)) * 0.1
    whole = audio.log_mel(waveform)
    monkeypatch.setattr(audio, "MEL_BLOCK_FRAMES", 150)
    blocks = audio.log_mel(waveform)
    assert blocks.shape == whole.shape == (16000 * 7 // 160 + 1, 80)
    torch.testing.assert_close(blocks, whole, rtol=0, atol=1e-5)
