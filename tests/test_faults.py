"""Faults: kills and signals during training, checkpoints that disagree with configs, bad checkpoints.

Nothing may be lost or silently wrong: a killed or interrupted run resumes to the same weights as an
uninterrupted one; a config that contradicts the checkpoint is an error naming the field.
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from test_training import BIN, tiny_args

from recognizer.checkpoint import CheckpointError, Disagreement, read_checkpoint
from recognizer.cli import run_cli
from recognizer.data import LengthBudgetBatchSampler
from recognizer.manifest import read_manifest

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parent
EPOCHS = 2


def fit_args(corpus, root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        *tiny_args(corpus, root, "--trainer.max_epochs", str(EPOCHS), "--last_checkpoint.every_n_train_steps", "1"),
        *extra,
    ]


def last_checkpoint(root: Path) -> Path:
    (path,) = root.rglob("last.ckpt")
    return path


@pytest.fixture(scope="module")
def reference(tiny_speech, tmp_path_factory):
    """An uninterrupted run: (its final last.ckpt, optimizer steps per epoch)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    cli = run_cli(fit_args(tiny_speech, root))
    return last_checkpoint(root), cli.trainer.num_training_batches


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
    assert first["global_step"] == second["global_step"]
    for name, tensor in first["state_dict"].items():
        torch.testing.assert_close(second["state_dict"][name], tensor, rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM], ids=["kill-9", "ctrl-c", "sigterm"])
