"""Forced alignment against torchaudio, spans, words and unit conversion."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torchaudio.functional as AF

from recognizer.decoding import (
    AlignmentError,
    CharSpan,
    align_chars,
    align_words,
    forced_align,
    min_ctc_frames,
    scale_spans,
)
from recognizer.tokenizer import Tokenizer


def path_score(log_probs: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    return log_probs[: len(path)].gather(1, path[:, None].long()).sum()


def random_batch(rng: random.Random, gen: torch.Generator):
    """Random batch with continuous scores (no exact ties), repeats, exact fits and garbage padding."""
    batch, vocab = rng.randint(1, 5), rng.randint(2, 12)
    targets, lengths = [], []
    for _ in range(batch):
        size = rng.randint(1, 12)
        # A tiny vocabulary makes adjacent repeats frequent; sometimes force one.
        labels = [rng.randint(1, vocab - 1) for _ in range(size)]
        if size >= 2 and rng.random() < 0.3:
            labels[1] = labels[0]
        needed = min_ctc_frames(labels)
        lengths.append(needed if rng.random() < 0.3 else needed + rng.randint(1, 25))
        targets.append(labels)
    frames = max(lengths) + rng.randint(0, 5)
    log_probs = (3 * torch.randn(batch, frames, vocab, generator=gen, dtype=torch.float64)).log_softmax(-1)
    for b, n in enumerate(lengths):
        log_probs[b, n:] = 50 * torch.randn(frames - n, vocab, generator=gen, dtype=torch.float64)
    return log_probs, torch.tensor(lengths), targets


@pytest.mark.parametrize("seed", range(40))
def test_matches_torchaudio(seed: int) -> None:
    rng, gen = random.Random(seed), torch.Generator().manual_seed(seed)
    log_probs, lengths, targets = random_batch(rng, gen)
    paths = forced_align(log_probs, lengths, targets)
    for b, (path, labels) in enumerate(zip(paths, targets)):
        n = int(lengths[b])
        expected, scores = AF.forced_align(log_probs[b : b + 1, :n], torch.tensor([labels]))
        assert path.shape == (n,) and path.dtype == torch.long
        torch.testing.assert_close(path_score(log_probs[b], path), scores.sum(), rtol=1e-9, atol=1e-9)
        assert path.tolist() == expected[0].tolist()
        # The path spells the transcript.
        assert [x for i, x in enumerate(path.tolist()) if x and (i == 0 or x != path[i - 1])] == labels


def test_repeated_labels_exact_fit() -> None:
    log_probs = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0)).log_softmax(-1)
    (path,) = forced_align(log_probs, torch.tensor([3]), [[2, 2]])
    assert path.tolist() == [2, 0, 2]


def test_float32_and_tensor_targets() -> None:
    gen = torch.Generator().manual_seed(1)
    log_probs = (3 * torch.randn(2, 30, 6, generator=gen)).log_softmax(-1)
    targets = [torch.tensor([1, 2, 3, 3, 5]), torch.tensor([4, 4, 4])]
    paths = forced_align(log_probs, torch.tensor([30, 17]), targets)
    for b, (path, n) in enumerate(zip(paths, (30, 17))):
        expected, _ = AF.forced_align(log_probs[b : b + 1, :n], targets[b][None])
        assert path.tolist() == expected[0].tolist()


def test_batched_equals_one_at_a_time() -> None:
    rng, gen = random.Random(7), torch.Generator().manual_seed(7)
    log_probs, lengths, targets = random_batch(rng, gen)
    while len(targets) < 3:
        log_probs, lengths, targets = random_batch(rng, gen)
    batched = forced_align(log_probs, lengths, targets)
    for b, labels in enumerate(targets):
        n = int(lengths[b])
        (alone,) = forced_align(log_probs[b : b + 1, :n], lengths[b : b + 1], [labels])
        assert torch.equal(alone, batched[b])


def test_empty_transcript_is_all_blank() -> None:
    log_probs = torch.randn(2, 4, 3).log_softmax(-1)
    paths = forced_align(log_probs, torch.tensor([4, 0]), [[], []])
    assert paths[0].tolist() == [0, 0, 0, 0] and paths[1].numel() == 0
    assert [p.numel() for p in forced_align(torch.zeros(2, 0, 3), torch.tensor([0, 0]), [[], []])] == [0, 0]


class Spy(torch.Tensor):
    """Records every torch operation applied to it."""

    calls: list[str] = []

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        cls.calls.append(getattr(func, "__name__", str(func)))
        return super().__torch_function__(func, types, args, kwargs or {})


def test_infeasible_raises_before_any_work() -> None:
    log_probs = torch.randn(3, 4, 5).log_softmax(-1).as_subclass(Spy)
    Spy.calls.clear()
    with pytest.raises(AlignmentError, match=r"utterance 2: 2 frames .*CTC needs at least 3 frames"):
        forced_align(log_probs, torch.tensor([4, 4, 2]), [[1], [1, 2, 3], [2, 2]])
    assert set(Spy.calls) <= {"__get__"}  # only .shape was read
    with pytest.raises(AlignmentError, match="'spk1-b'"):
        forced_align(log_probs, torch.tensor([4, 3, 4]), [[1], [1, 2, 1, 2], [2]], names=["a", "spk1-b", "c"])
    with pytest.raises(AlignmentError, match="blank"):
        forced_align(log_probs, torch.tensor([4, 4, 4]), [[1], [0], [2]])
    assert issubclass(AlignmentError, ValueError)


TOKENIZER = Tokenizer(alphabet=" hioy")


def peaky(path: list[int], probs: list[float], vocab: int) -> torch.Tensor:
    """Log-probabilities with probability ``probs[t]`` on ``path[t]``, the rest spread evenly."""
    p = torch.tensor(probs, dtype=torch.float64)[:, None]
    out = ((1 - p) / (vocab - 1)).repeat(1, vocab)
    out[torch.arange(len(path)), torch.tensor(path)] = p[:, 0]
    return out.log()


def test_chars_and_words() -> None:
    h, i, sp, y, o = TOKENIZER.encode("hi yo")
    path = [h, h, 0, i, 0, sp, sp, y, 0, o, o, 0]
    probs = [0.9, 0.8, 0.9, 0.9, 0.9, 0.9, 0.9, 0.6, 0.9, 0.5, 0.7, 0.9]
    log_probs = peaky(path, probs, TOKENIZER.vocab_size)
    chars = align_chars(torch.tensor(path), log_probs, TOKENIZER)
    assert [(c.char, c.start, c.end) for c in chars] == [
        ("h", 0, 2),
        ("i", 3, 4),
        (" ", 5, 7),
        ("y", 7, 8),
        ("o", 9, 11),
    ]
    assert [c.score for c in chars] == pytest.approx([0.85, 0.9, 0.9, 0.6, 0.6])
    words = align_words(chars)
    assert [(w.word, w.start, w.end) for w in words] == [("hi", 0, 4), ("yo", 7, 11)]
    assert words[0].confidence == pytest.approx(math.sqrt(0.85 * 0.9))
    assert 0 <= words[1].confidence < words[0].confidence <= 1


def test_forced_alignment_to_words() -> None:
    labels = TOKENIZER.encode("hi  yo")
    truth = [0, labels[0], labels[0], 0, labels[1], labels[2], 0, labels[3], labels[4], labels[4], 0]
    log_probs = peaky(truth, [0.9] * len(truth), TOKENIZER.vocab_size)[None]
    (path,) = forced_align(log_probs, torch.tensor([len(truth)]), [labels])
    assert path.tolist() == truth
    words = align_words(align_chars(path, log_probs[0], TOKENIZER))
    assert [(w.word, w.start, w.end) for w in words] == [("hi", 1, 5), ("yo", 7, 10)]


def test_repeated_chars_stay_separate() -> None:
    path = torch.tensor([2, 2, 0, 2])
    chars = align_chars(path, peaky(path.tolist(), [0.9] * 4, 4), Tokenizer(alphabet="ab "))
    assert [(c.char, c.start, c.end) for c in chars] == [("b", 0, 2), ("b", 3, 4)]


def test_units() -> None:
    spans = [CharSpan(2, "h", 1, 4, 0.5)]
    (seconds,) = scale_spans(spans, 0.01 * 3)  # audio: 10 ms frames, stride 3
    assert (seconds.start, seconds.end) == pytest.approx((0.03, 0.12)) and spans[0].start == 1
    (frames,) = scale_spans(spans, 1.0 * 3)  # a unit of 1 per feature frame, stride 3
    assert (frames.start, frames.end) == (3.0, 12.0)


def test_place_spans_looks_frames_up_in_uneven_boundaries():
    from recognizer.decoding import WordSpan, place_spans

    words = [WordSpan("a", 0, 2, 0.9), WordSpan("bc", 3, 5, 0.8)]
    placed = place_spans(words, [0, 4, 9, 10, 30, 31])  # 5 frames of uneven extent
    assert [(w.word, w.start, w.end, w.confidence) for w in placed] == [("a", 0, 9, 0.9), ("bc", 10, 31, 0.8)]
    assert words[0].end == 2  # copies
