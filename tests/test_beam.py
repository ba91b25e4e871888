"""CTC prefix beam search: exactness against brute force, batching, beam 1 = greedy, pruning, streaming."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import pytest
import torch

from recognizer.decoding import (
    BeamDecoder,
    BeamOptions,
    GreedyDecoder,
    GreedyOptions,
    Hypothesis,
    greedy_decode,
    min_ctc_frames,
    prefix_beam_search,
)
from recognizer.decoding.beam import _prefix_beam_search


def random_log_probs(batch: int, frames: int, vocab: int, seed: int, sharpness: float = 1.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, vocab, generator=generator, dtype=torch.float64) * sharpness
    return logits.log_softmax(-1)


def peaky_log_probs(batch: int, frames: int, vocab: int, seed: int) -> torch.Tensor:
    """Mostly confident frames, blank-dominated, like a trained CTC model's output."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, frames, vocab, generator=generator)
    winner = torch.randint(1, vocab, (batch, frames), generator=generator)
    winner = torch.where(torch.rand(batch, frames, generator=generator) < 0.7, 0, winner)
    logits.scatter_add_(2, winner[..., None], torch.full((batch, frames, 1), 9.0))
    return logits.log_softmax(-1)


def brute_force(log_probs: torch.Tensor, blank: int = 0) -> list[tuple[tuple[int, ...], float]]:
    """All label sequences with their total CTC log-probability, best first, from all V^T paths."""
    frames, vocab = log_probs.shape
    totals: dict[tuple[int, ...], list[float]] = defaultdict(list)
    for path in itertools.product(range(vocab), repeat=frames):
        labels = tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or path[i - 1] != c))
        totals[labels].append(float(sum(log_probs[t, c] for t, c in enumerate(path))))
    ranked = [(labels, float(torch.tensor(v, dtype=torch.float64).logsumexp(0))) for labels, v in totals.items()]
    return sorted(ranked, key=lambda item: -item[1])


@pytest.mark.parametrize("seed,frames,vocab", [(0, 5, 4), (1, 6, 3), (2, 4, 4), (3, 5, 3), (4, 5, 4)])
def test_wide_beam_equals_brute_force(seed: int, frames: int, vocab: int) -> None:
    log_probs = random_log_probs(1, frames, vocab, seed)
    expected = brute_force(log_probs[0])
    prefixes = sum((vocab - 1) ** n for n in range(frames + 1))  # every prefix fits: no pruning
    [found] = prefix_beam_search(log_probs, torch.tensor([frames]), beam_size=prefixes, nbest=5)
    assert len(found) == 5
    assert found[0].labels == list(expected[0][0])
    for hyp, (labels, score) in zip(found, expected):
        assert isinstance(hyp, Hypothesis)
        assert hyp.labels == list(labels)
        assert math.isclose(hyp.score, score, rel_tol=0, abs_tol=1e-9)


def test_total_probability_is_one_with_exact_beam() -> None:
    log_probs = random_log_probs(1, 4, 3, seed=7)
    found = prefix_beam_search(log_probs, torch.tensor([4]), beam_size=40, nbest=40)[0]
    feasible = [s for n in range(5) for s in itertools.product((1, 2), repeat=n) if min_ctc_frames(list(s)) <= 4]
    assert len(found) == len(feasible)  # every label sequence that fits in 4 frames
    assert len({tuple(h.labels) for h in found}) == len(found)  # merged: no duplicate prefixes
    assert math.isclose(torch.tensor([h.score for h in found]).logsumexp(0).item(), 0.0, abs_tol=1e-9)


def test_repeated_labels_need_a_blank() -> None:
    # Frames: a, a, blank, a -> best path "a a" only through the blank.
    probs = torch.tensor([[0.1, 0.9], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]], dtype=torch.float64)
    expected = brute_force(probs.log())
    [found] = prefix_beam_search(probs.log()[None], torch.tensor([4]), beam_size=8, nbest=3)
    assert [h.labels for h in found] == [list(s) for s, _ in expected[:3]]
    assert found[0].labels == [1, 1]


def log_add(*terms: float) -> float:
    top = max(terms)
    return top if top == -math.inf else top + math.log(sum(math.exp(x - top) for x in terms))


