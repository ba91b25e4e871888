"""N-gram language models (recognizer.ngram), checked with an ARPA reader written independently here."""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from recognizer import ngram as lm
from recognizer.tokenizer import TokenizerError


class Arpa:
    """A minimal ARPA reader with the standard back-off query, independent of recognizer.ngram."""

    def __init__(self, text: str) -> None:
        self.counts: dict[int, int] = {}
        self.prob: dict[tuple[str, ...], float] = {}
        self.backoff: dict[tuple[str, ...], float] = {}
        section = None
        seen = Counter()
        for line in text.splitlines():
            if not line.strip():
                continue
            if line == "\\data\\":
                section = "data"
            elif line == "\\end\\":
                section = "end"
            elif line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:-7])
            elif section == "data":
                n, count = line[len("ngram ") :].split("=")
                self.counts[int(n)] = int(count)
            elif isinstance(section, int):
                fields = line.split("\t")
                assert len(fields) in (2, 3), line
                gram = tuple(fields[1].split(" "))
                assert len(gram) == section, line
                assert gram not in self.prob, f"duplicate {gram}"
                self.prob[gram] = float(fields[0])
                if len(fields) == 3:
                    assert section < max(self.counts), "backoff at the highest order"
                    self.backoff[gram] = float(fields[2])
                seen[section] += 1
            else:
                raise AssertionError(f"unexpected line {line!r}")
        assert section == "end"
        assert dict(seen) == self.counts
        self.order = max(self.counts)
        self.vocab = [g[0] for g in self.prob if len(g) == 1]

    def log10(self, word: str, history: tuple[str, ...] = ()) -> float:
        """log10 p(word | history): the longest known n-gram, plus the backoffs of the contexts skipped."""
        known = lambda w: w if (w,) in self.prob else "<unk>"  # noqa: E731
        word = known(word)
        context = tuple(known(w) for w in history)[max(0, len(history) - self.order + 1) :] if self.order > 1 else ()
        total = 0.0
        while True:
            if context + (word,) in self.prob:
                return total + self.prob[context + (word,)]
            total += self.backoff.get(context, 0.0)
            context = context[1:]

    def sentence_log10(self, tokens: list[str]) -> float:
        history = ("<s>",)
        total = 0.0
        for token in tokens + ["</s>"]:
            total += self.log10(token, history)
            history += (token,)
        return total