def test_interrupted_run_resumes_to_the_same_weights(signum, reference, tiny_speech, tmp_path):
    final, per_epoch = reference
    step = per_epoch + per_epoch // 2  # the middle of the second epoch
    root = tmp_path / "interrupted"
    env = {**os.environ, "PYTHONPATH": str(TESTS)}
    run = subprocess.run(
        [
            BIN / "recognizer",
            *fit_args(tiny_speech, root),
            "--trainer.callbacks+=fault_callbacks.SignalAtStep",
            "--trainer.callbacks.step",
            str(step),
            "--trainer.callbacks.signum",
            str(int(signum)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if signum == signal.SIGKILL:
        assert run.returncode == -signal.SIGKILL
    else:  # a clean stop: checkpoint written after the batch, exit status 128 + signal
        assert run.returncode == 128 + signum, run.stderr[-2000:]
        assert "resume with --ckpt_path" in run.stderr
    interrupted = last_checkpoint(root)
    saved = torch.load(interrupted, weights_only=True)
    assert 0 < saved["global_step"] - per_epoch < per_epoch, "the checkpoint must be from the middle of an epoch"
    assert not list(root.rglob(".last.ckpt.partial"))

    resumed_root = tmp_path / "resumed"
    cli = run_cli([*fit_args(tiny_speech, resumed_root), "--ckpt_path", str(interrupted)])
    assert cli.trainer.current_epoch == EPOCHS
    assert_same_weights(final, last_checkpoint(resumed_root))


def test_sigterm_during_validation_saves_and_resumes_to_the_same_weights(reference, tiny_speech, tmp_path):
    final, per_epoch = reference
    root = tmp_path / "interrupted"
    run = subprocess.run(
        [
            BIN / "recognizer",
            *fit_args(tiny_speech, root),
            "--trainer.callbacks+=fault_callbacks.SignalInValidation",
            "--trainer.callbacks.epoch",
            "0",
            "--trainer.callbacks.signum",
            str(int(signal.SIGTERM)),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        timeout=600,
    )
    assert run.returncode == 128 + signal.SIGTERM, run.stderr[-2000:]
    interrupted = last_checkpoint(root)
    assert torch.load(interrupted, weights_only=True)["global_step"] == per_epoch
    cli = run_cli([*fit_args(tiny_speech, tmp_path / "resumed"), "--ckpt_path", str(interrupted)])
    assert cli.trainer.current_epoch == EPOCHS
    assert_same_weights(final, last_checkpoint(tmp_path / "resumed"))


def test_sampler_resumes_after_the_batches_done() -> None:
    lengths = [5, 9, 3, 7, 1, 8, 2, 6, 4, 10] * 3
    full = LengthBudgetBatchSampler(lengths, 20, seed=3)
    full.set_epoch(2)
    batches = list(full)
    resumed = LengthBudgetBatchSampler(lengths, 20, seed=3)
    resumed.resume(2, 3)
    assert list(resumed) == batches[3:] and len(resumed) == len(batches)
    resumed.set_epoch(2)  # Lightning sets the epoch again when it restarts mid-epoch
    assert list(resumed) == batches[3:]
    resumed.set_epoch(3)  # only once
    full.set_epoch(3)
    assert list(resumed) == list(full)


def test_augmentation_depends_on_seed_epoch_and_index_only(tiny_speech) -> None:
    from recognizer.audio import AudioFrontend
    from recognizer.data import ManifestDataset

    entries = read_manifest(tiny_speech["train"], path_key="audio_filepath")[:2]
    dataset = ManifestDataset(entries, AudioFrontend(), augment=True, seed=5)
    first = dataset[(1, 4)]["features"]
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(dataset[(1, 4)]["features"], first)
    assert not torch.equal(dataset[(1, 5)]["features"], first)


# ---------------------------------------------------------------------------- checkpoint is the truth
@pytest.fixture(scope="module")
def trained(reference):
    return reference[0]


def test_config_alphabet_that_disagrees_is_an_error(trained, tiny_speech, tmp_path):
    alphabet = read_checkpoint(trained)["hyper_parameters"]["tokenizer"]["alphabet"]
    shifted = alphabet[1:] + "#"  # same size, every character moved by one
    with pytest.raises(Disagreement, match=r"data\.alphabet is .* in the config but .* in the checkpoint"):
        run_cli(
            ["validate", *tiny_args(tiny_speech, tmp_path), "--ckpt_path", str(trained), "--data.alphabet", shifted]
        )
    run = subprocess.run(
        [
            BIN / "recognizer",
            "validate",
            *tiny_args(tiny_speech, tmp_path),
            "--ckpt_path",
            str(trained),
            "--data.alphabet",
            shifted,
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith(f"recognizer: error: {trained}: data.alphabet is")
    assert "Traceback" not in run.stderr


def test_predict_uses_the_checkpoint_tokenizer_whatever_the_training_data(trained, tiny_speech, tmp_path):
    """A config whose training transcripts give another alphabet predicts what recognizer-transcribe does."""
    import recognizer

    entries = read_manifest(tiny_speech["train"])
    narrow = tmp_path / "narrow.jsonl"  # transcripts with fewer characters: a smaller alphabet if built from them
    with open(narrow, "w") as f:
        for entry in entries[:3]:
            f.write(
                json.dumps(
                    {
                        **entry,
                        "audio_filepath": str(Path(tiny_speech["train"]).parent / entry["audio_filepath"]),
                        "text": "ab",
                    }
                )
                + "\n"
            )
    output = tmp_path / "predictions.jsonl"
    corpus = {**tiny_speech, "train": narrow}
    run_cli(
        [
            "predict",
            *tiny_args(corpus, tmp_path),
            "--ckpt_path",
            str(trained),
            "--data.predict_manifest",
            str(tiny_speech["test"]),
            "--predictions.output",
            str(output),
        ]
    )
    predicted = {row["audio_filepath"]: row["text"] for row in map(json.loads, output.read_text().splitlines())}
    model = recognizer.load(trained, device="cpu")
    files = sorted(predicted)
    assert [t.text for t in model.transcribe(files)] == [predicted[f] for f in files]


def test_encoder_setting_that_disagrees_is_an_error(trained, tiny_speech, tmp_path):
    with pytest.raises(Disagreement, match=r"model\.encoder\.init_args\.hidden_size is 48 in the config but 32"):
        run_cli(
            [
                "validate",
                *tiny_args(tiny_speech, tmp_path, "--model.encoder.init_args.hidden_size", "48"),
                "--ckpt_path",
                str(trained),
            ]
        )
    with pytest.raises(Disagreement, match=r"data\.frontend\.init_args\.n_mels is 40"):
        run_cli(
            [
                "validate",
                *tiny_args(tiny_speech, tmp_path),
                "--data.frontend.init_args.n_mels",
                "40",
                "--ckpt_path",
                str(trained),
            ]
        )


def test_bad_checkpoint_files_are_one_line_errors(trained, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(trained.read_bytes()[:5000])
    random_bytes = tmp_path / "random.ckpt"
    random_bytes.write_bytes(os.urandom(4096))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    for path in (truncated, random_bytes, foreign, text, tmp_path / "missing.ckpt"):
        with pytest.raises(CheckpointError, match=str(path)):
            read_checkpoint(path)
        run = subprocess.run(
            [BIN / "recognizer-transcribe", "--checkpoint", path, str(path)], capture_output=True, text=True
        )
        assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert str(path) in run.stderr


# ------------------------------------------------------------------------------ batch transcription
def transcribe(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BIN / "recognizer-transcribe", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_batch_transcription_keeps_going_and_resumes(trained, tiny_speech, tmp_path):
    files = [e["audio_filepath"] for e in read_manifest(tiny_speech["test"], path_key="audio_filepath")][:5]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    output = tmp_path / "out.jsonl"
    run = transcribe("--checkpoint", trained, files[0], broken, *files[1:3], "--output", output)
    assert run.returncode == 3, run.stderr  # some failed, recorded; the rest transcribed
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert {row["source"] for row in rows} == {*files[:3], str(broken)}
    error = next(row for row in rows if row["source"] == str(broken))
    assert set(error) == {"source", "error"} and "cannot read audio" in error["error"]
    assert f"{broken}: cannot read audio" in run.stderr and "Traceback" not in run.stderr

    # a kill in the middle of a write leaves half a line: --resume drops it and redoes that input
    with open(output, "a") as f:
        f.write('{"source": "' + files[3] + '", "te')
    run = transcribe("--checkpoint", trained, *files, broken, "--output", output, "--resume")
    assert run.returncode == 0, run.stderr  # only the two new inputs ran; the broken one was already recorded
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["source"] for row in rows) == sorted([*files, str(broken)])

    run = transcribe("--checkpoint", trained, files[0], broken, "--on-error", "stop")
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert [line for line in run.stderr.splitlines() if "error" in line] == [
        f"recognizer-transcribe: error: {broken}: cannot read audio "
        "(Error in WAV/W64/RF64 file. Malformed 'fmt ' chunk.)"
    ]


def test_unwritable_output_fails_before_the_model_runs(trained, tiny_speech, tmp_path):
    files = [e["audio_filepath"] for e in read_manifest(tiny_speech["test"], path_key="audio_filepath")][:2]
    blocker = tmp_path / "file"
    blocker.write_text("")
    run = transcribe("--checkpoint", tmp_path / "never-loaded.ckpt", *files, "--output", blocker / "out.jsonl")
    assert run.returncode == 1
    assert run.stderr.strip().startswith(
        f"recognizer-transcribe: error: {blocker / 'out.jsonl'}: cannot write the output ("
    )


def test_python_api_mistakes_are_clear(trained, tiny_speech):
    import recognizer

    model = recognizer.load(trained, device="cpu")
    with pytest.raises(TypeError, match=r"a list of inputs, got a single str"):
        model.transcribe("a.wav")
    with pytest.raises(ValueError, match=r"device 'cuda:7' does not exist"):
        recognizer.load(trained, device="cuda:7")
    with pytest.raises(ValueError, match="not a device name"):
        recognizer.load(trained, device="gpu please")
    results = model.transcribe(
        ["missing.wav", read_manifest(tiny_speech["test"], path_key="audio_filepath")[0]["audio_filepath"]],
        on_error="skip",
    )
    assert results[0].error == "missing.wav: no such file" and results[0].text is None
    assert results[1].error is None and isinstance(results[1].text, str)


def test_validate_with_a_bad_manifest_is_one_line(trained, tiny_speech, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"audio_filepath": "a.wav", "text": "caf\xe9"}\n')
    run = subprocess.run(
        [
            BIN / "recognizer",
            "validate",
            *tiny_args({**tiny_speech, "dev": bad}, tmp_path),
            "--ckpt_path",
            str(trained),
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1] == f"recognizer: error: {bad}:1: not UTF-8 text (byte 41 of the line)"
    assert "Traceback" not in run.stderr


def test_a_write_cut_short_leaves_the_previous_last_checkpoint(tmp_path):
    from recognizer.callbacks import save_atomically

    last = tmp_path / "last.ckpt"
    last.write_bytes(b"the previous checkpoint")

    class DyingTrainer:
        is_global_zero = True

        def save_checkpoint(self, path, weights_only=None):
            Path(path).write_bytes(b"half a check")
            raise KeyboardInterrupt  # killed in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        save_atomically(DyingTrainer(), last)
    assert last.read_bytes() == b"the previous checkpoint"
