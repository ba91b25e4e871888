"""Checkpoint averaging: ``recognizer-average`` and ``fit --average.top_k``.

The fixture checkpoint (a tiny model of the first format, with its wavs and outputs) gives the
fast tests; one tiny training gives the end-of-fit averaging and Lightning's ``--ckpt_path``.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_training import tiny_args

import recognizer
from recognizer.average import average_checkpoints, best_checkpoints, main, score, write_checkpoint
from recognizer.checkpoint import CheckpointError, read_checkpoint
from recognizer.cli import run_cli
from recognizer.manifest import read_manifest

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE = FIXTURES / "speech-v0.ckpt"
WAVS = [str(FIXTURES / f"speech-v0-{i}.wav") for i in range(3)]
#: recognizer-average through its console entry (one-line errors), whether or not the script is installed
AVERAGE = [sys.executable, "-c", "from recognizer.console import average; average()"]
#: the same as a subcommand of ``recognizer``
SUBCOMMAND = [sys.executable, "-m", "recognizer", "average"]


def perturbed(path: Path, seed: int, edit=None) -> Path:
    """A copy of the fixture with noise added to its floating-point weights (and ``edit`` applied)."""
    checkpoint = torch.load(FIXTURE, weights_only=True)
    generator = torch.Generator().manual_seed(seed)
    for name, value in checkpoint["state_dict"].items():
        if value.is_floating_point():
            checkpoint["state_dict"][name] = value + 0.01 * torch.randn(value.shape, generator=generator)
    if edit is not None:
        edit(checkpoint)
    torch.save(checkpoint, path)
    return path


def test_averaging_identical_checkpoints_is_a_no_op(tmp_path):
    copies = [shutil.copy(FIXTURE, tmp_path / f"copy{i}.ckpt") for i in range(3)]
    averaged = average_checkpoints(copies)
    original = read_checkpoint(FIXTURE)["state_dict"]
    assert averaged["state_dict"].keys() == original.keys()
    for name, value in original.items():
        assert torch.equal(averaged["state_dict"][name], value), name
        assert averaged["state_dict"][name].dtype == value.dtype, name
    out = write_checkpoint(averaged, tmp_path / "avg.ckpt")
    model = recognizer.load(out, device="cpu")
    expected = json.loads((FIXTURES / "speech-v0-expected.json").read_text())
    assert [t.text for t in model.transcribe(WAVS)] == expected["greedy"]
    for got, want in zip(model.log_probs(WAVS), torch.load(FIXTURES / "speech-v0-log-probs.pt")):
        # the same network: only the last bits differ between CPU instruction sets (AVX2, AVX-512)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_average_of_two_is_the_mean_and_transcribes(tmp_path):
    a, b = perturbed(tmp_path / "a.ckpt", 1), perturbed(tmp_path / "b.ckpt", 2)
    out = write_checkpoint(average_checkpoints([a, b]), tmp_path / "avg.ckpt")
    assert not list(tmp_path.glob(".*partial"))  # the temporary file was renamed
    first, second = read_checkpoint(a)["state_dict"], read_checkpoint(b)["state_dict"]
    stored = torch.load(out, weights_only=True)
    assert not {"optimizer_states", "lr_schedulers", "loops", "callbacks"} & stored.keys()  # not for resuming
    assert [source["path"] for source in stored["averaged_from"]] == [str(a), str(b)]
    averaged = read_checkpoint(out)["state_dict"]
    for name, value in first.items():
        if value.is_floating_point():
            torch.testing.assert_close(averaged[name], (value + second[name]) / 2, rtol=0, atol=1e-6, msg=name)
            assert not torch.equal(averaged[name], value), name
        else:  # the normalizer's `initialized`
            assert torch.equal(averaged[name], value), name
    texts = [t.text for t in recognizer.load(out, device="cpu").transcribe(WAVS)]
    assert len(texts) == 3 and all(isinstance(text, str) for text in texts)


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def edit(checkpoint):
        target = checkpoint
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return edit


@pytest.mark.parametrize(
    "edit, message",
    [
        (_set("hyper_parameters", "tokenizer", "alphabet", " abc"), "tokenizer.alphabet"),
        (_set("hyper_parameters", "hidden_size", 64), "encoder.init_args.hidden_size"),  # first format: flat
        (_set("hyper_parameters", "frontend", "n_mels", 40), "frontend.n_mels"),
        (_set("state_dict", "model.normalizer.initialized", torch.tensor(False)), "encoder.normalizer.initialized"),
    ],
    ids=["tokenizer", "encoder", "frontend", "integer-buffer"],
)
def test_checkpoints_that_disagree_are_one_line_errors(tmp_path, edit, message):
    other = perturbed(tmp_path / "other.ckpt", 1, edit)
    with pytest.raises(CheckpointError, match=str(other)) as error:
        average_checkpoints([FIXTURE, other])
    assert message in str(error.value) and "\n" not in str(error.value)


def test_training_only_settings_may_differ(tmp_path):
    other = perturbed(tmp_path / "other.ckpt", 1, _set("hyper_parameters", "dropout", 0.3))
    assert average_checkpoints([FIXTURE, other])["hyper_parameters"]["encoder"]["init_args"]["dropout"] == 0.1


def test_a_file_that_is_no_recognizer_checkpoint_is_an_error(tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"model": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    with pytest.raises(CheckpointError, match=str(foreign)):
        average_checkpoints([FIXTURE, foreign])
    with pytest.raises(ValueError, match="no checkpoints"):
        average_checkpoints([])


def test_run_dir_top_k_by_validation_cer(tmp_path):
    """Scores come from the ModelCheckpoint table each file carries, else from the filename; last.ckpt has none."""
    folder = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    table = torch.load(FIXTURE, weights_only=True)["callbacks"]
    (state,) = (value for key, value in table.items() if key.startswith("ModelCheckpoint"))
    recorded = {Path(path).name: float(value) for path, value in state["best_k_models"].items()}
    for seed, name in enumerate(sorted(recorded)):
        perturbed(folder / name, seed)  # each carries the table, itself in it
    perturbed(folder / "epoch099-cer0.0001.ckpt", 7, lambda c: c.pop("callbacks"))  # the filename's score
    shutil.copy(FIXTURE, folder / "last.ckpt")
    assert score(folder / "last.ckpt", read_checkpoint(folder / "last.ckpt")) is None
    ranked = ["epoch099-cer0.0001.ckpt", *sorted(recorded, key=recorded.get)]
    assert [p.name for p in best_checkpoints(tmp_path / "run", 3)] == ranked[:3]
    assert [p.name for p in best_checkpoints(folder, 4)] == ranked
    with pytest.raises(ValueError, match="fewer than --top-k 5"):
        best_checkpoints(tmp_path / "run", 5)
    assert main(["--run-dir", str(tmp_path / "run"), "--top-k", "2", "--out", str(folder / "averaged.ckpt")]) == 0
    # the average is never one of a run's candidates
    assert [p.name for p in best_checkpoints(folder, 4)] == ranked
    (tmp_path / "run" / "lightning_logs" / "version_1").mkdir()
    shutil.copy(FIXTURE, tmp_path / "run" / "lightning_logs" / "version_1" / "epoch001-cer0.5.ckpt")
    with pytest.raises(ValueError, match="several runs"):
        best_checkpoints(tmp_path / "run", 2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "command, prog", [(AVERAGE, "recognizer-average"), (SUBCOMMAND, "recognizer average")], ids=["script", "subcommand"]
)
def test_command_end_to_end(tmp_path, command, prog):
    a, b = perturbed(tmp_path / "a.ckpt", 1), perturbed(tmp_path / "b.ckpt", 2)
    out = tmp_path / "out" / "avg.ckpt"
    run = subprocess.run([*command, "--checkpoints", a, b, "--out", out], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"wrote {out}" in run.stdout
    assert len(recognizer.load(out, device="cpu").transcribe(WAVS)) == 3
    foreign = tmp_path / "foreign.ckpt"
    foreign.write_text("not a checkpoint\n")
    for bad in ([a, foreign], [a, perturbed(tmp_path / "c.ckpt", 3, _set("hyper_parameters", "stride", 4))]):
        run = subprocess.run(
            [*command, "--checkpoints", *bad, "--out", tmp_path / "bad.ckpt"], capture_output=True, text=True
        )
        assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert str(bad[-1]) in run.stderr and run.stderr.startswith(f"{prog}: error: ")
        assert not (tmp_path / "bad.ckpt").exists()


@pytest.mark.slow
def test_fit_averages_its_best_checkpoints_at_the_end(tiny_speech, tmp_path):
    root = tmp_path / "fit"
    cli = run_cli(["fit", *tiny_args(tiny_speech, root, "--trainer.max_epochs", "3", "--average.top_k", "2")])
    top_k = cli.trainer.checkpoint_callback
    folder = Path(top_k.dirpath)
    averaged = folder / "averaged.ckpt"
    assert averaged.is_file() and {"last.ckpt", "averaged.ckpt"} <= {p.name for p in folder.iterdir()}
    best_two = sorted(top_k.best_k_models, key=lambda path: float(top_k.best_k_models[path]))[:2]
    stored = torch.load(averaged, weights_only=True)
    assert [source["path"] for source in stored["averaged_from"]] == best_two
    # the command, on the run's folder, chooses the same two files
    again = tmp_path / "again.ckpt"
    assert main(["--run-dir", str(root), "--top-k", "2", "--out", str(again)]) == 0
    for name, value in read_checkpoint(again)["state_dict"].items():
        assert torch.equal(stored["state_dict"][name], value), name

    files = [e["audio_filepath"] for e in read_manifest(tiny_speech["test"], path_key="audio_filepath")[:3]]
    assert len(recognizer.load(averaged, device="cpu").transcribe(files)) == 3
    validated = run_cli(["validate", *tiny_args(tiny_speech, tmp_path / "val"), "--ckpt_path", str(averaged)])
    assert 0 <= float(validated.trainer.callback_metrics["val_cer"]) <= 1.5
    with pytest.raises(CheckpointError, match="weights only"):
        run_cli(["fit", *tiny_args(tiny_speech, tmp_path / "resume"), "--ckpt_path", str(averaged)])


def test_average_is_off_by_default_and_rejects_a_negative_top_k():
    from recognizer.callbacks import AverageCheckpoints

    assert AverageCheckpoints().top_k == 0
    with pytest.raises(ValueError, match="top_k"):
        AverageCheckpoints(top_k=-1)
