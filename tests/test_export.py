"""Export: the Lightning-free model file, ONNX with the speech front-end inside, int8, and their parity
with the PyTorch model on real AN4 and IAM-OnDB inputs of different lengths in one batch.

The models are small and untrained, with training-set-like normalization and a sharpened output layer
(so the best path is well defined): parity is about the arithmetic, not about accuracy, which
benchmarks/export.py measures on trained models.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import BIN

import recognizer
from recognizer.audio import AudioFrontend
from recognizer.checkpoint import CheckpointError
from recognizer.decoding import greedy_decode
from recognizer.export import LogMel, SpeechGraph, export, export_onnx
from recognizer.ink.frontend import InkFrontend
from recognizer.manifest import read_manifest
from recognizer.model import Model

ALPHABET = " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
SMALL_BLSTM = {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden_size": 48, "num_layers": 2}}
#: onnxruntime against PyTorch, float32 (the issue's bar)
LOG_PROB_TOLERANCE = 1e-4
#: the exported log-mel (DFT as a convolution) against torchaudio's FFT, in log units: float32 rounding
FEATURE_TOLERANCE = 2e-4


def untrained(frontend, inputs, alphabet: str = ALPHABET, encoder=SMALL_BLSTM) -> Model:
    """A small model normalized on ``inputs``' features, output layer sharpened so that paths are clear."""
    torch.manual_seed(0)
    model = Model({"alphabet": alphabet}, frontend.config(), encoder)
    features = torch.cat([frontend.features(raw) for raw in inputs])
    model.encoder.normalizer.set_statistics(features.mean(0), features.std(0))
    with torch.no_grad():
        model.encoder.output.weight.mul_(8)
    return model.eval()


@pytest.fixture(scope="module")
def an4_files(shared_data) -> list[Path]:
    """Five real AN4 utterances of different lengths."""
    files = sorted((shared_data("an4") / "wav" / "an4_clstk").rglob("*.wav"))[:40]
    by_size = sorted(files, key=lambda f: f.stat().st_size)
    return [by_size[i] for i in (0, 10, 20, 30, 39)]


@pytest.fixture(scope="module")
def speech(an4_files, tmp_path_factory) -> dict[str, Path]:
    """The same small speech model as a model file, ONNX and int8 ONNX."""
    frontend = AudioFrontend()
    model = untrained(frontend, [frontend.load(f) for f in an4_files])
    folder = tmp_path_factory.mktemp("speech-export")
    paths = {"pt": model.save(folder / "model.pt")}
    paths["onnx"] = export(paths["pt"], folder / "model.onnx")
    paths["int8"] = export(paths["pt"], folder / "model-int8.onnx", int8=True)
    return paths


