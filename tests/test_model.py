"""Encoders: the building blocks, the contract every built-in meets, settings and checkpoints."""

import json
import logging
import warnings
from functools import partial
from pathlib import Path

import pytest
import torch

from recognizer.checkpoint import read_checkpoint
from recognizer.encoders import BLSTMEncoder, Encoder, LCBLSTMEncoder, LSTMEncoder, build_encoder, encoder_config
from recognizer.encoders.layers import BLSTM, padding_mask, reverse_padded, stack_frames
from recognizer.lightning_module import cpu_runs_bfloat16_lstm

FIXTURES = Path(__file__).parent / "fixtures"
ENCODERS = [
    partial(BLSTMEncoder, hidden_size=32, num_layers=3, stack=3, stride=3, dropout=0.3),
    partial(BLSTMEncoder, hidden_size=32, num_layers=3, stack=3, stride=3, dropout=0.3, residual=True, layer_norm=True),
    partial(
        BLSTMEncoder, hidden_size=32, num_layers=2, stack=3, stride=3, conv_layers=2, conv_channels=24, conv_kernel=5
    ),
    partial(BLSTMEncoder, hidden_size=32, num_layers=2, stack=3, stride=3, conv_layers=1, spectral_channels=6),
    partial(LSTMEncoder, hidden_size=32, num_layers=3, stack=3, stride=3, dropout=0.3),
    partial(
        LCBLSTMEncoder, hidden_size=32, num_layers=3, stack=3, stride=3, dropout=0.3, chunk_size=8, right_context=3
    ),
]
ENCODER_IDS = ["blstm", "blstm-residual-norm", "blstm-conv", "blstm-spectral", "lstm", "lcblstm"]


def test_stack_frames_covers_every_frame():
    x = torch.arange(7.0).view(1, 7, 1)
    stacked, lengths = stack_frames(x, torch.tensor([7]), stack=3, stride=3)
    assert lengths.tolist() == [3]
    assert stacked[0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 0, 0]]


def test_reverse_padded_keeps_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 4]]).unsqueeze(-1)
    assert reverse_padded(x, torch.tensor([3, 4])).squeeze(-1).tolist() == [[3, 2, 1, 0], [4, 3, 2, 1]]


@pytest.mark.parametrize("make", ENCODERS, ids=ENCODER_IDS)
def test_outputs_are_the_same_alone_and_in_a_padded_batch(make):
    torch.manual_seed(0)
    model = make(20, 12).eval()
    model.normalizer.set_statistics(torch.randn(20), torch.rand(20) + 0.5)  # padding must not leak through it either
    lengths = torch.tensor([40, 301, 123, 5, 2])
    features = torch.randn(len(lengths), int(lengths.max()), 20)
    features = features * (torch.arange(features.shape[1])[None, :, None] < lengths[:, None, None])
    log_probs, out_lengths = model(features, lengths)
    assert out_lengths.tolist() == [14, 101, 41, 2, 1] == model.output_lengths(lengths).tolist()
    for i, length in enumerate(lengths):
        alone, alone_length = model(features[i : i + 1, :length], lengths[i : i + 1])
        assert alone_length.item() == out_lengths[i].item()
        torch.testing.assert_close(log_probs[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [BLSTMEncoder, LSTMEncoder, LCBLSTMEncoder])
def test_log_probabilities_normalize(cls):
    model = cls(input_dim=8, vocab_size=5, hidden_size=8, num_layers=1).eval()
    log_probs, _ = model(torch.randn(2, 9, 8), torch.tensor([9, 4]))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 3))


