"""End-to-end: fit, checkpoints, transcription, prediction, infeasible utterances, DDP on CPU."""

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from recognizer.cli import run_cli
from recognizer.encoders import LSTMEncoder
from recognizer.encoders.base import settings as encoder_settings
from recognizer.manifest import read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "configs" / "speech" / "demo.yaml")
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def tiny_args(corpus: dict[str, Path], root: Path, *extra: str, config: str = DEMO) -> list[str]:
    """A demo config shrunk to a model that trains in seconds."""
    return [
        "--config",
        config,
        "--data.train_manifest",
        str(corpus["train"]),
        "--data.val_manifest",
        str(corpus["dev"]),
        "--data.test_manifest",
        str(corpus["test"]),
        "--data.max_frames",
        "4000",
        "--model.encoder.init_args.hidden_size",
        "32",
        "--model.encoder.init_args.num_layers",
        "2",
        "--model.warmup_steps",
        "2",
        "--model.lr",
        "0.01",
        "--trainer.default_root_dir",
        str(root),
        "--trainer.max_epochs",
        "1",
        "--trainer.max_time",
        "null",
        "--trainer.check_val_every_n_epoch",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.logger",
        "pytorch_lightning.loggers.CSVLogger",
        "--trainer.logger.save_dir",
        str(root),
        *extra,
    ]


def logged(cli, column: str) -> list[float]:
    with open(Path(cli.trainer.logger.log_dir) / "metrics.csv") as f:
        return [float(row[column]) for row in csv.DictReader(f) if row.get(column)]


@pytest.fixture(scope="module")
def trained(tiny_speech, tmp_path_factory):
    """A tiny model fitted on the tiny synthetic corpus; returns (cli, best checkpoint)."""
    root = tmp_path_factory.mktemp("fit")
    cli = run_cli(["fit", *tiny_args(tiny_speech, root, "--trainer.max_epochs", "3")])
    return cli, Path(cli.trainer.checkpoint_callback.best_model_path)


def test_fit_learns_and_writes_checkpoints(trained):
    cli, best = trained
    losses = logged(cli, "train_loss")
    assert all(map(torch.isfinite, torch.tensor(losses)))
    assert losses[-1] < 0.7 * losses[0]  # training reduces the CTC loss
    cer = logged(cli, "val_cer")
    assert len(cer) == 3 and 0 <= cer[-1] <= 1.5
    names = {p.name for p in best.parent.iterdir()}
    assert "last.ckpt" in names and best.name in names and best.name.startswith("epoch")


