"""The ink front-end and the handwriting path through the shared core."""

import dataclasses
import inspect
import json
import pickle
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import BIN, REPO, logged, run_cli, tiny_args

from recognizer.frontend import from_config
from recognizer.ink import Ink
from recognizer.ink import functional as F
from recognizer.ink.formats import write_json_ink
from recognizer.ink.frontend import InkFrontend
from recognizer.manifest import read_manifest

HANDWRITING_DEMO = str(REPO / "configs" / "handwriting" / "demo.yaml")


def _ink(shift=(0.0, 0.0), scale=1.0) -> Ink:
    t = np.linspace(0, 1, 60)
    wave = np.stack([t * 40, 5 * np.sin(t * 12), t], axis=1)
    bar = np.array([[10.0, -8, 1.2], [30.0, -8, 1.4]])
    strokes = [np.column_stack([(s[:, :2] * scale) + shift, s[:, 2]]) for s in (wave, bar)]
    return Ink(strokes, text="ab")


def test_features_ignore_position_and_size():
    frontend = InkFrontend(features=["dx", "dy", "dt", "pen_up", "curvature"])
    reference = frontend.features(frontend.load(_ink()))
    assert reference.shape[1] == frontend.feature_dim == 5
    for ink in (_ink(shift=(500.0, -70.0)), _ink(scale=13.0), _ink(shift=(3.0, 3.0), scale=0.05)):
        torch.testing.assert_close(frontend.features(frontend.load(ink)), reference, atol=1e-4, rtol=1e-4)


def test_augmentation_changes_features_but_not_their_shape_kind():
    frontend = InkFrontend()
    ink = frontend.load(_ink())
    a = frontend.features(ink, rng=np.random.default_rng(0))
    b = frontend.features(ink, rng=np.random.default_rng(1))
    assert a.shape[1] == b.shape[1] == 4 and torch.isfinite(a).all()
    assert not torch.equal(a, b)
    assert InkFrontend(augment=False).features(ink, rng=np.random.default_rng(0)).shape == frontend.features(ink).shape