@pytest.mark.skipif(not cpu_runs_bfloat16_lstm(), reason="this CPU has no bfloat16 LSTM (no AVX-512)")
@pytest.mark.parametrize("make", ENCODERS, ids=ENCODER_IDS)
def test_bfloat16_autocast_gives_float32_log_probabilities_close_to_float32(make):
    """bf16-mixed training runs the layers in bfloat16; the log-probabilities stay float32 (CTC needs
    them), stay normalized, stay padding-exact up to bfloat16 rounding, and stay close to float32's."""
    torch.manual_seed(0)
    model = make(20, 12).eval()
    model.normalizer.set_statistics(torch.randn(20), torch.rand(20) + 0.5)
    lengths = torch.tensor([40, 301, 123])
    features = torch.randn(len(lengths), int(lengths.max()), 20)
    features = features * (torch.arange(features.shape[1])[None, :, None] < lengths[:, None, None])
    reference, _ = model(features, lengths)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs, out_lengths = model(features, lengths)
        alone, _ = model(features[:1, :40], lengths[:1])
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones_like(log_probs[..., 0]))
    real = padding_mask(out_lengths, log_probs.shape[1])
    assert (log_probs.exp() - reference.exp())[real].abs().max() < 0.05
    assert (log_probs[0, : out_lengths[0]].exp() - alone[0].exp()).abs().max() < 0.05


def test_intermediate_ctc_output_is_trained_but_not_transcribed():
    torch.manual_seed(0)
    plain = BLSTMEncoder(20, 12, hidden_size=16, num_layers=3).eval()
    model = BLSTMEncoder(20, 12, hidden_size=16, num_layers=3, intermediate_ctc=2, intermediate_weight=0.4).eval()
    assert model.auxiliary_weight == 0.4 and plain.auxiliary_weight == 0.0
    assert set(model.state_dict()) - set(plain.state_dict()) == {
        "intermediate_output.weight",
        "intermediate_output.bias",
    }
    model.load_state_dict(plain.state_dict(), strict=False)
    lengths = torch.tensor([30, 12])
    features = torch.randn(2, 30, 20) * (torch.arange(30)[None, :, None] < lengths[:, None, None])
    log_probs, out_lengths, auxiliary = model.forward_auxiliary(features, lengths)
    torch.testing.assert_close(log_probs, plain(features, lengths)[0])  # the head changes nothing downstream
    torch.testing.assert_close(model(features, lengths)[0], log_probs)
    assert len(auxiliary) == 1 and auxiliary[0].shape == log_probs.shape
    torch.testing.assert_close(auxiliary[0].exp().sum(-1), torch.ones(2, 10))
    alone = model.forward_auxiliary(features[1:, :12], lengths[1:])[2][0]
    torch.testing.assert_close(auxiliary[0][1, : out_lengths[1]], alone[0], atol=1e-5, rtol=1e-5)
    assert plain.forward_auxiliary(features, lengths)[2] == []


@pytest.mark.parametrize(
    "make, message",
    [
        (partial(BLSTMEncoder, num_layers=3, intermediate_ctc=3), "intermediate_ctc must name a layer below the last"),
        (partial(BLSTMEncoder, intermediate_ctc=-1), "intermediate_ctc must name a layer"),
        (
            partial(BLSTMEncoder, intermediate_ctc=1, intermediate_weight=1.0),
            r"intermediate_weight must be in \[0, 1\)",
        ),
        (partial(LSTMEncoder, intermediate_ctc=1), "LSTMEncoder has no intermediate_ctc"),
    ],
)
def test_bad_intermediate_ctc_settings_are_one_line_errors(make, message):
    with pytest.raises(ValueError, match=message):
        make(8, 5)


def test_time_convolution_reads_its_kernel_around_each_frame_and_feeds_the_blstm():
    encoder = BLSTMEncoder(4, 5, hidden_size=6, num_layers=1, stack=2, stride=2, conv_layers=2, conv_kernel=3).eval()
    convolution = encoder.rnn.convolution
    assert [c.in_channels for c in convolution.convs] == [8, 256] and encoder.rnn.recurrent.forward_layers[
        0
    ].input_size == 256
    x = torch.randn(1, 9, 8)
    changed = x.clone()
    changed[:, 8] += 1.0  # two layers of width 3 see two frames either side: frames 0-5 cannot change
    before, after = convolution(x, torch.tensor([9])), convolution(changed, torch.tensor([9]))
    torch.testing.assert_close(before[:, :6], after[:, :6])
    assert not torch.allclose(before[:, 6:], after[:, 6:])
    assert (convolution(x, torch.tensor([4]))[:, 4:] == 0).all()  # padded frames come out zero