def test_checkpoint_alone_transcribes(trained, tiny_speech, tmp_path):
    _, best = trained
    lonely = tmp_path / "model.ckpt"
    shutil.copy(best, lonely)  # nothing else: no config, no manifest, no corpus metadata
    files = [e["audio_filepath"] for e in read_manifest(tiny_speech["test"], path_key="audio_filepath")][:5]
    output = tmp_path / "out.jsonl"
    run = subprocess.run(
        [BIN / "recognizer-transcribe", "--checkpoint", lonely, *files, "--output", output, "--device", "cpu"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    rows = sorted(rows, key=lambda row: files.index(row["source"]))  # written as batches finish
    assert [row["source"] for row in rows] == files
    assert all(isinstance(row["text"], str) for row in rows)

    import recognizer

    model = recognizer.load(lonely, device="cpu")
    assert [t.text for t in model.transcribe(files)] == [row["text"] for row in rows]
    # arrays and (array, rate) pairs give the same text as the file
    import soundfile

    audio, rate = soundfile.read(files[0], dtype="float32")
    assert model.transcribe([audio])[0].text == rows[0]["text"]
    assert model.transcribe([(audio, rate)])[0].text == rows[0]["text"]


def test_transcribe_beam_nbest_timestamps(trained, tiny_speech, tmp_path):
    _, best = trained
    entries = read_manifest(tiny_speech["test"], path_key="audio_filepath")[:4]
    output = tmp_path / "out.jsonl"
    run = subprocess.run(
        [
            BIN / "recognizer-transcribe",
            "--checkpoint",
            best,
            *[e["audio_filepath"] for e in entries],
            "--output",
            output,
            "--decoder",
            "beam",
            "--beam",
            "6",
            "--nbest",
            "3",
            "--timestamps",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    by_source = {row["source"]: row for row in map(json.loads, output.read_text().splitlines())}
    rows = [by_source[entry["audio_filepath"]] for entry in entries]
    for row, entry in zip(rows, entries):
        assert row["unit"] == "seconds"
        assert 1 <= len(row["nbest"]) <= 3 and row["nbest"][0]["text"] == row["text"]
        scores = [h["score"] for h in row["nbest"]]
        assert scores == sorted(scores, reverse=True) and row["score"] == scores[0] <= 0
        assert [w["word"] for w in row["words"]] == row["text"].split()
        for word in row["words"]:
            assert 0 <= word["start"] < word["end"] <= entry["duration"] + 0.05
            assert 0 <= word["confidence"] <= 1
        starts = [w["start"] for w in row["words"]]
        assert starts == sorted(starts)

    import recognizer

    model = recognizer.load(best, device="cpu")
    files = [e["audio_filepath"] for e in entries]
    greedy = model.transcribe(files)
    beam_one = model.transcribe(files, decoder="beam", beam_size=1)
    assert [t.text for t in greedy] == [t.text for t in beam_one]  # beam 1 is best-path decoding


@pytest.fixture(scope="module")
def language_model(tiny_speech, tmp_path_factory):
    """A word 3-gram, a character 5-gram and a lexicon from the tiny corpus's training transcripts."""
    root = tmp_path_factory.mktemp("lm")
    common = [BIN / "recognizer-lm", "--manifest", tiny_speech["train"], "--case", "keep"]
    for extra in (
        ["--out", root / "words.arpa", "--lexicon", root / "lexicon.txt"],
        ["--unit", "char", "--order", "5", "--out", root / "chars.arpa"],
    ):
        run = subprocess.run([*common, *extra], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
    return {"words": root / "words.arpa", "chars": root / "chars.arpa", "lexicon": root / "lexicon.txt"}


def test_transcribe_with_lm_decoders(trained, tiny_speech, language_model, tmp_path):
    _, best = trained
    entries = read_manifest(tiny_speech["test"], path_key="audio_filepath")[:4]
    files = [e["audio_filepath"] for e in entries]
    output = tmp_path / "out.jsonl"
    run = subprocess.run(
        [
            BIN / "recognizer-transcribe",
            "--checkpoint",
            best,
            *files,
            "--output",
            output,
            "--lm",
            language_model["words"],
            "--lexicon",
            language_model["lexicon"],
            "--lm-weight",
            "1.5",
            "--beam",
            "16",
            "--nbest",
            "2",
            "--timestamps",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    vocabulary = set(language_model["lexicon"].read_text().split())
    for row in rows:
        assert set(row["text"].split()) <= vocabulary  # the lexicon constrains every word
        assert [w["word"] for w in row["words"]] == row["text"].split()
        assert row["nbest"][0]["text"] == row["text"] and len(row["nbest"]) <= 2

    import recognizer

    model = recognizer.load(best, device="cpu")
    frames = model.log_probs(files)
    assert [t.text for t in model.decode_log_probs(frames)] == [t.text for t in model.transcribe(files)]
    char_lm = model.decode_log_probs(frames, "lm", lm=str(language_model["chars"]), lm_weight=0.5)
    assert all(t.text == " ".join(t.text.split()) for t in char_lm)
    run = subprocess.run(
        [
            BIN / "recognizer-transcribe",
            "--checkpoint",
            best,
            files[0],
            "--decoder",
            "beam",
            "--lm",
            language_model["words"],
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "use decoder='lm'" in run.stderr
    run = subprocess.run(
        [BIN / "recognizer-transcribe", "--checkpoint", best, files[0], "--lm", language_model["words"]],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and str(language_model["words"]) in run.stderr and "character LM" in run.stderr


def test_tune_prints_the_best_pair(trained, tiny_speech, language_model):
    _, best = trained
    run = subprocess.run(
        [
            BIN / "recognizer-tune",
            "--checkpoint",
            best,
            "--manifest",
            tiny_speech["dev"],
            "--lm",
            language_model["words"],
            "--lexicon",
            language_model["lexicon"],
            "--lm-weights",
            "0",
            "1",
            "--word-scores",
            "0",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    table = [line.split("\t") for line in run.stdout.splitlines()[1:-1]]
    assert [(float(w), float(s)) for w, s, *_ in table] == [(0, 0), (0, 2), (1, 0), (1, 2)]
    wers = [float(row[2].rstrip("%")) for row in table]
    last = run.stdout.splitlines()[-1]
    assert last.startswith("best: --lm-weight") and f"WER {min(wers):.2f}%" in last


def test_tune_searches_the_unknown_word_score(trained, tiny_speech, language_model):
    _, best = trained
    tune = [BIN / "recognizer-tune", "--checkpoint", best, "--manifest", tiny_speech["dev"]]
    grid = ["--lm-weights", "1", "--word-scores", "0", "--unk-scores", "never", "-5"]
    run = subprocess.run(
        [*tune, "--lm", language_model["words"], "--lexicon", language_model["lexicon"], *grid],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "lm_weight\tword_score\tunk_score\tWER\tCER"
    assert [row.split("\t")[2] for row in lines[1:-1]] == ["never", "-5"]
    assert lines[-1].startswith("best: --lm-weight 1 --word-score 0 --unk-score=")
    # without a lexicon there is no unknown word to score
    run = subprocess.run([*tune, "--lm", language_model["words"], *grid], capture_output=True, text=True)
    assert run.returncode == 2 and "--unk-scores needs --lexicon" in run.stderr


def test_tune_searches_the_character_lm_weight(trained, tiny_speech, language_model):
    _, best = trained
    tune = [BIN / "recognizer-tune", "--checkpoint", best, "--manifest", tiny_speech["dev"]]
    files = ["--lm", language_model["words"], "--lexicon", language_model["lexicon"]]
    grid = ["--lm-weights", "1", "--word-scores", "0", "--unk-scores", "-5", "--char-lm-weights", "0", "0.5"]
    run = subprocess.run([*tune, *files, "--char-lm", language_model["chars"], *grid], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "lm_weight\tword_score\tunk_score\tchar_lm_weight\tWER\tCER"
    assert [row.split("\t")[3] for row in lines[1:-1]] == ["0", "0.5"]
    assert "--char-lm-weight " in lines[-1]
    run = subprocess.run([*tune, *files, *grid], capture_output=True, text=True)
    assert run.returncode == 2 and "--char-lm-weights needs --char-lm" in run.stderr


def test_validate_decodes_with_the_configured_lm(trained, tiny_speech, language_model, tmp_path):
    cli, best = trained
    options = [
        "--model.decoding.decoder",
        "lm",
        "--model.decoding.lm",
        str(language_model["words"]),
        "--model.decoding.lexicon",
        str(language_model["lexicon"]),
    ]
    validated = run_cli(["validate", *tiny_args(tiny_speech, tmp_path, *options), "--ckpt_path", str(best)])
    module = validated.model
    assert module.decoding.decoder == "lm" and 0 <= float(validated.trainer.callback_metrics["val_wer"]) <= 1.5
    batch = next(iter(validated.datamodule.val_dataloader()))
    with torch.no_grad():
        texts = module.transcripts(*module(batch.features, batch.lengths))
    vocabulary = set(language_model["lexicon"].read_text().split())
    assert all(set(text.split()) <= vocabulary for text in texts)  # what validation scores went through the lexicon


def test_minutes_long_file(trained, tiny_speech, tmp_path):
    """A file of about two minutes is transcribed in one piece, like its parts."""
    import numpy as np
    import soundfile

    import recognizer

    _, best = trained
    parts = [
        soundfile.read(e["audio_filepath"], dtype="float32")[0]
        for e in read_manifest(tiny_speech["train"], path_key="audio_filepath")
    ]
    audio = np.concatenate(parts)
    assert len(audio) / 16000 > 110
    path = tmp_path / "long.flac"
    soundfile.write(path, audio, 16000)
    model = recognizer.load(best, device="cpu")
    [long] = model.transcribe([path])
    pieces = model.transcribe(parts)
    features = model.frontend.features(model.frontend.load(path))
    with torch.no_grad():
        log_probs, lengths = model.model(features[None], torch.tensor([len(features)]))
    assert lengths.item() == -(-len(features) // 3) == log_probs.shape[1]
    assert torch.isfinite(log_probs).all()
    # the same model on the same audio: the long transcript is about as long as the pieces together
    together = sum(len(p.text) for p in pieces)
    assert 0.7 * together <= len(long.text) <= 1.3 * together + 10


def test_transcribe_script_reports_bad_inputs(trained, tmp_path):
    _, best = trained
    (tmp_path / "notes.txt").write_text("hello")
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    for path, message in [
        (tmp_path / "missing.wav", "no such file"),
        (tmp_path / "notes.txt", "audio model"),
        (bad, "cannot read audio"),
    ]:
        run = subprocess.run(
            [BIN / "recognizer-transcribe", "--checkpoint", best, path], capture_output=True, text=True
        )
        assert run.returncode == 1
        assert str(path) in run.stderr and message in run.stderr


@pytest.mark.parametrize("decoder", ["greedy", "beam"])
def test_predict_writes_json_lines(trained, tiny_speech, tmp_path, decoder):
    cli, best = trained
    output = tmp_path / "predictions.jsonl"
    run_cli(
        [
            "predict",
            *tiny_args(tiny_speech, tmp_path),
            "--ckpt_path",
            str(best),
            "--model.decoding.decoder",
            decoder,
            "--data.predict_manifest",
            str(tiny_speech["test"]),
            "--predictions.output",
            str(output),
        ]
    )
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(rows) == len(read_manifest(tiny_speech["test"]))
    assert {"id", "audio_filepath", "text"} <= set(rows[0])


def test_resume_from_last_checkpoint(trained, tiny_speech, tmp_path):
    cli, best = trained
    last = best.parent / "last.ckpt"
    resumed = run_cli(["fit", *tiny_args(tiny_speech, tmp_path, "--trainer.max_epochs", "4"), "--ckpt_path", str(last)])
    assert resumed.trainer.current_epoch == 4
    assert resumed.trainer.global_step > torch.load(last, weights_only=True)["global_step"]


def test_unidirectional_encoder_chosen_in_the_config_alone(tiny_speech, tmp_path):
    import recognizer
    from recognizer.checkpoint import Disagreement
    from recognizer.encoders import LSTMEncoder

    config = tmp_path / "lstm.yaml"
    config.write_text("model:\n  encoder:\n    class_path: recognizer.encoders.LSTMEncoder\n")
    cli = run_cli(["fit", *tiny_args(tiny_speech, tmp_path / "fit", "--config", str(config))])
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    stored = torch.load(best, weights_only=True)["hyper_parameters"]["encoder"]
    assert stored["class_path"] == "recognizer.encoders.LSTMEncoder"
    assert stored["init_args"]["hidden_size"] == 32  # tiny_args' size carried over to the chosen class

    model = recognizer.load(best, device="cpu")
    assert isinstance(model.model.encoder, LSTMEncoder) and model.stride == 3
    entries = read_manifest(tiny_speech["test"], path_key="audio_filepath")[:4]
    transcripts = model.transcribe([e["audio_filepath"] for e in entries], timestamps=True)
    assert all(isinstance(t.text, str) and t.error is None for t in transcripts)
    assert all(0 <= w["start"] < w["end"] for t in transcripts for w in t.words)

    # the checkpoint is the truth: evaluating it with a config that names another encoder is an error
    with pytest.raises(Disagreement, match="the checkpoint's encoder is recognizer.encoders.LSTMEncoder"):
        run_cli(["validate", *tiny_args(tiny_speech, tmp_path / "val"), "--ckpt_path", str(best)])
    validated = run_cli(
        ["validate", *tiny_args(tiny_speech, tmp_path / "val", "--config", str(config)), "--ckpt_path", str(best)]
    )
    assert isinstance(validated.model.encoder, LSTMEncoder)


def test_first_format_checkpoint_validates_and_resumes_through_the_cli(tiny_speech, tmp_path):
    fixture = REPO / "tests" / "fixtures" / "speech-v0.ckpt"
    validated = run_cli(["validate", *tiny_args(tiny_speech, tmp_path / "val"), "--ckpt_path", str(fixture)])
    assert validated.model.hparams["encoder"]["init_args"]["hidden_size"] == 32
    assert 0 <= float(validated.trainer.callback_metrics["val_cer"]) <= 1.0
    stored = torch.load(fixture, weights_only=True)
    resumed = run_cli(
        [
            "fit",
            *tiny_args(tiny_speech, tmp_path / "fit", "--trainer.max_epochs", str(stored["epoch"] + 2)),
            "--ckpt_path",
            str(fixture),
        ]
    )
    assert resumed.trainer.global_step > stored["global_step"]  # optimizer state and weights restored, training went on


def test_infeasible_utterance_is_skipped_and_counted(tiny_speech, tmp_path, caplog):
    entries = read_manifest(tiny_speech["train"], path_key="audio_filepath")[:10]
    entries[3] = {**entries[3], "text": " ".join(["abcdefghij"] * 40)}  # 440 characters in ~2 s of audio
    train = write_manifest(tmp_path / "train.jsonl", entries, relative=False)
    corpus = {**tiny_speech, "train": train}
    with caplog.at_level(logging.WARNING, logger="recognizer.lightning_module"):
        cli = run_cli(
            [
                "fit",
                *tiny_args(
                    corpus,
                    tmp_path,
                    "--trainer.max_epochs",
                    "2",
                    "--trainer.limit_val_batches",
                    "1",
                    "--data.alphabet",
                    " abcdefghijklmnopqrstuvwxyz",
                ),
            ]
        )
    assert f"{train}:4: skipped" in caplog.text
    assert sum(logged(cli, "train_skipped")) == 2  # once per epoch
    assert all(map(torch.isfinite, torch.tensor(logged(cli, "train_loss"))))


def test_all_infeasible_batch_gives_a_zero_loss_with_gradients(trained):
    cli, _ = trained
    from recognizer.data import Batch
    from recognizer.lightning_module import CTCModule

    # a module outside any trainer: logging is then a no-op
    module = CTCModule(
        tokenizer=cli.model.hparams.tokenizer,
        frontend=cli.model.hparams.frontend,
        encoder={"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden_size": 8, "num_layers": 1}},
    ).train()
    features = torch.randn(2, 6, module.frontend.feature_dim)
    batch = Batch(
        ids=["a", "b"],
        entries=[{"source": "m.jsonl:1"}, {"source": "m.jsonl:2"}],
        features=features,
        lengths=torch.tensor([6, 3]),
        targets=torch.tensor([1, 2, 3, 1, 2, 3]),
        target_lengths=torch.tensor([3, 3]),
        min_frames=torch.tensor([3, 3]),
    )
    log_probs, out_lengths = module(features, batch.lengths)
    loss = module._ctc_loss(batch, log_probs, out_lengths, "train")  # 2 and 1 output frames < 3 labels
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()


def test_character_outside_alphabet_fails_at_setup(tiny_speech, tmp_path):
    entries = read_manifest(tiny_speech["train"], path_key="audio_filepath")[:3]
    entries[1] = {**entries[1], "text": "naïve"}
    train = write_manifest(tmp_path / "train.jsonl", entries, relative=False)
    from recognizer.audio import AudioFrontend
    from recognizer.data import DataModule
    from recognizer.tokenizer import TokenizerError

    data = DataModule(AudioFrontend(), train_manifest=str(train), alphabet="abcdefghijklmnopqrstuvwxyz ")
    with pytest.raises(TokenizerError, match=rf"{train}:2: character 'ï'"):
        data.setup("fit")


@pytest.mark.parametrize(
    "config, expected",
    [
        ("speech/an4.yaml", ["hidden_size: 256", "layer_norm: true", "recognizer.audio.AudioFrontend"]),
        (
            "handwriting/iam_ondb.yaml",
            [
                "hidden_size: 192",
                "residual: true",
                "top_k: 3",
                "time_masks: 4",
                "max_time: 00:01:20:00",
                "recognizer.ink.frontend.InkFrontend",
            ],
        ),
    ],
)
def test_print_config(config, expected):
    """The shipped recipes resolve through the CLI with their settings."""
    run = subprocess.run(
        [BIN / "recognizer", "fit", "--config", str(REPO / "configs" / config), "--print_config"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    assert [line for line in expected if line not in run.stdout] == []


def test_ddp_on_cpu(tiny_speech, tmp_path):
    """Two real DDP processes (gloo) fit a few steps."""
    args = tiny_args(
        tiny_speech,
        tmp_path,
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.limit_train_batches",
        "3",
        "--trainer.limit_val_batches",
        "2",
    )
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.run(
        [BIN / "recognizer", "fit", *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in run.stderr + run.stdout
    checkpoints = list(tmp_path.rglob("last.ckpt"))
    assert len(checkpoints) == 1
    assert torch.load(checkpoints[0], weights_only=True)["global_step"] == 3


def test_time_budget_plans_the_epochs_and_ends_the_decay_with_speed_perturbation(tiny_speech, tmp_path):
    """A run under max_time plans the epochs that fit, stops after them and ends at lr * min_lr_ratio, not
    at the high learning rate a schedule sized by max_epochs would still be at; the plan is in the
    checkpoint and a resumed run keeps it. Speed and volume perturbation train and are stored."""
    args = tiny_args(
        tiny_speech,
        tmp_path,
        "--trainer.max_epochs",
        "100000",
        "--trainer.max_time",
        "00:00:00:20",
        "--model.min_lr_ratio",
        "0.1",
        "--data.frontend.init_args.speed_factors",
        "[0.9, 1.0, 1.1]",
        "--data.frontend.init_args.volume_range",
        "[-6, 6]",
    )
    cli = run_cli(["fit", *args])
    plan = cli.model.budget_plan
    assert plan is not None and plan.epochs is not None  # planned after 2 s (a tiny epoch takes about 1 s)
    assert 2 < cli.trainer.current_epoch == plan.epochs < 100  # the plan stopped it, within the budget
    lr = cli.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr == pytest.approx(0.01 * 0.1, rel=0.01)  # lr 0.01 from tiny_args; by max_epochs it would be ~0.01
    assert all(map(torch.isfinite, torch.tensor(logged(cli, "train_loss"))))
    last = next(tmp_path.rglob("last.ckpt"))
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["budget_plan"]["epochs"] == plan.epochs
    stored = checkpoint["hyper_parameters"]
    assert stored["frontend"]["speed_factors"] == [0.9, 1.0, 1.1] and stored["frontend"]["volume_range"] == [-6, 6]
    # Resumed, the run keeps its plan, whose epochs are all done: nothing more to train.
    resumed = run_cli(["fit", *args, "--ckpt_path", str(last)])
    assert resumed.model.budget_plan == plan and resumed.trainer.global_step == checkpoint["global_step"]
    # Training-only settings: a config that differs from the checkpoint is no disagreement.
    args = tiny_args(tiny_speech, tmp_path / "val", "--data.frontend.init_args.speed_factors", "[0.8, 1.2]")
    validated = run_cli(["validate", *args, "--ckpt_path", str(last)])
    assert validated.trainer.callback_metrics["val_cer"] >= 0


@pytest.mark.parametrize("native", [True, False], ids=["native-bf16", "no-native-bf16"])
def test_bf16_mixed_precision_trains_on_cpu(tiny_speech, tmp_path, monkeypatch, native):
    """precision bf16-mixed: finite losses, validation, float32 weights in the checkpoint, which transcribes.
    On a CPU without native bfloat16 the CLI trains in float32 instead, and says so."""
    import recognizer
    from recognizer import lightning_module

    if native and not lightning_module.cpu_has_native_bfloat16():
        pytest.skip("this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
    monkeypatch.setattr(lightning_module, "cpu_has_native_bfloat16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = run_cli(["fit", *tiny_args(tiny_speech, tmp_path, "--trainer.precision", "bf16-mixed")])
    fallback = [str(w.message) for w in caught if "training in float32 (32-true) instead" in str(w.message)]
    assert cli.trainer.precision == ("bf16-mixed" if native else "32-true")
    assert len(fallback) == (0 if native else 1)
    losses = torch.tensor(logged(cli, "train_loss"))
    assert len(losses) and bool(torch.isfinite(losses).all())
    assert 0 <= logged(cli, "val_cer")[-1] <= 1.0
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    weights = torch.load(best, weights_only=True)["state_dict"]
    assert {w.dtype for w in weights.values() if w.is_floating_point()} == {torch.float32}
    entries = read_manifest(tiny_speech["test"], path_key="audio_filepath")[:2]
    transcripts = recognizer.load(best, device="cpu").transcribe([e["audio_filepath"] for e in entries])
    assert all(t.error is None for t in transcripts)


def test_intermediate_ctc_trains_and_logs_its_loss(tiny_speech, tmp_path):
    import recognizer

    extra = ("--model.encoder.init_args.intermediate_ctc", "1", "--model.encoder.init_args.intermediate_weight", "0.3")
    cli = run_cli(["fit", *tiny_args(tiny_speech, tmp_path, *extra)])
    intermediate = torch.tensor(logged(cli, "train_intermediate_loss"))
    assert len(intermediate) and bool(torch.isfinite(intermediate).all())
    best = Path(cli.trainer.checkpoint_callback.best_model_path)
    stored = torch.load(best, weights_only=True)
    assert stored["hyper_parameters"]["encoder"]["init_args"]["intermediate_ctc"] == 1
    assert "encoder.intermediate_output.weight" in stored["state_dict"]
    entries = read_manifest(tiny_speech["test"], path_key="audio_filepath")[:2]
    assert all(t.error is None for t in recognizer.load(best).transcribe([e["audio_filepath"] for e in entries]))


def _module_like(best, **changes):
    """A CTCModule with the settings of checkpoint ``best``, some changed."""
    from recognizer.lightning_module import CTCModule

    settings = torch.load(best, weights_only=True)["hyper_parameters"]
    settings = {k: v for k, v in settings.items() if k in ("tokenizer", "frontend", "encoder")}
    for key, value in changes.items():
        part, _, name = key.partition(".")
        if name:
            settings[part] = {**settings[part], name: value}
        else:
            settings[part] = value
    return CTCModule(**settings)


def test_init_from_takes_every_weight_but_the_feature_statistics(trained, tmp_path):
    from recognizer.initialization import initialize_from
    from recognizer.model import Model

    _, best = trained
    source = Model.load(best).encoder.state_dict()
    module = _module_like(best)
    fresh = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    line = initialize_from(best, module.encoder, module.tokenizer, module.frontend, module.hparams["encoder"])
    assert "output labels" in line and "new:" not in line
    for name, value in module.encoder.state_dict().items():
        if name.startswith("normalizer."):  # this run's own data sets them at fit start
            assert torch.equal(value, fresh[name]) and not bool(module.encoder.normalizer.initialized)
        else:
            assert torch.equal(value, source[name]), name
    # a model file is as good a starting point as the checkpoint
    model_file = Model.load(best).save(tmp_path / "model.pt")
    again = _module_like(best)
    initialize_from(model_file, again.encoder, again.tokenizer, again.frontend, again.hparams["encoder"])
    assert torch.equal(again.encoder.output.weight, module.encoder.output.weight)


def test_init_from_matches_output_rows_label_by_label(trained):
    from recognizer.model import Model

    _, best = trained
    source = Model.load(best)
    theirs = source.tokenizer
    assert theirs.alphabet == theirs.alphabet.lower()  # the demo corpus is lower case
    # another alphabet: upper case (matched across case), one character fewer and two new
    dropped = theirs.alphabet[-1]
    alphabet = "".join(sorted(set(theirs.alphabet.upper()) - {dropped.upper()} | {"#", "@"}))
    module = _module_like(best, **{"tokenizer.alphabet": alphabet, "tokenizer.case": "upper"}, init_from=str(best))
    ours = module.tokenizer
    weight, stored = module.encoder.output.weight, source.encoder.output.weight
    assert weight.shape[0] == len(alphabet) + 1 != stored.shape[0]
    assert torch.equal(weight[0], stored[0])  # the blank
    for i, char in enumerate(alphabet, start=1):
        if char in "#@":
            assert not any(torch.equal(weight[i], row) for row in stored)  # a fresh row
        else:
            j = theirs.tokens.index(char.lower())
            assert torch.equal(weight[i], stored[j]) and torch.equal(
                module.encoder.output.bias[i], source.encoder.output.bias[j]
            )
    assert ours.alphabet == alphabet


def test_init_from_refuses_another_encoder_naming_the_file_and_weight(trained, tmp_path):
    from recognizer.artifacts import CheckpointError

    _, best = trained
    start = tmp_path / "model.ckpt"
    shutil.copy(best, start)
    settings = torch.load(best, weights_only=True)["hyper_parameters"]["encoder"]

    def encoder(**changes):
        return {**settings, "init_args": {**settings["init_args"], **changes}}

    wider = r"model\.ckpt: its rnn\.forward_layers\.0\.weight_ih_l0 is \(128, 240\), this run's \(192, 240\)"
    with pytest.raises(CheckpointError, match=wider):
        _module_like(best, encoder=encoder(hidden_size=48), init_from=str(start))
    with pytest.raises(CheckpointError, match=r"model\.ckpt: has no rnn\.forward_layers\.2"):
        _module_like(best, encoder=encoder(num_layers=3), init_from=str(start))
    shallower = r"model\.ckpt: its rnn\.forward_layers\.1\.weight_ih_l0 has no place in this run's encoder"
    with pytest.raises(CheckpointError, match=shallower):  # not a silent partial load
        _module_like(best, encoder=encoder(num_layers=1), init_from=str(start))
    with pytest.raises(
        CheckpointError, match=r"its intermediate_output\.weight has no place|has no intermediate_output"
    ):
        _module_like(best, encoder=encoder(intermediate_ctc=1), init_from=str(start))
    with pytest.raises(CheckpointError, match="model.ckpt: its encoder's residual is False, this run's True"):
        _module_like(best, encoder=encoder(residual=True), init_from=str(start))  # same weights, other sums
    _module_like(best, encoder=encoder(dropout=0.1), init_from=str(start))  # training-only settings may differ
    _module_like(best, encoder=encoder(weight_drop=0.2), init_from=str(start))
    with pytest.raises(CheckpointError, match=r"model\.ckpt: its rnn\.forward_layers\.0\.weight_ih_l0 has no place"):
        _module_like(best, encoder=encoder(conv_layers=1), init_from=str(start))
    lstm_settings = {k: v for k, v in settings["init_args"].items() if k in encoder_settings(LSTMEncoder)}
    lstm = {"class_path": "recognizer.encoders.LSTMEncoder", "init_args": lstm_settings}
    with pytest.raises(CheckpointError, match="its encoder is a BLSTMEncoder, this run's a LSTMEncoder"):
        _module_like(best, encoder=lstm, init_from=str(start))
    with pytest.raises(CheckpointError, match="missing.ckpt"):
        _module_like(best, init_from=str(tmp_path / "missing.ckpt"))
    ink = {"modality": "ink", "class_path": "recognizer.ink.frontend.InkFrontend"}
    with pytest.raises(CheckpointError, match="model.ckpt: its front-end reads audio, this run's ink"):
        _module_like(best, frontend=ink, init_from=str(start))


def test_fit_from_a_trained_model_gives_a_checkpoint_that_stands_alone(trained, tiny_speech, tmp_path, caplog):
    import recognizer

    _, best = trained
    start = tmp_path / "start.ckpt"
    shutil.copy(best, start)
    with caplog.at_level(logging.INFO):
        cli = run_cli(["fit", *tiny_args(tiny_speech, tmp_path / "fit", "--model.init_from", str(start))])
    assert f"initialized from {start}" in caplog.text
    scratch = run_cli(["fit", *tiny_args(tiny_speech, tmp_path / "scratch")])
    assert logged(cli, "train_loss")[0] < 0.8 * logged(scratch, "train_loss")[0]  # it starts where training left off
    fine_tuned = Path(cli.trainer.checkpoint_callback.best_model_path)
    assert "init_from" not in torch.load(fine_tuned, weights_only=True)["hyper_parameters"]
    start.unlink()  # the starting point is not needed any more: not to load, validate or resume
    entries = read_manifest(tiny_speech["test"], path_key="audio_filepath")[:2]
    assert recognizer.load(fine_tuned).transcribe([e["audio_filepath"] for e in entries])[0].error is None
    run_cli(
        [
            "validate",
            *tiny_args(tiny_speech, tmp_path / "val", "--model.init_from", str(start)),
            "--ckpt_path",
            str(fine_tuned),
        ]
    )