@pytest.fixture(scope="module")
def iam_files(shared_data, tmp_path_factory) -> list[Path]:
    """Six real IAM-OnDB line files (the archive's first ones: lines of different lengths)."""
    tarball = shared_data("iam-ondb") / "lineStrokes-all.tar.gz"
    folder = tmp_path_factory.mktemp("iam-lines")
    files = []
    with tarfile.open(tarball, "r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".xml"):
                target = folder / Path(member.name).name
                target.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
                files.append(target)
                if len(files) == 6:
                    break
    return files


def pytorch_log_probs(model: Model, inputs: list) -> list[torch.Tensor]:
    """Each input alone through the PyTorch model."""
    outputs = []
    with torch.no_grad():
        for raw in inputs:
            features = model.frontend.features(raw)
            log_probs, _ = model(features[None], torch.tensor([len(features)]))
            outputs.append(log_probs[0])
    return outputs


def assert_parity(reference: list[torch.Tensor], exported: list[torch.Tensor]) -> None:
    for ours, theirs in zip(reference, exported):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= LOG_PROB_TOLERANCE
        lengths = torch.tensor([len(ours)])
        assert greedy_decode(ours[None], lengths) == greedy_decode(theirs[None], lengths)


# ------------------------------------------------------------------------------------------ model file


def test_model_file_holds_weights_and_settings_only_and_loads_without_lightning(speech, an4_files, tmp_path):
    stored = torch.load(speech["pt"], weights_only=True)
    assert set(stored) == {"format", "version", "hyper_parameters", "state_dict"}
    assert set(stored["hyper_parameters"]) == {"tokenizer", "frontend", "encoder", "decoding"}
    assert all(key.startswith("encoder.") for key in stored["state_dict"])
    script = (
        "import sys, json, recognizer\n"
        f"model = recognizer.load({str(speech['pt'])!r}, device='cpu')\n"
        f"texts = [t.text for t in model.transcribe({[str(f) for f in an4_files]!r}, timestamps=True)]\n"
        "print(json.dumps([texts, sorted(m for m in sys.modules if 'lightning' in m)]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    texts, lightning = json.loads(run.stdout.splitlines()[-1])
    assert lightning == []  # neither pytorch_lightning nor lightning_utilities
    assert texts == [t.text for t in recognizer.load(speech["pt"], device="cpu").transcribe(an4_files)]


def test_training_checkpoint_and_its_model_file_give_the_same_outputs(tiny_speech, tmp_path):
    from test_training import tiny_args

    from recognizer.cli import run_cli

    run_cli(["fit", *tiny_args(tiny_speech, tmp_path, "--trainer.max_epochs", "1")])
    (checkpoint,) = tmp_path.rglob("last.ckpt")
    model_file = export(checkpoint, tmp_path / "model.pt")
    assert model_file.stat().st_size < checkpoint.stat().st_size  # no optimizer state
    files = [e["audio_filepath"] for e in read_manifest(tiny_speech["test"], path_key="audio_filepath")[:4]]
    ours, theirs = recognizer.load(checkpoint, "cpu"), recognizer.load(model_file, "cpu")
    for a, b in zip(ours.log_probs(files), theirs.log_probs(files)):
        assert torch.equal(a, b)


# ------------------------------------------------------------------------------------------------ ONNX


def test_exported_log_mel_matches_the_audio_frontend_in_a_padded_batch(an4_files):
    for norm in (None, "mean", "meanvar"):
        frontend = AudioFrontend(utterance_norm=norm)
        waves = [frontend.load(f) for f in an4_files] + [torch.zeros(800)]  # and digital silence
        padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
        features, frames = LogMel(frontend)(padded, torch.tensor([len(w) for w in waves]))
        for wave, row, count in zip(waves, features, frames):
            reference = frontend.features(wave)
            assert count == len(reference)
            assert (row[:count] - reference).abs().max().item() <= FEATURE_TOLERANCE, norm


def test_onnx_speech_graph_takes_waveforms_and_matches_pytorch(speech, an4_files):
    model = Model.load(speech["pt"])
    exported = recognizer.load(speech["onnx"])
    assert exported.model.takes == "waveform"
    waves = [model.frontend.load(f) for f in an4_files]
    assert len({len(w) for w in waves}) == len(waves)
    assert_parity(pytorch_log_probs(model, waves), exported.log_probs(an4_files))  # one padded batch
    # and straight through onnxruntime, as a user without recognizer would call it
    import onnxruntime

    session = onnxruntime.InferenceSession(str(speech["onnx"]), providers=["CPUExecutionProvider"])
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True).numpy()
    log_probs, lengths = session.run(None, {"waveform": padded, "lengths": np.array([len(w) for w in waves])})
    assert_parity(pytorch_log_probs(model, waves), [torch.from_numpy(lp[:n]) for lp, n in zip(log_probs, lengths)])
    settings = json.loads(session.get_modelmeta().custom_metadata_map["recognizer"])
    assert settings["tokenizer"]["alphabet"] == ALPHABET and settings["frontend"]["sample_rate"] == 16000


def test_onnx_speech_graph_with_spectral_convolutions_matches_pytorch(an4_files, tmp_path):
    frontend = AudioFrontend()
    waves = [frontend.load(f) for f in an4_files]
    encoder = {
        "class_path": "recognizer.encoders.BLSTMEncoder",
        "init_args": {"hidden_size": 32, "num_layers": 2, "spectral_channels": 8, "conv_layers": 1},
    }
    model = untrained(frontend, waves, encoder=encoder)
    exported = recognizer.load(export_onnx(model, tmp_path / "spectral.onnx"))
    assert_parity(pytorch_log_probs(model, waves), exported.log_probs(an4_files))  # one padded batch


def test_onnx_ink_graph_takes_features_and_matches_pytorch(iam_files, tmp_path):
    frontend = InkFrontend(features=("dx", "dy", "pen_up", "cos", "sin", "curvature", "y"), step=0.25)
    inks = [frontend.load(f) for f in iam_files]
    alphabet = " !\"#&'()*+,-./0123456789:;?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz"
    encoder = {
        "class_path": "recognizer.encoders.BLSTMEncoder",
        # the speech graphs run the plain BLSTM; this one the options of a deep stack and convolutions
        "init_args": {
            "hidden_size": 48,
            "num_layers": 2,
            "stack": 2,
            "stride": 2,
            "residual": True,
            "layer_norm": True,
            "conv_layers": 2,
            "conv_channels": 32,
        },
    }
    model = untrained(frontend, inks, alphabet, encoder)
    path = export_onnx(model, tmp_path / "ink.onnx")
    exported = recognizer.load(path)
    assert exported.model.takes == "features"
    assert len({len(frontend.features(ink)) for ink in inks}) == len(inks)
    assert_parity(pytorch_log_probs(model, inks), exported.log_probs(iam_files))
    # timestamps map back into each ink's points, as with the PyTorch model
    words = exported.transcribe(iam_files[:2], timestamps=True, split_lines=False)
    reference = recognizer.load(model.save(tmp_path / "ink.pt"), "cpu").transcribe(
        iam_files[:2], timestamps=True, split_lines=False
    )
    for transcript, expected, ink in zip(words, reference, inks):
        assert transcript.words and transcript.words == expected.words
        assert all(0 <= w["start"] <= w["end"] <= ink.num_points for w in transcript.words)
    # recognizer-transcribe hands an ink model to the torch path (its front-end runs in torch)
    code, torch_loaded, out, _ = console_transcribe(["--checkpoint", str(path), "--no-split-lines", str(iam_files[0])])
    assert code == 0 and torch_loaded and out == [f"{iam_files[0]}\t{reference[0].text}"]


def test_onnx_runtime_gives_the_same_transcripts_decoders_nbest_and_timestamps(speech, an4_files):
    ours, theirs = recognizer.load(speech["pt"], "cpu"), recognizer.load(speech["onnx"])
    for decoder, options in (("greedy", {}), ("beam", {"beam_size": 4, "nbest": 3})):
        a = ours.transcribe(an4_files, decoder, timestamps=True, **options)
        b = theirs.transcribe(an4_files, decoder, timestamps=True, **options)
        for x, y in zip(a, b):
            assert x.text == y.text and [n["text"] for n in x.nbest or []] == [n["text"] for n in y.nbest or []]
            assert [(w["word"], w["start"], w["end"]) for w in x.words] == [
                (w["word"], w["start"], w["end"]) for w in y.words
            ]


def test_onnx_speech_graph_keeps_the_utterance_normalization(an4_files, tmp_path):
    frontend = AudioFrontend(utterance_norm="meanvar")
    waves = [frontend.load(f) for f in an4_files]
    model = untrained(frontend, waves)
    exported = recognizer.load(export_onnx(model, tmp_path / "norm.onnx"))
    assert_parity(pytorch_log_probs(model, waves), exported.log_probs(an4_files))


def test_int8_keeps_the_best_path_on_most_frames_and_the_file_is_smaller(speech, an4_files):
    fp32, int8 = recognizer.load(speech["onnx"]), recognizer.load(speech["int8"])
    # An untrained model's paths hang on small margins: its text is no measure (benchmarks/export.py
    # measures the CER of trained models); the best label of most frames is.
    for a, b in zip(fp32.log_probs(an4_files), int8.log_probs(an4_files)):
        assert (a.argmax(-1) == b.argmax(-1)).float().mean().item() >= 0.95
    encoder = Model.load(speech["pt"]).encoder
    weights = sum(p.numel() for name, p in encoder.named_parameters() if p.ndim == 2 and not name.startswith("output"))
    saved = speech["onnx"].stat().st_size - speech["int8"].stat().st_size
    assert saved >= 0.7 * 4 * weights  # 1 byte instead of 4 per weight (the front-end and output stay float32)


def test_speech_graph_in_pytorch_is_the_model_on_its_features(speech, an4_files):
    model = Model.load(speech["pt"])
    waves = [model.frontend.load(f) for f in an4_files[:2]]
    padded = torch.nn.utils.rnn.pad_sequence(waves, batch_first=True)
    with torch.no_grad():
        log_probs, lengths = SpeechGraph(model).eval()(padded, torch.tensor([len(w) for w in waves]))
    for row, n, reference in zip(log_probs, lengths, pytorch_log_probs(model, waves)):
        assert (row[:n] - reference).abs().max().item() <= LOG_PROB_TOLERANCE


# --------------------------------------------------------------------------------------- bad files, CLI


def test_bad_model_files_are_one_line_errors_naming_them(speech, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(speech["onnx"].read_bytes()[:5000])
    foreign = tmp_path / "foreign.onnx"
    torch.onnx.export(torch.nn.Linear(3, 2), (torch.zeros(1, 3),), str(foreign), dynamo=False)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(speech["pt"].read_bytes()[:4000])
    newer = tmp_path / "newer.pt"
    stored = torch.load(speech["pt"], weights_only=True)
    torch.save({**stored, "version": 99}, newer)
    unversioned = tmp_path / "unversioned.pt"
    torch.save({key: value for key, value in stored.items() if key != "version"}, unversioned)
    cases = {
        truncated: "not a readable ONNX model",
        foreign: "without recognizer settings",
        cut: "not a readable checkpoint",
        newer: "version 99, newer than this recognizer reads",
        unversioned: "without a valid version",
        tmp_path / "missing.onnx": "no such model file",
    }
    for path, message in cases.items():
        with pytest.raises(CheckpointError, match=message) as error:
            recognizer.load(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_export_and_transcribe_commands(speech, an4_files, tmp_path):
    out = tmp_path / "cli.onnx"
    run = subprocess.run(
        [BIN / "recognizer", "export", str(speech["pt"]), "--out", str(out)], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(out)) and out.is_file()
    transcribed = subprocess.run(
        [BIN / "recognizer-transcribe", "--checkpoint", str(out), *map(str, an4_files[:2])],
        capture_output=True,
        text=True,
    )
    assert transcribed.returncode == 0, transcribed.stderr
    expected = recognizer.load(speech["pt"], "cpu").transcribe(an4_files[:2])
    # lines come in the order their batches finish (README, "Transcribing"), which ONNX's worker threads vary
    assert sorted(transcribed.stdout.splitlines()) == sorted(f"{f}\t{t.text}" for f, t in zip(an4_files[:2], expected))
    refused = subprocess.run(
        [BIN / "recognizer", "export", str(speech["pt"]), "--out", str(tmp_path / "m.pt"), "--int8"],
        capture_output=True,
        text=True,
    )
    assert refused.returncode == 1
    assert (
        refused.stderr.strip()
        == "recognizer export: error: --int8 quantizes an ONNX export: use --format onnx (or an --out ending in .onnx)"
    )


# ------------------------------------------------------------------------------ without torch (onnx_runtime)


def console_transcribe(argv: list[str]) -> tuple[int, bool, list[str], str]:
    """``recognizer-transcribe ARGV`` in a fresh process through its console entry: exit status, whether
    torch was imported, stdout lines, stderr."""
    script = (
        "import json, sys\n"
        "from recognizer import console\n"
        f"sys.argv = ['recognizer-transcribe', *{argv!r}]\n"
        "try:\n    console.transcribe()\nexcept SystemExit as stop:\n    code = stop.code\n"
        "print(json.dumps([code, 'torch' in sys.modules]), file=sys.stderr)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    *stderr, last = run.stderr.strip().splitlines()
    code, torch_loaded = json.loads(last)
    return code, torch_loaded, run.stdout.splitlines(), "\n".join(stderr)


def test_torch_free_transcriber_gives_the_onnx_models_transcripts_without_importing_torch(speech, an4_files, tmp_path):
    from recognizer.onnx_runtime import OnnxTranscriber

    pcm = (AudioFrontend().load(an4_files[1]).numpy() * 32767).astype(np.int16)
    np.save(tmp_path / "pcm.npy", pcm)
    script = (
        "import json, sys, numpy as np\n"
        "from recognizer.onnx_runtime import OnnxTranscriber\n"
        f"model = OnnxTranscriber({str(speech['int8'])!r})\n"
        f"inputs = {[str(f) for f in an4_files]!r} + [np.load({str(tmp_path / 'pcm.npy')!r})]\n"
        "found = model.transcribe(inputs, max_frames=300)\n"  # several batches
        "print(json.dumps([[t.source, t.text, t.score] for t in found] + [['torch' in sys.modules, 'tqdm' in sys.modules]]))\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    *found, (torch_loaded, tqdm_loaded) = json.loads(run.stdout.splitlines()[-1])
    assert not torch_loaded and not tqdm_loaded  # no progress bar asked for: tqdm is not even imported
    inputs = [*an4_files, pcm]
    expected = recognizer.load(speech["int8"]).transcribe(inputs, max_frames=300)
    assert [(source, text) for source, text, _ in found] == [(t.source, t.text) for t in expected]
    assert np.allclose([score for *_, score in found], [t.score for t in expected], atol=1e-3)
    # audio at another rate is resampled as the front-end does (torchaudio: only then is torch imported)
    wave = AudioFrontend().load(an4_files[2])
    resampled = torch.nn.functional.interpolate(wave[None, None], scale_factor=0.5, mode="linear")[0, 0].numpy()
    (ours,) = OnnxTranscriber(speech["onnx"]).transcribe([(resampled, 8000)])
    (theirs,) = recognizer.load(speech["onnx"]).transcribe([(resampled, 8000)])
    assert ours.text == theirs.text


def test_onnx_batches_on_several_threads_give_the_transcripts_of_one(speech, an4_files):
    from recognizer.onnx_runtime import OnnxTranscriber, available_cpus

    inputs = an4_files * 3
    one = OnnxTranscriber(speech["int8"], threads=1).transcribe(inputs, max_frames=300)
    assert OnnxTranscriber(speech["int8"]).model.workers == available_cpus()
    for threads in (2, 3):
        found = OnnxTranscriber(speech["int8"], threads=threads).transcribe(inputs, max_frames=300)
        assert [(t.source, t.text) for t in found] == [(t.source, t.text) for t in one]
        assert np.allclose([t.score for t in found], [t.score for t in one], atol=1e-5)
    with pytest.raises(ValueError, match="threads must be at least 1"):
        OnnxTranscriber(speech["int8"], threads=0)


def test_transcribe_command_runs_onnx_speech_models_without_torch_and_falls_back_otherwise(speech, an4_files, tmp_path):
    from conftest import write_wav

    bad = {
        "empty": write_wav(tmp_path / "empty.wav", np.zeros(0)),
        "click": write_wav(tmp_path / "click.wav", np.zeros(100)),
        "text": tmp_path / "notes.txt",
        "garbage": tmp_path / "garbage.wav",
        "missing": tmp_path / "missing.wav",
    }
    bad["text"].write_text("not audio")
    bad["garbage"].write_bytes(b"RIFF\x00\x01garbage")
    files = [str(f) for f in [an4_files[0], *bad.values(), an4_files[1]]]
    outputs = {}
    for name, extra in (("torch-free", []), ("torch", ["--decoder", "beam", "--beam", "1"])):
        out = tmp_path / f"{name}.jsonl"
        code, torch_loaded, _, stderr = console_transcribe(
            ["--checkpoint", str(speech["onnx"]), "--output", str(out), *extra, *files]
        )
        assert code == 3 and torch_loaded == (name == "torch")
        assert f"{len(bad)} of {len(files)} input(s) failed" in stderr
        outputs[name] = [json.loads(line) for line in out.read_text().splitlines()]
    # the same records, errors included (beam 1 is the best path), in any order
    assert sorted((r["source"], r.get("text"), r.get("error")) for r in outputs["torch-free"]) == sorted(
        (r["source"], r.get("text"), r.get("error")) for r in outputs["torch"]
    )
    errors = {r["source"]: r["error"] for r in outputs["torch-free"] if "error" in r}
    assert set(errors) == {str(f) for f in bad.values()} and all(str(f) in errors[str(f)] for f in bad.values())
    # --resume, other decoders, timestamps, devices and checkpoints decide the path
    code, torch_loaded, _, _ = console_transcribe(
        ["--checkpoint", str(speech["onnx"]), "--output", str(tmp_path / "torch-free.jsonl"), "--resume", *files]
    )
    assert code == 0 and not torch_loaded  # nothing left to do, no failure recorded anew
    from recognizer.transcripts import torch_free

    onnx = ["--checkpoint", "m.onnx", "a.wav"]
    assert torch_free(onnx) and torch_free([*onnx, "--decoder", "greedy", "--device", "cpu", "--max-frames", "9"])
    for other in (["--decoder", "beam"], ["--timestamps"], ["--device", "cuda"], ["--nbest", "2"], ["--help"], ["--n"]):
        assert not torch_free([*onnx, *other])
    assert not torch_free(["--checkpoint", "m.ckpt", "a.wav"]) and not torch_free(["--checkpoint", "m.onnx"])


# ---------------------------------------------------------------------------------- long inputs, segments


@pytest.mark.parametrize("runtime", ["pt", "onnx"])
def test_long_input_in_segments_gives_the_one_pass_output(runtime, speech, an4_files, monkeypatch, tmp_path):
    """An AN4-made file of about a minute, read in segments of 15 s with 3 s of context either side,
    gives the frames of one pass, the same best path and log-probabilities within 1e-3."""
    from conftest import write_wav

    from recognizer import batching

    frontend = AudioFrontend()
    pause = torch.zeros(frontend.sample_rate // 4)
    waves = [frontend.load(f) for f in an4_files] * 4
    long = write_wav(tmp_path / "long.wav", torch.cat([x for w in waves for x in (w, pause)]).numpy())
    model = recognizer.load(speech[runtime], "cpu")
    (one_pass,) = model.log_probs([long])
    monkeypatch.setattr(batching, "SEGMENT_FRAMES", 1500)
    monkeypatch.setattr(batching, "SEGMENT_CONTEXT", 300)
    calls = []
    segmented_once = batching._segmented
    monkeypatch.setattr(batching, "_segmented", lambda *a: calls.append(a) or segmented_once(*a))
    (segmented,) = model.log_probs([long])
    assert len(calls) == 1  # the long input went through in segments
    assert segmented.shape == one_pass.shape and segmented.shape[0] > 4 * 1500 // model.stride
    assert (segmented - one_pass).abs().max().item() <= 1e-3
    lengths = torch.tensor([len(one_pass)])
    assert greedy_decode(segmented[None], lengths) == greedy_decode(one_pass[None], lengths)
    if runtime == "onnx":  # the torch-free runtime segments the same way
        from recognizer.onnx_runtime import OnnxTranscriber

        (text,) = OnnxTranscriber(speech["onnx"]).transcribe([long])
        assert len(calls) == 2 and text.text == model.transcribe([long])[0].text


def test_export_refuses_a_name_that_hides_the_format(speech, tmp_path):
    with pytest.raises(ValueError, match=r"an ONNX model's name ends in \.onnx"):
        export(speech["pt"], tmp_path / "model.bin", "onnx")
    with pytest.raises(ValueError, match=r"an ONNX model's name ends in \.onnx"):
        export(speech["pt"], tmp_path / "model.onnx", "pt")
    assert not list(tmp_path.iterdir())  # nothing written, not even a partial file


def test_a_model_file_is_no_checkpoint_for_lightning(speech, tiny_speech, tmp_path):
    from test_training import tiny_args

    run = subprocess.run(
        [BIN / "recognizer", "validate", *tiny_args(tiny_speech, tmp_path), "--ckpt_path", str(speech["pt"])],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines()[-1].startswith(f"recognizer: error: {speech['pt']}: a model file")


def test_a_progress_bar_is_drawn_only_on_a_terminal(monkeypatch, capsys):
    from recognizer.transcripts import progress_bar, show_progress, warn

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not show_progress(["a.wav", "b.wav"])  # a log file or a pipe
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert show_progress(["a.wav", "b.wav"]) and not show_progress(["a.wav"])
    with progress_bar(2, True) as bar:
        bar.update(1)
        warn("b.wav: empty")
    err = capsys.readouterr().err
    assert "transcribing" in err and "b.wav: empty" in err
    monkeypatch.delitem(sys.modules, "tqdm")  # as in a torch-free run that draws no bar
    with progress_bar(2, False) as bar:
        bar.update(2)
        warn("a.wav: empty")
    assert capsys.readouterr().err == "a.wav: empty\n"
    assert "tqdm" not in sys.modules


def test_cpus_are_those_of_the_container_quota(tmp_path, monkeypatch):
    from recognizer import onnx_runtime
    from recognizer.onnx_runtime import available_cpus, cpu_quota

    v2 = tmp_path / "v2" / "cpu.max"
    v2.parent.mkdir()
    v2.write_text("150000 100000\n")
    assert cpu_quota([v2]) == 1.5
    v2.write_text("max 100000\n")
    assert cpu_quota([v2]) is None
    v1 = tmp_path / "v1" / "cpu.cfs_quota_us"
    v1.parent.mkdir()
    v1.write_text("200000\n")
    (v1.parent / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota([tmp_path / "absent", v1]) == 2.0
    v1.write_text("-1\n")
    assert cpu_quota([v1]) is None
    v2.write_text("garbage")
    assert cpu_quota([v2]) is None
    monkeypatch.setattr(onnx_runtime, "cpu_quota", lambda: 0.5)
    assert available_cpus() == 1  # half a CPU: still one worker
    monkeypatch.setattr(onnx_runtime, "cpu_quota", lambda: 1000.0)
    assert available_cpus() == len(os.sched_getaffinity(0))  # the quota does not add CPUs