def test_spectral_convolution_reads_the_stacked_frames_and_neighbouring_bins():
    torch.manual_seed(0)
    encoder = BLSTMEncoder(10, 5, hidden_size=6, num_layers=1, stack=3, stride=2, spectral_channels=4).eval()
    spectral = encoder.subsampling
    # 10 bins -> 5 -> 3 per channel, and the first BLSTM layer reads them all
    assert spectral.output_size == 12 == encoder.rnn.forward_layers[0].input_size
    x, lengths = torch.randn(1, 9, 10), torch.tensor([9])
    before, out_lengths = spectral(x, lengths)
    assert before.shape == (1, 5, 12) and out_lengths.tolist() == [5] == encoder.output_lengths(lengths).tolist()
    changed = x.clone()
    changed[:, 8, 9] += 1.0  # the last frame's top bin
    after, _ = spectral(changed, lengths)
    # output frame j reads input frames 2j..2j+2 in the first layer, output frames j-1..j+1 in the second:
    # frame 8 is read by frame 3 and 4 (2 x 4 = 8; 2 x 3 + 2 = 8), so frames 0-1 cannot change; and
    # the top bin reaches only the top output bins of each channel
    torch.testing.assert_close(before[:, :2], after[:, :2])
    assert not torch.allclose(before[:, 2:], after[:, 2:])
    by_bin_before, by_bin_after = before.view(1, 5, 4, 3), after.view(1, 5, 4, 3)
    torch.testing.assert_close(by_bin_before[..., :2], by_bin_after[..., :2])
    assert not torch.allclose(by_bin_before[..., 2], by_bin_after[..., 2])
    assert (spectral(x, torch.tensor([4]))[0][:, 2:] == 0).all()  # padded frames come out zero


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"spectral_channels": -1}, "spectral_channels must be >= 0"),
        ({"conv_layers": -1}, "conv_layers must be >= 0"),
        ({"conv_layers": 1, "conv_kernel": 4}, "an odd kernel"),
        ({"conv_layers": 1, "conv_channels": 0}, "channels >= 1"),
    ],
)
def test_bad_convolution_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        BLSTMEncoder(8, 5, **settings)


def test_cpu_bfloat16_support_is_reported(monkeypatch, caplog):
    from recognizer import lightning_module

    monkeypatch.setattr(lightning_module, "cpu_has_native_bfloat16", lambda: True)
    with caplog.at_level(logging.INFO):
        lightning_module.report_cpu_bfloat16()
    assert "native bfloat16" in caplog.text
    monkeypatch.setattr(lightning_module, "cpu_has_native_bfloat16", lambda: False)
    monkeypatch.setattr(lightning_module, "cpu_runs_bfloat16_lstm", lambda: True)
    with pytest.warns(UserWarning, match="no native bfloat16 .* emulated and slower .* 32-true"):
        lightning_module.report_cpu_bfloat16()
    monkeypatch.setattr(lightning_module, "cpu_runs_bfloat16_lstm", lambda: False)
    with pytest.raises(RuntimeError, match="no bfloat16 LSTM .* 32-true"):
        lightning_module.report_cpu_bfloat16()


@pytest.mark.parametrize(
    ("precision", "accelerator", "native", "expected"),
    [
        ("bf16-mixed", "cpu", True, "bf16-mixed"),
        ("bf16-mixed", "cpu", False, "32-true"),
        ("bf16-true", "auto", False, "32-true" if not torch.cuda.is_available() else "bf16-true"),
        ("bf16-mixed", "gpu", False, "bf16-mixed"),
        ("32-true", "cpu", False, "32-true"),
    ],
)
def test_training_precision_falls_back_to_float32_without_native_bfloat16(
    monkeypatch, precision, accelerator, native, expected
):
    from recognizer import lightning_module

    monkeypatch.setattr(lightning_module, "cpu_has_native_bfloat16", lambda: native)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert lightning_module.training_precision(precision, accelerator) == expected
    assert any("training in float32" in str(w.message) for w in caught) == (expected != precision)