def reference_search(log_probs: torch.Tensor, beam_size: int) -> list[tuple[list[int], float]]:
    """Textbook prefix beam search with a dict of prefixes, one utterance, blank 0."""
    beams = {(): (0.0, -math.inf)}
    for frame in log_probs.tolist():
        new: dict[tuple[int, ...], list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
        for prefix, (pb, pnb) in beams.items():
            new[prefix][0] = log_add(new[prefix][0], log_add(pb, pnb) + frame[0])
            if prefix:
                new[prefix][1] = log_add(new[prefix][1], pnb + frame[prefix[-1]])
            for c in range(1, len(frame)):
                base = pb if prefix and prefix[-1] == c else log_add(pb, pnb)
                entry = new[prefix + (c,)]
                entry[1] = log_add(entry[1], base + frame[c])
        beams = dict(sorted(new.items(), key=lambda kv: -log_add(*kv[1]))[:beam_size])
    return sorted(((list(p), log_add(*v)) for p, v in beams.items()), key=lambda item: -item[1])


@pytest.mark.parametrize("seed", range(3))
def test_pruned_beam_equals_reference(seed: int) -> None:
    lengths = torch.tensor([10, 7])
    log_probs = random_log_probs(2, 10, 5, seed, sharpness=2.0)
    found = prefix_beam_search(log_probs, lengths, beam_size=3, nbest=3)
    for hyps, row, n in zip(found, log_probs, lengths.tolist()):
        expected = reference_search(row[:n], beam_size=3)
        assert [h.labels for h in hyps] == [labels for labels, _ in expected]
        assert [h.score for h in hyps] == pytest.approx([score for _, score in expected], rel=0, abs=1e-9)


def test_batched_equals_one_at_a_time() -> None:
    lengths = torch.tensor([7, 3, 9, 1, 0, 5])
    log_probs = random_log_probs(len(lengths), 9, 5, seed=3, sharpness=2.0)
    garbage = log_probs.clone()
    for i, n in enumerate(lengths.tolist()):
        garbage[i, n:] = float("nan")
        garbage[i, n::2, 1] = float("inf")
    batched = prefix_beam_search(garbage, lengths, beam_size=6, nbest=3)
    for i, n in enumerate(lengths.tolist()):
        [single] = prefix_beam_search(log_probs[i : i + 1, :n], torch.tensor([n]), beam_size=6, nbest=3)
        assert [h.labels for h in batched[i]] == [h.labels for h in single]
        assert torch.allclose(torch.tensor([h.score for h in batched[i]]), torch.tensor([h.score for h in single]))
    assert batched[4] == [Hypothesis(labels=[], score=0.0)]  # zero frames: the empty prefix, probability 1


def test_a_diverged_models_frames_leave_no_hypothesis() -> None:
    log_probs = random_log_probs(2, 6, 4, seed=1)
    log_probs[0, 3] = float("nan")  # a NaN frame within the first utterance only
    found = prefix_beam_search(log_probs, torch.tensor([6, 6]), beam_size=4, nbest=2)
    assert found[0] == [] and len(found[1]) == 2


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_is_greedy(seed: int) -> None:
    lengths = torch.tensor([12, 20, 5, 17])
    log_probs = random_log_probs(len(lengths), 20, 6, seed, sharpness=1.0 + seed % 2)
    found = prefix_beam_search(log_probs, lengths, beam_size=1, nbest=3)
    assert [[h.labels for h in hyps] for hyps in found] == [[labels] for labels in greedy_decode(log_probs, lengths)]
    best_path = [log_probs[i, :n].max(-1).values.sum().item() for i, n in enumerate(lengths.tolist())]
    assert torch.allclose(torch.tensor([hyps[0].score for hyps in found]), torch.tensor(best_path))


def test_beam_one_summing_search_can_differ_from_greedy() -> None:
    # Greedy path "a b" (0.9 * 0.4), but "a" then blank-or-repeat sums to 0.9 * 0.6: one summing
    # hypothesis keeps "a"; the max (Viterbi) scoring used for beam 1 follows the best path.
    probs = torch.tensor([[0.05, 0.9, 0.05], [0.3, 0.3, 0.4]], dtype=torch.float64)
    [[viterbi]], _ = _prefix_beam_search(probs.log()[None], torch.tensor([2]), beam_size=1)
    [[summed]], _ = _prefix_beam_search(probs.log()[None], torch.tensor([2]), beam_size=1, viterbi=False)
    assert greedy_decode(probs.log()[None], torch.tensor([2])) == [[1, 2]]
    assert viterbi.labels == [1, 2] and math.isclose(viterbi.score, math.log(0.9 * 0.4))
    assert summed.labels == [1] and math.isclose(summed.score, math.log(0.9 * 0.6))


def _same(a: list[list[Hypothesis]], b: list[list[Hypothesis]], atol: float = 1e-5) -> None:
    assert [[h.labels for h in hyps] for hyps in a] == [[h.labels for h in hyps] for hyps in b]
    for x, y in zip(a, b):
        assert torch.allclose(torch.tensor([h.score for h in x]), torch.tensor([h.score for h in y]), atol=atol)


def test_token_beam_reduces_work_without_changing_results() -> None:
    lengths = torch.tensor([30, 24, 30])
    log_probs = random_log_probs(3, 30, 12, seed=5, sharpness=2.0)
    exact, exact_stats = _prefix_beam_search(log_probs, lengths, beam_size=4, nbest=4)
    # beam_size + 1 tokens is provably enough, even on non-peaky input.
    pruned, pruned_stats = _prefix_beam_search(log_probs, lengths, beam_size=4, nbest=4, token_beam=5)
    _same(exact, pruned)
    assert pruned_stats.candidates <= exact_stats.candidates / 2  # 4 + 4 * 5 instead of 4 + 4 * 11 per frame
    peaky = peaky_log_probs(3, 30, 12, seed=5)
    exact, _ = _prefix_beam_search(peaky, lengths, beam_size=4, nbest=2)
    pruned, _ = _prefix_beam_search(peaky, lengths, beam_size=4, nbest=2, token_beam=2)
    _same(exact, pruned)


def test_a_label_floor_narrows_each_frame_to_the_labels_above_it() -> None:
    lengths = torch.tensor([30, 24, 30])
    peaky = peaky_log_probs(3, 30, 12, seed=7)
    exact, exact_stats = _prefix_beam_search(peaky, lengths, beam_size=4, nbest=2)
    floored, floored_stats = _prefix_beam_search(peaky, lengths, beam_size=4, nbest=2, token_min_logp=-8.0)
    _same(exact, floored)  # what falls below p = 0.03 % never makes the top hypotheses of peaky frames
    assert floored_stats.candidates <= 0.6 * exact_stats.candidates  # 4 + 4 x (3 or 4) labels, not 4 + 4 x 11
    # no label passes a floor of 0: each frame still tries its most probable label, so the search
    # follows the best path
    (best,) = _prefix_beam_search(peaky[:1], lengths[:1], beam_size=1, token_min_logp=0.0)[0]
    assert best[0].labels == greedy_decode(peaky[:1], lengths[:1])[0]
    # a floor below every label changes nothing, and the floor and token_beam combine
    _same(exact, _prefix_beam_search(peaky, lengths, beam_size=4, nbest=2, token_min_logp=-1e9)[0])
    both, both_stats = _prefix_beam_search(peaky, lengths, beam_size=4, nbest=2, token_beam=2, token_min_logp=-8.0)
    _same(exact, both)
    assert both_stats.candidates <= floored_stats.candidates


def test_a_prune_threshold_empties_far_prefixes_and_shrinks_the_work() -> None:
    lengths = torch.tensor([30, 24, 30, 0])
    peaky = peaky_log_probs(4, 30, 12, seed=7)
    exact, exact_stats = _prefix_beam_search(peaky, lengths, beam_size=8, nbest=2)
    pruned, pruned_stats = _prefix_beam_search(peaky, lengths, beam_size=8, nbest=2, prune_threshold=3.0)
    assert [h[0].labels for h in pruned] == [h[0].labels for h in exact]
    # the runner-up prefixes are ~5 nats below the best here: one live prefix per frame, not 8
    assert pruned_stats.candidates <= 0.2 * exact_stats.candidates
    # no prefix is dropped by a threshold wider than any score gap: the same search, slot for slot
    _same(exact, _prefix_beam_search(peaky, lengths, beam_size=8, nbest=2, prune_threshold=1e9)[0])
    assert all(len(h) == 1 for h in pruned)  # nbest 2, but the runner-up was dropped
    # batched = alone, with pruning too
    for i, n in enumerate(lengths.tolist()):
        [single] = prefix_beam_search(
            peaky[i : i + 1, :n], torch.tensor([n]), beam_size=8, nbest=2, prune_threshold=3.0
        )
        assert [h.labels for h in single] == [h.labels for h in pruned[i]]
    with pytest.raises(ValueError, match="prune_threshold must be positive"):
        BeamOptions(prune_threshold=0.0)


def test_the_lm_decoders_label_floor_keeps_the_blank_and_each_frames_best_label() -> None:
    from recognizer.decoding.frames import floor_labels

    log_probs = torch.tensor([[[-0.5, -5.0, -9.0, -1.25], [-12.0, -11.0, -20.0, -0.25]]], dtype=torch.float64)
    floored = floor_labels(log_probs, -8.0, -100.0)
    # the blank (0) is never floored
    assert floored.tolist() == [[[-0.5, -5.0, -100.0, -1.25], [-12.0, -100.0, -100.0, -0.25]]]
    # the best non-blank label stays even below the floor
    floored = floor_labels(torch.tensor([[-0.01, -11.0, -20.0, -9.0]], dtype=torch.float64), -8.0, -100.0)
    assert floored.tolist() == [[-0.01, -100.0, -100.0, -9.0]]


def test_collapsed_blank_runs_reduce_work_and_approximate() -> None:
    from recognizer.decoding import collapse_blank_frames

    lengths = torch.tensor([40, 33])
    log_probs = peaky_log_probs(2, 40, 8, seed=11)
    exact, exact_stats = _prefix_beam_search(log_probs, lengths, beam_size=4, nbest=2)
    collapsed, collapsed_lengths = collapse_blank_frames(log_probs, lengths, 0.999)
    skipped, skip_stats = _prefix_beam_search(collapsed, collapsed_lengths, beam_size=4, nbest=2)
    _same(exact, skipped, atol=1e-2)
    assert exact_stats.full_frames == 73 and skip_stats.full_frames == int(collapsed_lengths.sum()) < 73
    assert skip_stats.candidates < exact_stats.candidates
    never, never_lengths = collapse_blank_frames(log_probs, lengths, 1.0)
    assert torch.equal(never_lengths, lengths)
    _same(exact, _prefix_beam_search(never, never_lengths, beam_size=4, nbest=2)[0], atol=0)


def test_float32_and_bad_arguments() -> None:
    log_probs = random_log_probs(2, 6, 4, seed=2)
    as64 = prefix_beam_search(log_probs, torch.tensor([6, 4]), beam_size=5, nbest=2)
    as32 = prefix_beam_search(log_probs.float(), torch.tensor([6, 4]), beam_size=5, nbest=2)
    _same(as64, as32)
    with pytest.raises(ValueError):
        prefix_beam_search(log_probs[0], torch.tensor([6]))
    with pytest.raises(ValueError):
        prefix_beam_search(log_probs, torch.tensor([6, 4]), beam_size=0)
    # the compiled search does not check indices: what would read out of bounds is refused first
    with pytest.raises(ValueError, match="blank must be a label"):
        prefix_beam_search(log_probs, torch.tensor([6, 4]), blank=4)
    with pytest.raises(ValueError, match="one per utterance"):
        prefix_beam_search(log_probs, torch.tensor([6]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_log_probs_are_searched_on_the_cpu_alike() -> None:
    lengths = torch.tensor([25, 18, 25])
    log_probs = peaky_log_probs(3, 25, 10, seed=4)
    cpu = prefix_beam_search(log_probs, lengths, beam_size=6, nbest=3, token_beam=7)
    cuda = prefix_beam_search(log_probs.cuda(), lengths.cuda(), beam_size=6, nbest=3, token_beam=7)
    _same(cpu, cuda)
    assert [[h.labels for h in hyps] for hyps in prefix_beam_search(log_probs.cuda(), lengths, beam_size=1)] == [
        [labels] for labels in greedy_decode(log_probs, lengths)
    ]


def test_decode_entry_point_dispatches():
    from recognizer.decoding import DecodingOptions, decode, greedy_decode

    torch.manual_seed(0)
    log_probs = torch.randn(3, 9, 5).log_softmax(-1)
    lengths = torch.tensor([9, 4, 6])
    greedy = decode(log_probs, lengths, DecodingOptions("greedy"))
    assert [h[0].labels for h in greedy] == greedy_decode(log_probs, lengths)
    best_path = log_probs.max(-1).values
    assert greedy[1][0].score == pytest.approx(float(best_path[1, :4].sum()), abs=1e-5)
    beams = decode(log_probs, lengths, DecodingOptions("beam", beam_size=4, nbest=3))
    assert all(1 <= len(h) <= 3 for h in beams)
    assert all(h[0].score >= h[-1].score for h in beams)
    with pytest.raises(ValueError, match="unknown decoder"):
        DecodingOptions("viterbi")
    with pytest.raises(ValueError, match="needs an LM file"):
        DecodingOptions("lm")
    with pytest.raises(ValueError, match="use decoder='lm'"):
        DecodingOptions("beam", lm="lm.arpa")
    with pytest.raises(ValueError, match="alphabet"):
        decode(log_probs, lengths, DecodingOptions("lm", lexicon="lexicon.txt"))


def test_collapse_blank_frames_keeps_the_blank_path_and_separators():
    from recognizer.decoding import collapse_blank_frames

    confident, unsure = (
        [math.log(0.9995), math.log(0.0004), math.log(0.0001)],
        [math.log(0.3), math.log(0.6), math.log(0.1)],
    )
    # "A", confident blank x3, "A" (needs the blank between), blank x2, padding
    frames = [unsure, confident, confident, confident, unsure, confident, confident]
    log_probs = torch.tensor([frames + [[9.0] * 3] * 2, frames[:3] + [[9.0] * 3] * 6])
    lengths = torch.tensor([7, 3])
    out, new_lengths = collapse_blank_frames(log_probs, lengths, 0.999)
    assert new_lengths.tolist() == [4, 2]
    # every class of a kept frame also pays for the blanks of the frames dropped after it
    assert torch.allclose(out[0, 1], log_probs[0, 1] + 2 * math.log(0.9995))
    assert torch.allclose(out[0, 1, 0], torch.tensor(3 * math.log(0.9995)))  # the run's blank path, exactly
    assert torch.allclose(out[0, 3], log_probs[0, 5] + math.log(0.9995))
    assert torch.equal(out[0, 0], log_probs[0, 0]) and torch.equal(out[0, 2], log_probs[0, 4])
    assert torch.allclose(out[1, 1], log_probs[1, 1] + math.log(0.9995)) and (out[1, 2:] == 0).all()
    # the labels survive: A, blank, A
    assert greedy_decode(out, new_lengths) == [[1, 1], [1]]
    with pytest.raises(ValueError):
        collapse_blank_frames(log_probs, lengths, 0.0)


def test_blank_skipping_gives_the_same_search_on_peaky_outputs():
    from recognizer.decoding import DecodingOptions, decode

    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 80, 6, generator=generator)
    logits[..., 0] += torch.where(torch.rand(6, 80, generator=generator) < 0.7, 12.0, 0.0)  # peaky: mostly blank
    log_probs, lengths = logits.log_softmax(-1), torch.tensor([80, 75, 60, 41, 80, 9])
    exact = decode(log_probs, lengths, DecodingOptions("beam", beam_size=8, nbest=3, blank_skip=None))
    skipped = decode(log_probs, lengths, DecodingOptions("beam", beam_size=8, nbest=3, blank_skip=0.999))
    assert [[h.labels for h in n] for n in exact] == [[h.labels for h in n] for n in skipped]
    for a, b in zip(exact, skipped):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=0.05)


@pytest.mark.parametrize("blank_skip", [None, 0.9])
@pytest.mark.parametrize("beam_size", [1, 4])
@pytest.mark.parametrize("token_min_logp, prune_threshold", [(None, None), (-2.0, None), (-8.0, 3.0)])
def test_a_stream_fed_in_pieces_keeps_the_offline_search(blank_skip, beam_size, token_min_logp, prune_threshold):
    """``Decoder.stream``: frames in random pieces -> the same best prefix as the search over all of
    them; what it calls agreed only grows, and every reading ahead begins with it."""
    generator = torch.Generator().manual_seed(beam_size * 7 + (blank_skip is None))
    options = BeamOptions(
        beam_size=beam_size, blank_skip=blank_skip, token_min_logp=token_min_logp, prune_threshold=prune_threshold
    )
    for trial in range(12):
        frames = int(torch.randint(1, 90, (1,), generator=generator))
        logits = torch.randn(frames, 6, generator=generator) * 4
        logits[:, 0] += 3  # blank-heavy, so that confident blank runs (collapsed) occur
        log_probs = logits.log_softmax(-1)
        for decoder in (BeamDecoder(options), GreedyDecoder(GreedyOptions())):
            (offline,) = decoder(log_probs[None], torch.tensor([frames]))
            assert streamed(decoder, log_probs, generator, 12) == offline[0].labels, (trial, decoder.name)


def streamed(decoder, log_probs, generator, max_piece: int) -> list[int]:
    """``decoder.stream()`` fed ``log_probs`` in random pieces (1 to ``max_piece - 1`` frames): its best
    labels at the end. What it calls agreed must only grow, and every reading ahead begin with it."""
    stream, agreed, start = decoder.stream(), [], 0
    while start < log_probs.shape[0]:
        size = int(torch.randint(1, max_piece, (1,), generator=generator))
        stream.advance(log_probs[start : start + size])
        start += size
        assert stream.agreed()[: len(agreed)] == agreed
        agreed = stream.agreed()
        ahead = stream.copy()
        ahead.finish()
        assert ahead.best()[: len(agreed)] == agreed
    stream.finish()
    return stream.best()
