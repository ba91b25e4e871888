"""Time masks, shared by the audio and ink front-ends."""

import numpy as np
import pytest
import torch

from recognizer.audio import AudioFrontend
from recognizer.ink import Ink
from recognizer.ink.frontend import InkFrontend
from recognizer.masking import mask_time


def _masked_rows(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    return (before != after).any(dim=1)


def test_masks_take_the_fill_and_stay_within_the_widest_span():
    features = torch.randn(100, 3)
    fill = torch.tensor([7.0, 8.0, 9.0])
    widths = []
    for seed in range(200):
        masked = mask_time(features.clone(), np.random.default_rng(seed), masks=1, max_fraction=0.1, fill=fill)
        rows = _masked_rows(features, masked)
        assert (masked[rows] == fill).all() and torch.equal(masked[~rows], features[~rows])
        where = torch.nonzero(rows).flatten()
        if len(where):  # one contiguous span
            assert int(where[-1] - where[0]) + 1 == len(where)
        widths.append(len(where))
    # Widths 0 to 10 (10 % of 100 frames) are drawn uniformly: over 200 draws each one occurs.
    assert sorted(set(widths)) == list(range(11))


def test_masks_are_deterministic_and_drawn_anew_per_state():
    features = torch.randn(300, 4)
    a = mask_time(features.clone(), np.random.default_rng(3), 4, 0.05, 0.0)
    b = mask_time(features.clone(), np.random.default_rng(3), 4, 0.05, 0.0)
    c = mask_time(features.clone(), np.random.default_rng(4), 4, 0.05, 0.0)
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("frames", [0, 1, 5])
def test_short_and_empty_sequences_are_never_wiped_out(frames):
    features = torch.randn(frames, 2)
    rng = np.random.default_rng(0)
    masked = mask_time(features.clone(), rng, 10, 0.1, 0.0)
    assert torch.equal(masked, features)  # 10 % of at most 5 frames rounds down to no frame
    if frames:  # the masks were drawn (with no frame, every draw has one outcome and takes nothing)
        assert rng.bit_generator.state != np.random.default_rng(0).bit_generator.state


def test_a_mask_as_wide_as_the_sequence_can_cover_it():
    features = torch.ones(1, 2)
    covered = [bool((mask_time(features.clone(), np.random.default_rng(s), 1, 1.0, 0.0) == 0).all()) for s in range(20)]
    assert any(covered) and not all(covered)  # width 0 or 1, drawn uniformly


@pytest.mark.parametrize(
    ("masks", "width", "message"),
    [
        (-1, 0.1, "time_masks"),
        (1.5, 0.1, "time_masks"),
        (True, 0.1, "time_masks"),
        (2, 1.5, "time_width"),
        (2, float("nan"), "time_width"),
    ],
)
def test_bad_settings_name_the_setting_when_the_front_end_is_built(masks, width, message):
    for build in (AudioFrontend, InkFrontend):
        with pytest.raises(ValueError, match=message):
            build(time_masks=masks, time_width=width)


def _line() -> Ink:
    t = np.linspace(0, 1, 400)
    strokes = [np.column_stack([t * 300 + 40 * k, 20 * np.sin(t * 60 + k), t + k]) for k in range(3)]
    return Ink(strokes, text="abc")


def test_ink_masks_take_each_feature_line_mean_in_training_only():
    plain = InkFrontend(features=["dx", "dy", "pen_up", "y"])
    masking = InkFrontend(features=["dx", "dy", "pen_up", "y"], time_masks=3, time_width=0.2)
    ink = masking.load(_line())
    reference = plain.features(ink, rng=np.random.default_rng(5))
    masked = masking.features(ink, rng=np.random.default_rng(5))
    assert masked.shape == reference.shape
    # The masks draw after the ink augmentation, from the same generator: the unmasked frames are as before.
    rows = _masked_rows(reference, masked)
    assert rows.any() and torch.equal(masked[~rows], reference[~rows])
    assert torch.allclose(masked[rows], reference.mean(dim=0).expand(int(rows.sum()), -1))
    # Transcription (no generator) and augment=False never mask.
    assert torch.equal(masking.features(ink), plain.features(ink))
    off = InkFrontend(features=["dx", "dy", "pen_up", "y"], time_masks=3, time_width=0.2, augment=False)
    assert torch.equal(off.features(ink, rng=np.random.default_rng(5)), plain.features(ink))


def test_ink_masks_apply_to_bezier_curves_too():
    frontend = InkFrontend(representation="bezier", time_masks=2, time_width=0.5)
    ink = frontend.load(_line())
    features = frontend.features(ink, rng=np.random.default_rng(1))
    assert torch.isfinite(features).all() and features.shape[1] == frontend.feature_dim
    unmasked = InkFrontend(representation="bezier").features(ink, rng=np.random.default_rng(1))
    assert features.shape == unmasked.shape and not torch.equal(features, unmasked)