def test_unidirectional_outputs_do_not_look_ahead():
    torch.manual_seed(0)
    model = LSTMEncoder(6, 5, hidden_size=8, num_layers=2, stack=2, stride=2).eval()
    features = torch.randn(1, 20, 6)
    changed = features.clone()
    changed[:, 10:] = torch.randn(1, 10, 6)  # only the future of output frame 4 changes
    before, _ = model(features, torch.tensor([20]))
    after, _ = model(changed, torch.tensor([20]))
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_config_spells_out_every_setting_and_rebuilds():
    config = encoder_config({"class_path": "recognizer.encoders.LSTMEncoder", "init_args": {"hidden_size": 16}})
    assert config == {
        "class_path": "recognizer.encoders.LSTMEncoder",
        "init_args": {
            **{"hidden_size": 16, "num_layers": 4, "stack": 3, "stride": 3, "dropout": 0.2},
            **{"intermediate_ctc": 0, "intermediate_weight": 0.3},
        },
    }
    assert encoder_config(partial(LSTMEncoder, hidden_size=16)) == config  # jsonargparse's form
    assert encoder_config(None)["class_path"] == "recognizer.encoders.BLSTMEncoder"
    encoder = build_encoder(config, input_dim=4, vocab_size=7)
    assert isinstance(encoder, LSTMEncoder) and encoder.stride == 3 and encoder.output.out_features == 7


@pytest.mark.parametrize(
    "config, message",
    [
        ({"class_path": "torch.nn.Linear"}, "does not name a subclass of recognizer.encoders.Encoder"),
        ({"class_path": "no.such.Module"}, "not imported"),
        ({"class_path": "recognizer.no_such_module.Encoder"}, "cannot import"),
        ({"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": {"hidden": 8}}, "no setting hidden"),
        ({"init_args": {}}, "class_path, init_args"),
    ],
)
def test_bad_encoder_settings_are_one_line_errors(config, message):
    with pytest.raises(ValueError, match=message):
        encoder_config(config)


def test_stack_smaller_than_stride_is_refused():
    with pytest.raises(ValueError, match="stride"):
        BLSTMEncoder(4, 5, stack=2, stride=3)


class TinyConvEncoder(Encoder):
    """A toy encoder in a few lines: all it takes to add one."""

    stride = 2

    def __init__(self, input_dim: int, vocab_size: int, channels: int = 8) -> None:
        super().__init__(input_dim, vocab_size)
        self.conv = torch.nn.Conv1d(input_dim, vocab_size, kernel_size=2, stride=2)

    def output_lengths(self, lengths):
        return lengths // 2

    def forward(self, features, lengths):
        x = self.conv(self.normalize(features, lengths).transpose(1, 2)).transpose(1, 2)
        return x.log_softmax(-1), self.output_lengths(lengths)


def test_an_encoder_defined_anywhere_is_built_from_its_class_path():
    config = encoder_config({"class_path": f"{__name__}.TinyConvEncoder", "init_args": {}})
    assert config["init_args"] == {"channels": 8}
    encoder = build_encoder(config, 3, 5)
    log_probs, lengths = encoder(torch.randn(2, 10, 3), torch.tensor([10, 6]))
    assert log_probs.shape == (2, 5, 5) and lengths.tolist() == [5, 3]


class WideBLSTMEncoder(BLSTMEncoder):
    """A variant that adds one setting and passes the rest on: its settings are its base's and its own."""

    def __init__(self, input_dim: int, vocab_size: int, *, widen: int = 2, hidden_size: int = 8, **kwargs) -> None:
        self.widen = widen
        super().__init__(input_dim, vocab_size, hidden_size=hidden_size * widen, **kwargs)


def test_settings_passed_on_with_kwargs_are_the_base_classes_in_its_order():
    config = encoder_config({"class_path": f"{__name__}.WideBLSTMEncoder", "init_args": {"num_layers": 2}})
    names, base = list(config["init_args"]), list(encoder_config(BLSTMEncoder)["init_args"])
    assert names == [*base, "widen"]
    assert config["init_args"]["hidden_size"] == 8  # the subclass's default replaces the base's 320
    assert config["init_args"]["num_layers"] == 2 and config["init_args"]["residual"] is False
    encoder = build_encoder(config, 4, 5)
    assert encoder.rnn.forward_layers[0].hidden_size == 16 and len(encoder.rnn.forward_layers) == 2
    with pytest.raises(ValueError, match="no setting hidden; its settings: hidden_size, num_layers"):
        encoder_config({"class_path": f"{__name__}.WideBLSTMEncoder", "init_args": {"hidden": 8}})


