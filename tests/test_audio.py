import dataclasses
import inspect

import numpy as np
import pytest
import soundfile
import torch
from conftest import write_wav

from recognizer.audio import AudioError, AudioFrontend, load_audio, log_mel, spec_augment


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


def test_frontend_config_round_trip():
    from recognizer.frontend import from_config

    frontend = AudioFrontend(n_mels=40, hop_ms=20)
    rebuilt = from_config(frontend.config())
    assert isinstance(rebuilt, AudioFrontend) and rebuilt.config() == frontend.config()
    assert rebuilt.estimate_frames({"duration": 1.0}) == 51
    assert rebuilt == frontend and hash(rebuilt) == hash(frontend)
    # Exactly the keys checkpoints have always held, so old checkpoints keep loading.
    assert list(frontend.config()) == ["modality", "class_path", "sample_rate", "n_mels", "window_ms", "hop_ms"] + [
        "freq_masks",
        "freq_width",
        "time_masks",
        "time_width",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frontend.n_mels = 80  # type: ignore[misc]


def test_frontend_and_spec_augment_share_their_defaults():
    defaults = inspect.signature(spec_augment).parameters
    frontend = AudioFrontend()
    for name in AudioFrontend.training_only:
        assert getattr(frontend, name) == defaults[name].default, name


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
