"""Streaming: the latency-controlled BLSTM, incremental log-mel, and sessions equal to the offline model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recognizer.audio import AudioFrontend, LogMelStream, load_audio, log_mel
from recognizer.encoders import build_encoder, encoder_config
from recognizer.model import Model
from recognizer.transcribe import Recognizer

ALPHABET = " ABCDEFGHIJKLMNOPQRSTUVWXYZ'"
LCBLSTM = {
    "class_path": "recognizer.encoders.LCBLSTMEncoder",
    "init_args": {"hidden_size": 24, "num_layers": 3, "chunk_size": 4, "right_context": 2},
}
LSTM = {"class_path": "recognizer.encoders.LSTMEncoder", "init_args": {"hidden_size": 24, "num_layers": 2}}
#: a stream against the whole input: the same operations on pieces (float32 rounding only)
STREAM_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def an4_file(shared_data) -> Path:
    return sorted((shared_data("an4") / "wav" / "an4_clstk").rglob("*.wav"))[7]


def pieces(waveform: np.ndarray, seed: int, largest: int = 4000) -> list[np.ndarray]:
    """The waveform cut at random places (pieces of 1 to ``largest`` samples)."""
    rng, out, start = np.random.default_rng(seed), [], 0
    while start < len(waveform):
        size = int(rng.integers(1, largest))
        out.append(waveform[start : start + size])
        start += size
    return out


def model_with(encoder: dict, frontend: AudioFrontend, waveform: torch.Tensor) -> Model:
    torch.manual_seed(0)
    model = Model({"alphabet": ALPHABET}, frontend.config(), encoder)
    features = frontend.features(waveform)
    model.encoder.normalizer.set_statistics(features.mean(0), features.std(0))
    with torch.no_grad():
        model.encoder.output.weight.mul_(8)  # clear paths, so that texts compare
    return model.eval()


def test_lcblstm_is_exact_under_padding_and_looks_ahead_only_its_right_context():
    torch.manual_seed(0)
    encoder = build_encoder(encoder_config(LCBLSTM), 10, 7).eval()
    x, lengths = torch.randn(3, 41, 10), torch.tensor([41, 30, 7])
    with torch.no_grad():
        out, out_lengths = encoder(x, lengths)
        for i in range(3):
            alone, _ = encoder(x[i : i + 1, : lengths[i]], lengths[i : i + 1])
            assert (alone[0] - out[i, : out_lengths[i]]).abs().max().item() <= 1e-5
        # changing input frame 24 (output frame 8, in the chunk of frames 8-11) changes no output before
        # frame 6: chunk 4-7 reads up to its right context, frame 9; chunk 0-3 up to frame 5
        changed = x.clone()
        changed[0, 24] += 1.0
        other, _ = encoder(changed, lengths)
    differs = (other[0] - out[0]).abs().amax(-1) > 1e-6
    assert not differs[:4].any() and differs[4:8].any() and differs[8]
    # intermediate CTC taps a layer's chunk outputs like the BLSTM's
    tapped = build_encoder(
        encoder_config({**LCBLSTM, "init_args": {**LCBLSTM["init_args"], "intermediate_ctc": 2}}), 10, 7
    )
    final, final_lengths, (auxiliary,) = tapped.eval().forward_auxiliary(x, lengths)
    assert auxiliary.shape == final.shape and final_lengths.tolist() == out_lengths.tolist()


def test_lcblstm_has_the_blstms_weights_and_settings():
    encoder = build_encoder(encoder_config(LCBLSTM), 10, 7)
    blstm = build_encoder(
        encoder_config(
            {
                **LCBLSTM,
                "class_path": "recognizer.encoders.BLSTMEncoder",
                "init_args": {"hidden_size": 24, "num_layers": 3},
            }
        ),
        10,
        7,
    )
    assert encoder.state_dict().keys() == blstm.state_dict().keys()
    settings = encoder_config(LCBLSTM)["init_args"]
    assert settings["chunk_size"] == 4 and settings["right_context"] == 2 and settings["stride"] == 3
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        build_encoder(encoder_config({**LCBLSTM, "init_args": {"chunk_size": 0}}), 10, 7)


def test_an_lcblstm_model_exports_as_a_model_file_not_onnx(tmp_path):
    from recognizer.export import export_onnx

    frontend = AudioFrontend()
    model = Model({"alphabet": ALPHABET}, frontend.config(), LCBLSTM)
    with pytest.raises(ValueError, match="LCBLSTMEncoder cannot be exported to ONNX yet"):
        export_onnx(model, tmp_path / "m.onnx")
    assert Model.load(model.save(tmp_path / "m.pt")).encoder.rnn.chunk_size == 4


def test_log_mel_in_pieces_is_log_mel(an4_file):
    waveform = load_audio(an4_file)
    stream = LogMelStream()
    frames = [stream.feed(torch.from_numpy(piece)) for piece in pieces(waveform.numpy(), seed=1)]
    streamed = torch.cat([*frames, stream.finish()])
    offline = log_mel(waveform)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="too short"):
        tiny = LogMelStream()
        tiny.feed(torch.zeros(100))
        tiny.finish()


@pytest.mark.parametrize(
    "encoder, decoder", [(LCBLSTM, "greedy"), (LSTM, "greedy"), (LCBLSTM, "beam")], ids=["lcblstm", "lstm", "beam"]
)
def test_a_stream_gives_the_offline_models_output_and_text(encoder, decoder, an4_file):
    frontend = AudioFrontend()
    waveform = frontend.load(an4_file)
    recognizer = Recognizer(model_with(encoder, frontend, waveform))
    (offline,) = recognizer.log_probs([an4_file])
    session = recognizer.stream(decoder)
    partials = [session.feed(piece) for piece in pieces(waveform.numpy(), seed=2)]
    transcript = session.finish()
    streamed = torch.cat(session.final)
    assert streamed.shape == offline.shape
    assert (streamed - offline).abs().max().item() <= STREAM_TOLERANCE
    assert transcript.text == recognizer.transcribe([an4_file], decoder)[0].text != ""
    # the search carried over the pieces reads what the decoder reads offline
    assert recognizer.tokenizer.decode(session.reading.best()) == transcript.text
    # stable text only grows, and is always where the best reading starts
    stables = [p.stable for p in partials]
    assert all(b.startswith(a) for a, b in zip(stables, stables[1:]))
    assert all(p.text.startswith(p.stable) for p in partials)
    assert partials[-1].frames <= streamed.shape[0] and transcript.text.startswith(stables[-1])
    with pytest.raises(ValueError, match="finished"):
        session.feed(waveform.numpy()[:100])


def test_a_stream_decodes_its_end_with_the_sessions_decoder(an4_file):
    frontend = AudioFrontend()
    waveform = frontend.load(an4_file)
    recognizer = Recognizer(model_with(LCBLSTM, frontend, waveform))
    session = recognizer.stream("beam", beam_size=4, nbest=2)
    assert session.feed(np.zeros(0, dtype=np.int16)).frames == 0  # an empty read is nothing new
    for piece in pieces((waveform.numpy() * 32767).astype(np.int16), seed=3):  # PCM integers work too
        session.feed(piece)
    transcript = session.finish()
    # (an untrained model's beam hangs on differences below the stream's rounding: decode what it streamed)
    (expected,) = recognizer.decode_log_probs([torch.cat(session.final)], "beam", beam_size=4, nbest=2)
    assert transcript.text == expected.text and transcript.nbest == expected.nbest and len(transcript.nbest) == 2


def test_models_that_cannot_stream_say_why(an4_file):
    frontend = AudioFrontend()
    waveform = frontend.load(an4_file)
    blstm = Recognizer(
        model_with(
            {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden_size": 24, "num_layers": 2}},
            frontend,
            waveform,
        )
    )
    with pytest.raises(ValueError, match="BLSTMEncoder reads whole inputs and cannot stream"):
        blstm.stream()
    normalized = AudioFrontend(utterance_norm="mean")
    with pytest.raises(ValueError, match="utterance_norm 'mean' needs the whole utterance"):
        Recognizer(model_with(LCBLSTM, normalized, waveform)).stream()


def test_transcribe_command_streams_files_and_standard_input(an4_file, tmp_path):
    import json
    import subprocess

    from test_training import BIN

    frontend = AudioFrontend()
    waveform = frontend.load(an4_file)
    path = model_with(LCBLSTM, frontend, waveform).save(tmp_path / "stream.pt")
    expected = Recognizer(Model.load(path)).transcribe([an4_file])[0].text
    command = [str(BIN / "recognizer-transcribe"), "--checkpoint", str(path), "--device", "cpu", "--stream"]
    run = subprocess.run([*command, "--chunk-ms", "50", str(an4_file)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{an4_file}\t{expected}"]
    partials = [line.split("\t", 1)[1] for line in run.stderr.splitlines() if line.startswith(str(an4_file))]
    assert len(partials) > 3 and partials[-1].replace("|", "").startswith(partials[0].split("|")[0])
    pcm = (waveform.numpy() * 32767).astype("<i2")
    out = tmp_path / "stdin.jsonl"
    run = subprocess.run(
        [*command, "--timestamps", "--output", str(out), "-"], input=pcm.tobytes(), capture_output=True
    )
    assert run.returncode == 0, run.stderr
    (row,) = [json.loads(line) for line in out.read_text().splitlines()]
    (offline,) = Recognizer(Model.load(path)).transcribe([pcm], timestamps=True)
    assert row["source"] == "-" and row["text"] == offline.text
    assert row["words"] == offline.to_dict()["words"] and row["words"]
    # a model that cannot stream: one line naming why, for each input (--on-error skip), exit 1
    blstm = model_with(
        {"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden_size": 24}}, frontend, waveform
    ).save(tmp_path / "blstm.pt")
    run = subprocess.run([*command[:2], str(blstm), "--stream", str(an4_file)], capture_output=True, text=True)
    assert run.returncode == 1 and "BLSTMEncoder reads whole inputs and cannot stream" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    "config, encoder",
    [("an4_lcblstm.yaml", "LCBLSTMEncoder"), ("an4_lstm.yaml", "LSTMEncoder")],
)
def test_streaming_configs_compose_with_the_an4_recipe(config, encoder):
    import subprocess

    from test_training import BIN, REPO

    configs = ["--config", str(REPO / "configs/speech/an4.yaml"), "--config", str(REPO / "configs/speech" / config)]
    run = subprocess.run(
        [BIN / "recognizer", "fit", *configs, "--print_config"], capture_output=True, text=True, cwd=REPO
    )
    assert run.returncode == 0, run.stderr
    assert f"recognizer.encoders.{encoder}" in run.stdout and "speed_factors" in run.stdout  # the recipe's data
