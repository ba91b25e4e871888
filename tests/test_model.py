import torch

from recognizer.model import Encoder, reverse_padded, stack_frames


def test_stack_frames_covers_every_frame():
    x = torch.arange(7.0).view(1, 7, 1)
    stacked, lengths = stack_frames(x, torch.tensor([7]), stack=3, stride=3)
    assert lengths.tolist() == [3]
    assert stacked[0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 0, 0]]


def test_reverse_padded_keeps_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [1, 2, 3, 4]]).unsqueeze(-1)
    assert reverse_padded(x, torch.tensor([3, 4])).squeeze(-1).tolist() == [[3, 2, 1, 0], [4, 3, 2, 1]]


def test_outputs_are_the_same_alone_and_in_a_padded_batch():
    torch.manual_seed(0)
    model = Encoder(input_dim=20, vocab_size=12, hidden_size=32, num_layers=3, stack=3, stride=3, dropout=0.3).eval()
    model.normalizer.set_statistics(torch.randn(20), torch.rand(20) + 0.5)  # padding must not leak through it either
    lengths = torch.tensor([40, 301, 123, 5, 2])
    features = torch.randn(len(lengths), int(lengths.max()), 20)
    features = features * (torch.arange(features.shape[1])[None, :, None] < lengths[:, None, None])
    log_probs, out_lengths = model(features, lengths)
    assert out_lengths.tolist() == [14, 101, 41, 2, 1]
    for i, length in enumerate(lengths):
        alone, alone_length = model(features[i : i + 1, :length], lengths[i : i + 1])
        assert alone_length.item() == out_lengths[i].item()
        torch.testing.assert_close(log_probs[i, : out_lengths[i]], alone[0], atol=1e-5, rtol=1e-5)


def test_log_probabilities_normalize():
    model = Encoder(input_dim=8, vocab_size=5, hidden_size=8, num_layers=1).eval()
    log_probs, _ = model(torch.randn(2, 9, 8), torch.tensor([9, 4]))
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(2, 3))
