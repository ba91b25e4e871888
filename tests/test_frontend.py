"""Front-ends as components: stored by class path, rebuilt from a checkpoint's settings, safely."""

from dataclasses import dataclass

import pytest
import torch

from recognizer.audio import AudioFrontend
from recognizer.frontend import Frontend, from_config, frontend_class


@dataclass(frozen=True)
class Accelerometer(Frontend):
    """A toy modality in one class: (time, 3) arrays; all it takes to add one."""

    modality = "accelerometer"
    path_key = "npy_filepath"
    suffixes = (".npy",)
    timestamp_unit = "samples"
    frame_unit = 1.0

    gain: float = 1.0

    @property
    def feature_dim(self) -> int:
        return 3

    def load(self, source):
        return torch.as_tensor(source, dtype=torch.float32)

    def features(self, raw, rng=None):
        return raw * self.gain

    def estimate_frames(self, entry):
        return int(entry.get("frames", 1))


def test_a_new_modality_round_trips_through_its_config():
    config = Accelerometer(gain=2.0).config()
    assert config == {"modality": "accelerometer", "class_path": f"{__name__}.Accelerometer", "gain": 2.0}
    assert from_config(config) == Accelerometer(gain=2.0)


def test_a_first_format_config_without_class_path_is_found_by_modality():
    config = {k: v for k, v in AudioFrontend().config().items() if k != "class_path"}
    assert frontend_class(config) is AudioFrontend and from_config(config) == AudioFrontend()


@pytest.mark.parametrize(
    "config, message",
    [
        ({"modality": "smell"}, "class_path"),
        ({"modality": "ink", "class_path": "recognizer.audio.AudioFrontend"}, "not the stated modality"),
        ({"class_path": "os.system"}, "subclass of recognizer.frontend.Frontend"),
        ({"class_path": "webbrowser.open"}, "not imported"),
    ],
)
def test_unusable_front_end_configs_are_one_line_errors(config, message):
    with pytest.raises(ValueError, match=message):
        from_config(config)