def test_checkpoint_of_the_first_format_reads_as_today():
    checkpoint = read_checkpoint(FIXTURES / "speech-v0.ckpt")
    hparams = checkpoint["hyper_parameters"]
    assert hparams["encoder"] == {
        "class_path": "recognizer.encoders.BLSTMEncoder",
        "init_args": {
            **{"hidden_size": 32, "num_layers": 2, "stack": 3, "stride": 3, "dropout": 0.1},
            # settings added later: their defaults
            **{"intermediate_ctc": 0, "intermediate_weight": 0.3, "residual": False, "layer_norm": False},
            **{
                "weight_drop": 0.0,
                "dropout_after_norm": False,
                "conv_layers": 0,
                "conv_channels": 256,
                "conv_kernel": 3,
                "spectral_channels": 0,
            },
        },
    }
    assert not {"hidden_size", "num_layers", "stack", "stride", "dropout"} & set(hparams)
    assert all(key.startswith(("encoder.", "metrics.")) for key in checkpoint["state_dict"]), list(
        checkpoint["state_dict"]
    )


def test_checkpoint_of_the_first_format_transcribes_identically():
    import recognizer

    model = recognizer.load(FIXTURES / "speech-v0.ckpt", device="cpu")
    files = [str(FIXTURES / f"speech-v0-{i}.wav") for i in range(3)]
    expected = json.loads((FIXTURES / "speech-v0-expected.json").read_text())
    for got, want in zip(model.log_probs(files), torch.load(FIXTURES / "speech-v0-log-probs.pt")):
        # the same network: only the last bits differ between CPU instruction sets (AVX2, AVX-512)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert [t.text for t in model.transcribe(files)] == expected["greedy"]
    assert [t.text for t in model.transcribe(files, "beam")] == expected["beam"]
    assert [t.words for t in model.transcribe(files, timestamps=True)] == expected["timestamps"]


def test_lightning_load_from_checkpoint_reads_the_first_format():
    from recognizer.lightning_module import CTCModule

    module = CTCModule.load_from_checkpoint(FIXTURES / "speech-v0.ckpt")
    assert isinstance(module.encoder, BLSTMEncoder) and module.hparams["encoder"]["init_args"]["hidden_size"] == 32
    with pytest.raises(ValueError, match="takes no settings"):
        CTCModule.load_from_checkpoint(FIXTURES / "speech-v0.ckpt", lr=1.0)


@pytest.mark.parametrize(
    "encoder, message",
    [
        (None, "encoder settings are unusable"),
        ("recognizer.encoders.BLSTMEncoder", "encoder settings are unusable"),
        ({"class_path": "recognizer.encoders.BLSTMEncoder", "init_args": [1]}, "init_args"),
        ({"class_path": "..x", "init_args": {}}, "unusable"),
        ({"class_path": 3, "init_args": {}}, "class_path is a string"),
        ({"class_path": "antigravity.Fly", "init_args": {}}, "not imported"),
        ({"class_path": "recognizer.encoders.LSTMEncoder", "init_args": {"hidden_size": 32}}, "do not fit"),
    ],
)
def test_checkpoint_with_unusable_encoder_settings_is_a_one_line_error(tmp_path, encoder, message):
    import sys

    from recognizer import load
    from recognizer.checkpoint import CheckpointError

    checkpoint = torch.load(FIXTURES / "speech-v0.ckpt", weights_only=True)
    checkpoint["hyper_parameters"]["encoder"] = encoder
    path = tmp_path / "bad.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match=message) as error:
        load(path, device="cpu")
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert "antigravity" not in sys.modules  # a checkpoint never makes us import a module