def zipf_corpus(num_sentences: int, vocab_size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = [f"w{i}" for i in range(vocab_size)]
    weights = [1 / (i + 1) for i in range(vocab_size)]
    return [" ".join(rng.choices(words, weights, k=rng.randint(1, 8))) for _ in range(num_sentences)]


def char_corpus(num_sentences: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    words = ["a", "ab", "ba", "cab", "abc", "d", "bad"]
    return [" ".join(rng.choices(words, k=rng.randint(1, 4))) for _ in range(num_sentences)]


def histories(arpa: Arpa, sentences: list[list[str]], rng: random.Random, count: int = 12) -> list[tuple[str, ...]]:
    """Seen histories (prefixes of training sentences) and unseen ones (random, with unknown words)."""
    seen = []
    for tokens in rng.sample(sentences, min(count, len(sentences))):
        cut = rng.randint(0, len(tokens))
        seen.append(("<s>", *tokens[:cut]))
    words = [w for w in arpa.vocab if w not in ("<s>", "</s>")]
    unseen = [tuple(rng.choice(words + ["never-seen"]) for _ in range(rng.randint(1, 4))) for _ in range(count)]
    return seen + unseen + [()]


@pytest.mark.parametrize("unit", ["word", "char"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_conditional_distributions_sum_to_one(order: int, unit: str) -> None:
    corpus = zipf_corpus(150, 25, seed=order) if unit == "word" else char_corpus(80, seed=order)
    arpa = Arpa(lm.build_arpa(corpus, order=order, unit=unit))
    assert arpa.order == order
    assert arpa.prob[("<s>",)] == -99
    assert {"<unk>", "</s>", "<s>"} <= set(arpa.vocab)
    if unit == "char":
        assert "|" in arpa.vocab and " " not in "".join(arpa.vocab)
    targets = [w for w in arpa.vocab if w != "<s>"]
    tokenized = [lm.tokenize(s, unit) for s in corpus]
    for history in histories(arpa, tokenized, random.Random(order)):
        total = sum(10 ** arpa.log10(w, history) for w in targets)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_arpa_structure_prefixes_and_suffixes_present() -> None:
    arpa = Arpa(lm.build_arpa(zipf_corpus(100, 20, seed=3), order=3))
    for gram in arpa.prob:
        if len(gram) > 1:
            assert gram[:-1] in arpa.prob and gram[1:] in arpa.prob, gram
    # Backoffs exist exactly for contexts: n-grams that some longer n-gram extends.
    contexts = {g[:-1] for g in arpa.prob if len(g) > 1}
    assert set(arpa.backoff) == contexts
    assert all(p <= 0 for p in arpa.prob.values())


def test_hand_computed_bigram_model_with_fallback_discounts() -> None:
    # <s> a b </s> and <s> b </s>. Every order is too small for closed-form discounts, so both use
    # D1, D2, D3+ = 0.5, 1, 1.5.
    # Unigram continuation counts: a 1 ({<s>}), b 2 ({<s>, a}), </s> 1 ({b}); sum 4.
    #   gamma() = (0.5 + 1 + 0.5) / 4 = 0.5, uniform = 1/4 over {<unk>, </s>, a, b}
    #   p(a) = 0.5/4 + 0.5/4 = 0.25, p(b) = 1/4 + 0.125 = 0.375, p(</s>) = 0.25, p(<unk>) = 0.125
    # Bigram raw counts: <s> a 1, <s> b 1, a b 1, b </s> 2
    #   gamma(<s>) = (0.5 + 0.5)/2 = 0.5: p(a|<s>) = 0.5/2 + 0.5*0.25 = 0.375, p(b|<s>) = 0.25 + 0.5*0.375
    #   gamma(a) = 0.5: p(b|a) = 0.5 + 0.5*0.375;  gamma(b) = 1/2: p(</s>|b) = 1/2 + 0.5*0.25
    model = lm.estimate(["a b", "b", "  "], order=2)
    assert model.fell_back == [True, True]
    arpa = Arpa(model.to_arpa())
    expected = {
        ("a", ()): 0.25,
        ("b", ()): 0.375,
        ("</s>", ()): 0.25,
        ("<unk>", ()): 0.125,
        ("a", ("<s>",)): 0.375,
        ("b", ("<s>",)): 0.4375,
        ("</s>", ("<s>",)): 0.5 * 0.25,
        ("b", ("a",)): 0.6875,
        ("</s>", ("b",)): 0.625,
        ("a", ("b",)): 0.5 * 0.25,
        ("zzz", ("b",)): 0.5 * 0.125,
    }
    for (word, history), p in expected.items():
        assert arpa.log10(word, history) == pytest.approx(math.log10(p), abs=1e-6), (word, history)
    assert arpa.backoff[("<s>",)] == pytest.approx(math.log10(0.5), abs=1e-6)
    assert model.num_sentences == 2 and model.num_tokens == 3


def reference_kneser_ney(sentences: list[str], order: int):
    """Interpolated modified Kneser-Ney written directly from Chen & Goodman's formulas, with dicts."""
    raw = [Counter() for _ in range(order)]
    for sentence in sentences:
        tokens = ["<s>", *sentence.split(), "</s>"]
        for n in range(1, order + 1):
            for i in range(len(tokens) - n + 1):
                raw[n - 1][tuple(tokens[i : i + n])] += 1
    left = defaultdict(set)
    for n in range(2, order + 1):
        for gram in raw[n - 1]:
            left[gram[1:]].add(gram[0])
    adjusted = []
    for n in range(1, order + 1):
        adjusted.append({g: c if n == order or g[0] == "<s>" else len(left[g]) for g, c in raw[n - 1].items()})
    adjusted[0][("<s>",)] = 0
    discounts = []
    for a in adjusted:
        n1, n2, n3, n4 = (sum(1 for c in a.values() if c == k) for k in (1, 2, 3, 4))
        y = n1 / (n1 + 2 * n2)
        discounts.append((0.0, 1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3))
    vocab = {g[0] for g in raw[0]} | {"<unk>"}

    def prob(word: str, history: tuple[str, ...]) -> float:
        n = len(history) + 1
        a = adjusted[n - 1]
        d = discounts[n - 1]
        extensions = [c for g, c in a.items() if g[:-1] == history]
        denominator = sum(extensions)
        lower = 1 / (len(vocab) - 1) if n == 1 else prob(word, history[1:])
        if denominator == 0:
            return lower
        gamma = sum(d[min(c, 3)] for c in extensions) / denominator
        c = a.get(history + (word,), 0)
        return (c - d[min(c, 3)]) / denominator + gamma * lower

    return prob, discounts


def test_matches_reference_formulas_with_closed_form_discounts() -> None:
    corpus = zipf_corpus(150, 60, seed=7)
    model = lm.estimate(corpus, order=3)
    assert model.fell_back == [False, False, False]
    reference, discounts = reference_kneser_ney(corpus, 3)
    for ours, theirs in zip(model.discounts, discounts):
        assert ours == pytest.approx(theirs[1:])
    arpa = Arpa(model.to_arpa())
    rng = random.Random(0)
    targets = [w for w in arpa.vocab if w != "<s>"]
    for history in histories(arpa, [s.split() for s in corpus], rng, count=8):
        history = tuple(w if (w,) in arpa.prob else "<unk>" for w in history)[-2:]
        for word in targets:
            assert arpa.log10(word, history) == pytest.approx(math.log10(reference(word, history)), abs=1e-6)


@pytest.mark.parametrize("unit", ["word", "char"])
@pytest.mark.parametrize("order", [2, 3, 4, 5])
def test_kenlm_scores_match_the_backoff_query(tmp_path: Path, unit: str, order: int) -> None:
    kenlm = pytest.importorskip("kenlm")
    corpus = zipf_corpus(300, 30, seed=5) if unit == "word" else char_corpus(300, seed=5)
    path = tmp_path / "lm.arpa"
    arpa = Arpa(lm.build_arpa(corpus, order=order, unit=unit, path=path))
    model = kenlm.Model(str(path))
    for sentence in corpus[:30] + (["w1 never-seen w2", "w3 w3 w3 w3"] if unit == "word" else ["dd cba", "x a"]):
        tokens = lm.tokenize(sentence, unit)
        expected = arpa.sentence_log10([t if (t,) in arpa.prob else "<unk>" for t in tokens])
        assert model.score(" ".join(tokens), bos=True, eos=True) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("unit", ["word", "char"])
def test_arpa_loads_in_kenlm_through_flashlight(tmp_path: Path, unit: str) -> None:
    """The KenLM inside flashlight-text (what the LM decoder uses) reads our ARPA and scores like it."""
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    corpus = zipf_corpus(200, 20, seed=5) if unit == "word" else char_corpus(200, seed=5)
    path = tmp_path / "lm.arpa"
    arpa = Arpa(lm.build_arpa(corpus, order=4, unit=unit, path=path))
    words = Dictionary([*arpa.vocab, "never-seen"])
    model = KenLM(str(path), words)
    samples = corpus[:20] + (["w1 never-seen w2", "w3 w3 w3 w3"] if unit == "word" else ["dd cba", "x a"])
    for sentence in samples:
        tokens = lm.tokenize(sentence, unit)
        state, total = model.start(False), 0.0
        for token in tokens:
            state, score = model.score(state, words.get_index(token if words.contains(token) else "never-seen"))
            total += score
        total += model.finish(state)[1]
        expected = arpa.sentence_log10([t if (t,) in arpa.prob else "<unk>" for t in tokens])
        assert total == pytest.approx(expected, abs=1e-4)


def test_edge_cases() -> None:
    # A single one-word sentence at order 4: every order falls back, the model is still normalized, and
    # the empty 4-gram order is dropped.
    model = lm.estimate(["a"], order=4)
    assert model.order == 3 and model.fell_back == [True] * 3
    arpa = Arpa(model.to_arpa())
    assert arpa.counts == {1: 4, 2: 2, 3: 1}
    for history in [(), ("<s>",), ("<s>", "a"), ("a", "a", "a")]:
        assert sum(10 ** arpa.log10(w, history) for w in ("a", "</s>", "<unk>")) == pytest.approx(1.0, abs=1e-6)
    # The unigram "<unk>" gets the interpolated uniform share: gamma() / |V without <s>|.
    assert 10 ** arpa.prob[("<unk>",)] == pytest.approx((0.5 + 0.5) / 2 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="no text"):
        lm.build_arpa(["", "   "])
    with pytest.raises(ValueError, match="reserved"):
        lm.build_arpa(["a </s> b"])
    with pytest.raises(ValueError, match="space token"):
        lm.build_arpa(["a|b"], unit="char")
    assert lm.tokenize(" ab  c ", "char") == ["a", "b", "|", "c"]
    assert lm.tokenize("ab c", "char", space_token="<sp>") == ["a", "b", "<sp>", "c"]
    # Literal <unk> in the text is the unknown word, as in lmplz.
    assert Arpa(lm.build_arpa(["a <unk> b"], order=2)).prob[("a", "<unk>")] < 0


def test_discount_estimates() -> None:
    n1, n2, n3, n4 = 10, 5, 3, 2
    y = n1 / (n1 + 2 * n2)
    (d1, d2, d3), fell_back = lm.estimate_discounts((n1, n2, n3, n4))
    assert not fell_back
    assert (d1, d2, d3) == pytest.approx((1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3))
    assert lm.estimate_discounts((0, 5, 3, 2)) == ((0.5, 1.0, 1.5), True)  # char unigrams: no singletons
    assert lm.estimate_discounts((10, 0, 0, 0)) == ((0.5, 1.0, 1.5), True)
    assert lm.estimate_discounts((10, 5, 3, 2), "kneser-ney") == ((y, y, y), False)


def test_write_lexicon(tmp_path: Path) -> None:
    path = lm.write_lexicon(["the", "cat", "the", "<unk>", "a"], tmp_path / "lexicon.txt")
    assert path.read_text(encoding="utf-8") == "a\ta |\ncat\tc a t |\nthe\tt h e |\n"
    lm.write_lexicon(["ab"], path, spelling=lambda w: [w.upper()], boundary=None)
    assert path.read_text(encoding="utf-8") == "ab\tAB\n"


def test_cli_writes_arpa_and_lexicon_from_manifests(tmp_path: Path) -> None:
    manifests = []
    for name, texts in [("train", ["The cat sat", "the dog"]), ("extra", ["A cat"])]:
        manifests.append(tmp_path / f"{name}.jsonl")
        manifests[-1].write_text("".join(json.dumps({"text": t, "duration": 1.0}) + "\n" for t in texts))
    text_file = tmp_path / "corpus.txt"
    text_file.write_text("the end\n\n")
    out, lexicon = tmp_path / "out" / "lm.arpa", tmp_path / "out" / "lexicon.txt"
    lm.main(
        [
            "--manifest",
            str(manifests[0]),
            "--manifest",
            str(manifests[1]),
            "--text",
            str(text_file),
            "--order",
            "2",
            "--case",
            "lower",
            "--out",
            str(out),
            "--lexicon",
            str(lexicon),
        ]
    )
    arpa = Arpa(out.read_text(encoding="utf-8"))
    assert arpa.order == 2
    assert set(arpa.vocab) == {"<unk>", "<s>", "</s>", "the", "cat", "sat", "dog", "a", "end"}
    assert lexicon.read_text().splitlines() == [
        "a\ta |",
        "cat\tc a t |",
        "dog\td o g |",
        "end\te n d |",
        "sat\ts a t |",
        "the\tt h e |",
    ]
    char_out = tmp_path / "chars.arpa"
    lm.main(["--manifest", str(manifests[0]), "--unit", "char", "--order", "3", "--out", str(char_out)])
    assert ("a", "t", "|") in Arpa(char_out.read_text(encoding="utf-8")).prob


FIXTURE_CHECKPOINT = Path(__file__).parent / "fixtures" / "speech-v0.ckpt"  # lower case, alphabet " a..y"


def test_cli_normalizes_with_the_checkpoints_tokenizer(tmp_path: Path) -> None:
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["The CAT sat", "A Zebra, too"]))
    out, lexicon = tmp_path / "lm.arpa", tmp_path / "lexicon.txt"
    common = ["--manifest", str(manifest), "--checkpoint", str(FIXTURE_CHECKPOINT), "--order", "2", "--out", str(out)]
    # The model's policy is unknown="error": "z" and "," are outside its alphabet, and the line is named.
    with pytest.raises(TokenizerError, match=r"train\.jsonl:2: character 'z'.*--unknown drop"):
        lm.main(common)
    lm.main([*common, "--unknown", "drop", "--lexicon", str(lexicon)])
    assert set(Arpa(out.read_text(encoding="utf-8")).vocab) == {"<unk>", "<s>", "</s>", "the", "cat", "sat", "a"} | {
        "ebra",
        "too",
    }
    assert "ebra\te b r a |" in lexicon.read_text().splitlines()
    with pytest.raises(ValueError, match="the checkpoint's tokenizer sets case"):
        lm.main([*common, "--case", "upper"])


def test_cli_normalizes_with_the_datamodules_settings(tmp_path: Path) -> None:
    text = tmp_path / "corpus.txt"
    text.write_text("Don't STOP, now!\n")
    out = tmp_path / "lm.arpa"
    lm.main(["--text", str(text), "--case", "lower", "--keep", "[a-z' ]", "--order", "2", "--out", str(out)])
    assert {"don't", "stop", "now"} < set(Arpa(out.read_text(encoding="utf-8")).vocab)
    args = ["--text", str(text), "--alphabet", "adnopstw ", "--case", "lower", "--order", "2", "--out", str(out)]
    lm.main([*args, "--unknown", "replace", "--replacement", " "])  # "'" , "!" -> spaces: "don t stop now"
    assert {"don", "t", "stop", "now"} < set(Arpa(out.read_text(encoding="utf-8")).vocab)
    with pytest.raises(TokenizerError, match=r"corpus\.txt:1: character \"'\""):
        lm.main(args)
    with pytest.raises(ValueError, match="need an alphabet"):
        lm.main(["--text", str(text), "--unknown", "drop", "--out", str(out)])


def test_text_tokenizer_matches_the_checkpoints() -> None:
    from recognizer.checkpoint import read_checkpoint

    stored = read_checkpoint(FIXTURE_CHECKPOINT)["hyper_parameters"]["tokenizer"]
    assert lm.text_tokenizer([], FIXTURE_CHECKPOINT).to_dict() == stored
    assert lm.text_tokenizer([], FIXTURE_CHECKPOINT, unknown="drop").unknown == "drop"
    assert lm.text_tokenizer(["Ab", "ba"], case="lower").alphabet == "ab"