def test_settings_round_trip_and_reject_unknown_features():
    frontend = InkFrontend(features=["dx", "dy", "pen_up"], step=0.3, slant=False)
    rebuilt = from_config(frontend.config())
    assert isinstance(rebuilt, InkFrontend) and rebuilt.config() == frontend.config()
    with pytest.raises(ValueError, match="unknown points ink features"):
        InkFrontend(features=["dx", "x"])
    # Lists from YAML or a checkpoint become tuples: the settings are frozen and hashable.
    assert rebuilt == frontend and hash(rebuilt) == hash(frontend) and rebuilt.feature_names == ("dx", "dy", "pen_up")
    assert list(frontend.config()) == ["modality", "class_path", "features", "step", "slant", "baseline", "augment"] + [
        "scale",
        "shear",
        "rotation_deg",
        "jitter",
        "time_stretch",
        "representation",
        "max_error",
        "fit_version",
        "time_masks",
        "time_width",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        frontend.step = 0.2  # type: ignore[misc]


def test_frontend_and_functions_share_their_defaults():
    augment = inspect.signature(F.augment).parameters
    frontend = InkFrontend()
    for name in ("scale", "shear", "rotation_deg", "jitter", "time_stretch"):
        assert getattr(frontend, name) == augment[name].default, name
    assert frontend.step == inspect.signature(F.resample).parameters["step"].default
    assert frontend.feature_names == F.DEFAULT_FEATURES


def test_inkml_line_ids_select_a_sample(tmp_path):
    path = tmp_path / "two.inkml"
    path.write_text(
        '<ink xmlns="http://www.w3.org/2003/InkML">'
        '<trace xml:id="t1">0 0, 10 0, 20 5</trace><trace xml:id="t2">0 10, 15 12, 30 10</trace>'
        '<traceGroup xml:id="g1"><annotation type="truth">hi</annotation><traceView traceDataRef="#t1"/></traceGroup>'
        '<traceGroup xml:id="g2"><annotation type="truth">yo</annotation><traceView traceDataRef="#t2"/></traceGroup>'
        "</ink>"
    )
    frontend = InkFrontend()
    first = frontend.load_entry({"ink_filepath": str(path), "line_id": "g1"})
    second = frontend.load_entry({"ink_filepath": str(path), "line_id": "g2"})
    assert (first.text, second.text) == ("hi", "yo")


def test_an_ink_load_entry_kept_is_not_normalized_again(tmp_path):
    """recognizer-tune reads manifest entries with load_entry and hands the inks to log_probs, which
    loads each input: the ink must reach the model as transcription reads the file, normalized once."""
    rng = np.random.default_rng(0)
    ink = Ink(
        [
            np.c_[np.cumsum(rng.normal(3, 1, (30, 2)), axis=0) * [1, 0.2] + [0, 40 * k], np.arange(30.0)]
            for k in range(2)
        ]
    )
    path = write_json_ink(tmp_path / "line.json", ink)
    frontend = InkFrontend()
    kept = frontend.load_entry({"ink_filepath": str(path)})
    assert frontend.load(kept) is kept
    read = frontend.load(str(path))
    assert all(np.array_equal(a, b) for a, b in zip(read.strokes, kept.strokes))
    again = F.normalize(kept, slant=frontend.slant, baseline=frontend.baseline)  # what load did before
    assert not all(np.allclose(a, b) for a, b in zip(again.strokes, kept.strokes))
    copy = dataclasses.replace(kept)  # an ink it did not keep is normalized as any other
    assert frontend.load(copy) is not copy
    restored = pickle.loads(pickle.dumps(frontend))  # DataLoader workers: the kept inks are known there too
    (inside,) = restored._normalized.values()
    assert restored.load(inside) is inside


@pytest.mark.slow
def test_tiny_handwriting_fit_then_checkpoint_alone_transcribes_ink_files(tiny_ink, tmp_path):
    cli = run_cli(["fit", *tiny_args(tiny_ink, tmp_path / "fit", "--trainer.max_epochs", "2", config=HANDWRITING_DEMO)])
    losses = logged(cli, "train_loss")
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    lonely = tmp_path / "ink.ckpt"
    shutil.copy(best, lonely)

    files = [e["ink_filepath"] for e in read_manifest(tiny_ink["test"], path_key="ink_filepath")][:4]
    output = tmp_path / "out.jsonl"
    run = subprocess.run(
        [BIN / "recognizer-transcribe", "--checkpoint", lonely, *files, "--output", output],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    rows = sorted(rows, key=lambda row: files.index(row["source"]))  # written as batches finish
    assert [row["source"] for row in rows] == files

    import recognizer

    model = recognizer.load(lonely, device="cpu")
    assert model.modality == "ink"
    # an Ink object gives the same text as its file; a copy in another supported format does too
    from recognizer.ink.formats import read_json_ink

    ink = read_json_ink(files[0])
    assert model.transcribe([ink])[0].text == rows[0]["text"]
    copy = write_json_ink(tmp_path / "copy.json", ink)
    assert model.transcribe([copy])[0].text == rows[0]["text"]

    # word timestamps of ink are indices of the ink's points as read (not of the resampled ones)
    [aligned] = model.transcribe([files[0]], timestamps=True)
    points = read_json_ink(files[0]).num_points
    assert aligned.unit == "points"
    assert all(0 <= w["start"] <= w["end"] <= points for w in aligned.words)
    assert [w["start"] for w in aligned.words] == sorted(w["start"] for w in aligned.words)

    # A note of two lines (two files' inks, one below the other) is read line by line: the texts of the
    # lines alone, joined by a newline; timestamps count the note's points
    first, second = read_json_ink(files[0]), read_json_ink(files[1])
    drop = 3 * np.ptp(first.points()[:, 1])
    note = Ink([*first.strokes, *(s + np.array([0.0, drop, 0.0]) for s in second.strokes)])
    alone = model.transcribe([first, second], timestamps=True)
    [both] = model.transcribe([note], timestamps=True)
    assert both.text == alone[0].text + "\n" + alone[1].text
    assert [line["text"] for line in both.lines] == [alone[0].text, alone[1].text]
    assert len(both.words) == len(alone[0].words) + len(alone[1].words)
    assert all(w["start"] >= first.num_points for w in both.words[len(alone[0].words) :])
    [whole] = model.transcribe([note], split_lines=False)
    assert whole.lines is None and "\n" not in whole.text
    with pytest.raises(ValueError, match="need each input's frame boundaries"):
        model.decode_log_probs(model.log_probs([note]), timestamps=True)  # log_probs: inputs whole, no boundaries

    # a multi-sample InkML page: every sample, or one chosen with page.inkml#<id>
    from recognizer.ink.formats import read_inkml

    traces, groups = [], []
    for number, file in enumerate(files[:2]):
        strokes = read_json_ink(file).strokes
        ids = []
        for s, stroke in enumerate(strokes):
            ids.append(f"s{number}-{s}")
            traces.append(
                f'<trace xml:id="{ids[-1]}">' + ", ".join(f"{x:.3f} {y:.3f}" for x, y, _ in stroke) + "</trace>"
            )
        groups.append(
            f'<traceGroup xml:id="line{number}"><annotation type="truth">?</annotation>'
            + "".join(f'<traceView traceDataRef="#{i}"/>' for i in ids)
            + "</traceGroup>"
        )
    page = tmp_path / "page.inkml"
    page.write_text('<ink xmlns="http://www.w3.org/2003/InkML">' + "".join(traces + groups) + "</ink>")
    assert len(read_inkml(page)) == 2
    run = subprocess.run(
        [BIN / "recognizer-transcribe", "--checkpoint", lonely, page, f"{page}#line1"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    assert sorted(source for source, _ in lines) == [f"{page}#line0", f"{page}#line1", f"{page}#line1"]
    assert len({text for source, text in lines if source.endswith("#line1")}) == 1

    # the checkpoint says which modality it is: audio to an ink model is a clear error
    (tmp_path / "speech.wav").write_bytes(b"RIFF")
    run = subprocess.run(
        [BIN / "recognizer-transcribe", "--checkpoint", lonely, tmp_path / "speech.wav"], capture_output=True, text=True
    )
    assert run.returncode == 1 and "ink model" in run.stderr and "speech.wav" in run.stderr


def test_bezier_representation_fits_each_training_ink_once_and_augments_its_curves(tmp_path):
    from recognizer.ink.bezier import CURVE_FEATURES, DEFAULT_CURVE_FEATURES

    frontend = InkFrontend(representation="bezier")
    assert frontend.feature_names == DEFAULT_CURVE_FEATURES and frontend.feature_dim == 10
    from recognizer.corpora.synthetic_ink import synthesize_line

    path = write_json_ink(tmp_path / "line.json", synthesize_line("a quick brown fox", np.random.default_rng(0)))
    entry = {"ink_filepath": str(path), "text": "a quick brown fox"}
    ink = frontend.load_entry(entry)
    plain = frontend.features(ink)
    points = InkFrontend(features=["dx", "dy", "pen_up"], step=0.25).features(ink)
    assert plain.shape[1] == 10 and torch.isfinite(plain).all()
    assert len(plain) * 2 < len(points)  # several times shorter than resampling at a quarter line height
    assert frontend.estimate_frames(entry) == len(plain)
    assert frontend.curves(ink) is frontend.curves(ink)  # kept: training fits it once
    # Also in a copy (a DataLoader worker started by spawn gets the front-end pickled).
    import pickle

    copy = pickle.loads(pickle.dumps(frontend))
    [copied_ink] = copy._normalized.values()
    assert copy.curves(copied_ink) is copy.curves(copied_ink) and copy == frontend
    # Augmentation transforms the curves: the same draw gives the same features, other draws others;
    # the sequence length and the pen-up flags never change.
    first = frontend.features(ink, np.random.default_rng(3))
    torch.testing.assert_close(frontend.features(ink, np.random.default_rng(3)), first, rtol=0, atol=0)
    other = frontend.features(ink, np.random.default_rng(4))
    assert first.shape == other.shape == plain.shape and not torch.equal(first, other)
    assert InkFrontend(representation="bezier", features=CURVE_FEATURES).features(ink).shape == (len(plain), 11)
    assert torch.isfinite(first).all()
    rebuilt = from_config(frontend.config())
    assert rebuilt == frontend and rebuilt.config()["representation"] == "bezier"
    with pytest.raises(ValueError, match="unknown bezier ink features \\['cos'\\]"):
        InkFrontend(representation="bezier", features=["dx", "cos"])
    with pytest.raises(ValueError, match="unknown ink representation 'splines'"):
        InkFrontend(representation="splines")
    with pytest.raises(ValueError, match="max_error must be a positive number"):
        InkFrontend(representation="bezier", max_error=0)
    # A model trained with another fit (its checkpoint's settings) is refused, not run on other curves.
    with pytest.raises(ValueError, match="Bézier curves come from fit version 1, this recognizer fits version 2"):
        from_config({**frontend.config(), "fit_version": 1})
    assert from_config({**InkFrontend().config(), "fit_version": 1}).representation == "points"  # irrelevant there


@pytest.mark.parametrize("representation", ["points", "bezier"])
def test_frame_boundaries_map_frames_to_the_points_as_read(representation):
    from recognizer.corpora.synthetic_ink import synthesize_line

    frontend = InkFrontend(representation=representation)
    ink = frontend.load(synthesize_line("map me back", np.random.default_rng(1)))
    frames = frontend.features(ink).shape[0]
    bounds = frontend.frame_boundaries(ink)
    assert bounds.shape == (frames + 1,) and bounds[0] == 0 and bounds[-1] == ink.num_points
    assert (np.diff(bounds) >= 0).all()  # in writing order
    # Each stroke's first frame starts at the stroke's first point, and a stroke's last point belongs to
    # a frame that draws it (a word ending at a pen lift keeps its last point).
    starts = np.flatnonzero(ink.stroke_starts())
    assert set(starts) <= set(bounds.tolist())
    features = frontend.features(ink)
    pen_up = features[:, frontend.feature_names.index("pen_up")].numpy() > 0
    drawing = np.flatnonzero(~pen_up if representation == "bezier" else np.ones(frames, bool))
    covered = np.zeros(ink.num_points, bool)
    for frame in drawing:
        covered[bounds[frame] : max(bounds[frame + 1], bounds[frame] + 1)] = True
    assert covered[starts[1:] - 1].all() and covered[-1]