def test_residual_and_layer_norm_compute_the_pre_norm_residual_stack():
    """Each layer from the second: input + BLSTM(LayerNorm_i(input)); then a last LayerNorm. Checked
    against that formula written out (full-length inputs: the backward direction is a plain flip),
    with random norm gains and biases so that every norm, and which one is used where, matters."""
    torch.manual_seed(0)
    stack = BLSTM(6, 4, num_layers=3, residual=True, layer_norm=True).eval()
    with torch.no_grad():
        for norm in stack.norms:
            norm.weight.uniform_(0.5, 2.0), norm.bias.normal_()
    x = torch.randn(2, 7, 6)

    def bidirectional(layer, inputs):
        ahead, _ = stack.forward_layers[layer](inputs)
        behind, _ = stack.backward_layers[layer](inputs.flip(1))
        return torch.cat([ahead, behind.flip(1)], dim=-1)

    with torch.no_grad():
        expected = bidirectional(0, x)
        for layer in (1, 2):
            expected = expected + bidirectional(layer, stack.norms[layer - 1](expected))
        expected = stack.norms[2](expected)
        output, tapped = stack(x, torch.tensor([7, 7]), tap=2)
    torch.testing.assert_close(output, expected, atol=1e-5, rtol=1e-5)
    assert tapped is not None and tapped.shape == output.shape
    plain = BLSTM(6, 4, num_layers=3)
    assert set(stack.state_dict()) - set(plain.state_dict()) == {
        f"norms.{i}.{w}" for i in range(3) for w in ("weight", "bias")
    }


def test_weight_drop_masks_recurrent_weights_in_training_only():
    """DropConnect on the hidden-to-hidden weights: in training a fraction p of them gets no gradient
    (the mask holds for the whole batch and every time step); in evaluation the stack computes exactly
    what the same weights compute without the option."""
    torch.manual_seed(0)
    stack = BLSTM(6, 16, num_layers=2, weight_drop=0.5)
    plain = BLSTM(6, 16, num_layers=2)
    plain.load_state_dict(stack.state_dict())  # no parameter of its own
    x, lengths = torch.randn(3, 9, 6), torch.tensor([9, 5, 2])
    stack.eval(), plain.eval()
    torch.testing.assert_close(stack(x, lengths)[0], plain(x, lengths)[0], rtol=0, atol=0)

    stack.train()
    output, _ = stack(x, lengths)
    assert not torch.allclose(output, plain(x, lengths)[0])
    output.pow(2).sum().backward()
    for lstm in (*stack.forward_layers, *stack.backward_layers):
        dropped = (lstm.weight_hh_l0.grad == 0).float().mean().item()
        assert 0.4 < dropped < 0.6, dropped  # about p; a whole-batch mask, so exactly zero where dropped
        assert (lstm.weight_ih_l0.grad != 0).float().mean() > 0.99  # input weights are not dropped
    with pytest.raises(ValueError, match="weight_drop must be in"):
        BLSTM(6, 16, num_layers=2, weight_drop=1.0)


def test_dropout_after_norm_drops_the_normalized_input_and_changes_no_inference():
    torch.manual_seed(0)
    after = BLSTM(6, 8, num_layers=3, dropout=0.5, residual=True, layer_norm=True, dropout_after_norm=True)
    before = BLSTM(6, 8, num_layers=3, dropout=0.5, residual=True, layer_norm=True)
    before.load_state_dict(after.state_dict())
    x, lengths = torch.randn(3, 9, 6), torch.tensor([9, 5, 2])
    torch.testing.assert_close(after.eval()(x, lengths)[0], before.eval()(x, lengths)[0], rtol=0, atol=0)

    hidden = torch.randn(4, 9, 16)
    dropped = after.train()._layer_input(hidden, 2)
    kept = dropped != 0
    assert 0.3 < kept.float().mean() < 0.7  # zeros where dropout struck: it came last
    torch.testing.assert_close(dropped[kept], (after.norms[1](hidden) / 0.5)[kept])
    assert (before.train()._layer_input(hidden, 2) != 0).all()  # the norm after dropout fills the zeros
    with pytest.raises(ValueError, match="dropout_after_norm needs layer_norm"):
        BLSTM(6, 8, num_layers=2, dropout_after_norm=True)
