"""LM decoding, both engines (ours compiled, flashlight-text): lexicon + word LM, lexicon-free + character LM,
the ARPA tables against KenLM, and their errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from test_beam import streamed

from recognizer import ngram as lm
from recognizer.decoding import (
    DecodingOptions,
    LexiconError,
    LMDecoder,
    LMOptions,
    beam_kernel,
    decode,
    lm_tables,
    read_lexicon,
)
from recognizer.decoding.lm_tables import decoder_tokens
from recognizer.tokenizer import Tokenizer

TEXTS = ["THE CAT SAT", "THE DOG SAT", "A CAT RAN", "THE CAT RAN", "A DOG SAT ON THE MAT"] * 4
TOKENIZER = Tokenizer.from_texts(TEXTS)
ALPHABET = TOKENIZER.alphabet
ENGINES = ["compiled", "flashlight"]


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lm")
    paths = {"words": root / "words.arpa", "chars": root / "chars.arpa", "lexicon": root / "lexicon.txt"}
    lm.build_arpa(TEXTS, 3, path=paths["words"])
    lm.build_arpa(TEXTS, 5, "char", path=paths["chars"])
    lm.write_lexicon({w for t in TEXTS for w in t.split()}, paths["lexicon"])
    return paths


def emissions(text: str, confusions: dict[int, tuple[str, float]] | None = None, seed: int = 0) -> torch.Tensor:
    """Log-probabilities (T, V) that spell ``text`` (each label then a blank); ``confusions`` moves
    probability at character position i to another character (prob of the wrong one)."""
    generator = torch.Generator().manual_seed(seed)
    labels = TOKENIZER.encode(text)
    logits = torch.randn(2 * len(labels), len(ALPHABET) + 1, generator=generator) * 0.3
    for i, label in enumerate(labels):
        logits[2 * i, label] += 6.0
        logits[2 * i + 1, 0] += 6.0
    probs = logits.softmax(-1)
    for i, (char, wrong) in (confusions or {}).items():
        row = torch.full_like(probs[2 * i], 0.01 / len(ALPHABET))
        row[TOKENIZER.encode(char)[0]] = wrong
        row[labels[i]] = 1 - wrong - 0.01
        probs[2 * i] = row / row.sum()
    return probs.log()


def texts(hypotheses) -> list[str]:
    return [TOKENIZER.decode(h.labels) for h in hypotheses]


def test_token_list_is_the_tokenizer_with_the_space_as_separator():
    tokens = decoder_tokens(ALPHABET)
    assert len(tokens) == TOKENIZER.vocab_size and tokens[0] == "<blank>"
    assert tokens[1:] == [("|" if c == " " else c) for c in ALPHABET]
    with pytest.raises(LexiconError, match="no space"):
        decoder_tokens("ABC")
    with pytest.raises(LexiconError, match="both"):
        decoder_tokens("AB |")


def test_lexicon_and_word_lm_fix_an_acoustic_confusion(files, engine):
    # "THE CAT SAT" where the acoustics prefer D to C in CAT (0.6 to 0.39): "THE DAT SAT" greedily.
    log_probs = emissions("THE CAT SAT", {4: ("D", 0.6)})[None]
    lengths = torch.tensor([log_probs.shape[1]])
    assert texts(decode(log_probs, lengths)[0]) == ["THE DAT SAT"]
    for options in (
        DecodingOptions("lm", lm=str(files["words"]), lexicon=str(files["lexicon"]), engine=engine),
        DecodingOptions("lm", lexicon=str(files["lexicon"]), engine=engine),  # the lexicon alone forbids DAT
    ):
        [best] = decode(log_probs, lengths, options, ALPHABET)
        assert texts(best) == ["THE CAT SAT"]


def test_word_lm_chooses_between_lexicon_words(files, engine):
    # "THE DOG SAT" vs "THE CAT SAT" are both words; the acoustics are split evenly on C/D at one
    # position only, so DAT/COG are not words and the LM's preference decides (CAT is 3x as frequent).
    log_probs = emissions("THE DOG SAT", {4: ("C", 0.49), 5: ("A", 0.49), 6: ("T", 0.49)})[None]
    lengths = torch.tensor([log_probs.shape[1]])
    without = decode(log_probs, lengths, DecodingOptions("lm", lexicon=str(files["lexicon"]), engine=engine), ALPHABET)
    with_lm = decode(
        log_probs,
        lengths,
        DecodingOptions("lm", lm=str(files["words"]), lexicon=str(files["lexicon"]), lm_weight=2.0, engine=engine),
        ALPHABET,
    )
    assert texts(without[0])[0] == "THE DOG SAT"
    assert texts(with_lm[0])[0] == "THE CAT SAT"


def test_lexicon_free_character_lm(files, engine):
    log_probs = emissions("THE CAT SAT", {4: ("D", 0.55)})[None]
    lengths = torch.tensor([log_probs.shape[1]])
    weak = DecodingOptions("lm", lm=str(files["chars"]), lm_weight=0.0, engine=engine)
    strong = DecodingOptions("lm", lm=str(files["chars"]), lm_weight=1.0, engine=engine)
    assert texts(decode(log_probs, lengths, weak, ALPHABET)[0]) == ["THE DAT SAT"]
    assert texts(decode(log_probs, lengths, strong, ALPHABET)[0]) == ["THE CAT SAT"]
    # a word the LM never saw stays possible when the acoustics are clear: the vocabulary is open
    novel = emissions("THE RAT SAT")[None]
    assert texts(decode(novel, torch.tensor([novel.shape[1]]), strong, ALPHABET)[0]) == ["THE RAT SAT"]
    closed = DecodingOptions("lm", lm=str(files["words"]), lexicon=str(files["lexicon"]), engine=engine)
    assert texts(decode(novel, torch.tensor([novel.shape[1]]), closed, ALPHABET)[0]) != ["THE RAT SAT"]


def test_nbest_batched_equals_single(files, engine):
    sentences = ["THE CAT SAT", "A DOG SAT ON THE MAT", "THE CAT RAN"]
    rows = [emissions(s, {1: ("A", 0.3)}, seed=i) for i, s in enumerate(sentences)]
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=float("nan"))
    lengths = torch.tensor([r.shape[0] for r in rows])
    options = DecodingOptions(
        "lm", lm=str(files["words"]), lexicon=str(files["lexicon"]), nbest=4, beam_size=16, engine=engine
    )
    batched = decode(padded, lengths, options, ALPHABET)
    for row, hypotheses in zip(rows, batched):
        [single] = decode(row[None], torch.tensor([row.shape[0]]), options, ALPHABET)
        assert texts(single) == texts(hypotheses)
        assert [h.score for h in single] == pytest.approx([h.score for h in hypotheses])
    for sentence, hypotheses in zip(sentences, batched):
        assert texts(hypotheses)[0] == sentence
        assert 1 < len(hypotheses) <= 4 and len(set(texts(hypotheses))) == len(hypotheses)
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert all(TOKENIZER.decode(h.labels) == " ".join(TOKENIZER.decode(h.labels).split()) for h in hypotheses)


def test_settings_change_without_reloading(files, engine):
    paths = {"lm": str(files["words"]), "lexicon": str(files["lexicon"]), "engine": engine}
    first = LMDecoder(LMOptions(**paths, lm_weight=0.5), ALPHABET)
    second = LMDecoder(LMOptions(**paths, lm_weight=3.0, word_score=1.0), ALPHABET)
    assert first.engine == second.engine == engine
    if engine == "flashlight":
        assert first.flashlight.resources is second.flashlight.resources  # the LM and trie are loaded once
    else:
        k = beam_kernel
        assert all(first.scorer[i] is second.scorer[i] for i in (k.KEYS, k.PROBS, k.TRIE_CHILD))  # the same tables


def test_engine_auto_is_compiled_for_arpa_and_flashlight_for_a_kenlm_binary(files, tmp_path):
    assert LMDecoder(LMOptions(lm=str(files["words"]), lexicon=str(files["lexicon"])), ALPHABET).engine == "compiled"
    assert LMDecoder(LMOptions(lexicon=str(files["lexicon"])), ALPHABET).engine == "compiled"
    binary = tmp_path / "words.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0" + bytes(64))
    with pytest.raises(LexiconError, match=f"{binary}: KenLM cannot load"):  # picked flashlight, which says why
        LMDecoder(LMOptions(lm=str(binary), lexicon=str(files["lexicon"])), ALPHABET)
    with pytest.raises(LexiconError, match=f"{binary}: not an ARPA file .* engine flashlight"):
        LMDecoder(LMOptions(lm=str(binary), lexicon=str(files["lexicon"]), engine="compiled"), ALPHABET)


@pytest.mark.parametrize(("unit", "order"), [("word", 2), ("word", 3), ("char", 4), ("char", 7)])
def test_compiled_lm_scores_equal_kenlms(tmp_path, unit, order):
    """The compiled back-off query (states, suffixes, <unk>, </s>) against KenLM's own, word by word."""
    import random

    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    from recognizer.decoding.lm_tables import make_scorer, read_arpa

    path = tmp_path / f"{unit}{order}.arpa"
    lm.build_arpa(TEXTS, order, unit, path=path)
    tables = read_arpa(path)
    scorer = make_scorer(beam_kernel.CHARACTERS, 0, 1.0, 0.0, -1.0, tables, torch.zeros(0).long().numpy(), None)
    names = sorted(tables.words)
    rng = random.Random(order)
    sentences = [lm.tokenize(t, unit) for t in TEXTS[:5]] + [
        [rng.choice([*names, "NOVEL"]) for _ in range(rng.randint(1, 9))] for _ in range(20)
    ]
    if order <= 6:  # flashlight-text's KenLM stops at order 6: above it, check the kernel against itself only
        kenlm = KenLM(str(path), Dictionary([*names, "NOVEL"]))
    for sentence in sentences:
        state, ours = tables.start, 0.0
        for token in [*sentence, "</s>"]:
            logp, state = beam_kernel.lm_logp(scorer, state, tables.words.get(token, tables.unk))
            ours += logp
        if order > 6:
            assert ours < 0
            continue
        ken_state, theirs = kenlm.start(False), 0.0
        dictionary = Dictionary([*names, "NOVEL"])
        for token in sentence:
            ken_state, score = kenlm.score(ken_state, dictionary.get_index(token))
            theirs += score
        theirs += kenlm.finish(ken_state)[1]
        assert ours == pytest.approx(theirs, abs=1e-4), sentence


def test_bad_lexicons_and_lms_are_clear_errors(files, tmp_path, engine):
    log_probs = emissions("THE CAT")[None]
    lengths = torch.tensor([log_probs.shape[1]])

    def run(**options):
        return decode(log_probs, lengths, DecodingOptions("lm", engine=engine, **options), ALPHABET)

    lower = tmp_path / "lower.txt"
    lm.write_lexicon(["the", "cat"], lower)
    with pytest.raises(LexiconError, match=f"{lower}.*case"):
        run(lexicon=str(lower))
    with pytest.raises(LexiconError, match="character LM"):
        run(lm=str(files["words"]))  # a word LM without a lexicon
    lower_lm = tmp_path / "lower.arpa"
    lm.build_arpa(["the cat"] * 3, 2, path=lower_lm)
    with pytest.raises(LexiconError, match="none of the lexicon's words is in the LM"):
        run(lm=str(lower_lm), lexicon=str(files["lexicon"]))
    malformed = tmp_path / "malformed.txt"
    malformed.write_text("THE\tT H E |\nCAT\n")
    with pytest.raises(LexiconError, match=f"{malformed}:2"):
        read_lexicon(malformed)
    corrupt = tmp_path / "corrupt.arpa"  # truncated: the header announces two unigrams
    corrupt.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\tTHE\n")
    expected = "KenLM cannot load" if engine == "flashlight" else "the header announces 2 1-grams, the file holds 1"
    with pytest.raises(LexiconError, match=f"{corrupt}: {expected}") as caught:
        run(lm=str(corrupt), lexicon=str(files["lexicon"]))
    assert "\n" not in str(caught.value)  # KenLM's own message runs over lines: its first is kept
    garbled = tmp_path / "garbled.arpa"
    garbled.write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\tTHE\nhalf\tCAT\n\\end\\\n")
    with pytest.raises(LexiconError, match=f"{garbled}(:6: not a number|: KenLM cannot load)"):
        run(lm=str(garbled), lexicon=str(files["lexicon"]))
    too_long = tmp_path / "chars7.arpa"  # flashlight-text's KenLM is compiled for orders up to 6
    lm.build_arpa(["THE CAT SAT ON THE MAT"] * 3, 7, unit="char", path=too_long)
    if engine == "flashlight":
        with pytest.raises(LexiconError, match=f"{too_long}: a 7-gram model; .* up to order 6 "):
            run(lm=str(too_long))
    else:  # the compiled engine takes any order
        assert texts(run(lm=str(too_long))[0])[0] == "THE CAT"
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        run(lm=str(tmp_path / "missing.arpa"))
    wrong_size = torch.zeros(1, 4, 3).log_softmax(-1)
    with pytest.raises(ValueError, match="classes"):
        decode(
            wrong_size, torch.tensor([4]), DecodingOptions("lm", lexicon=str(files["lexicon"]), engine=engine), ALPHABET
        )


def test_a_label_floor_keeps_the_transcripts_and_narrows_each_utterances_search(files, engine):
    sentences = ["THE CAT SAT", "A DOG SAT ON THE MAT", "THE CAT RAN"]
    rows = [(emissions(s, {1: ("A", 0.3)}, seed=i) * 3).log_softmax(-1) for i, s in enumerate(sentences)]
    padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lengths = torch.tensor([r.shape[0] for r in rows])
    options = LMOptions(lm=str(files["words"]), lexicon=str(files["lexicon"]), nbest=3, engine=engine)
    assert options.token_min_logp == -6.0  # the default
    floored, every = (
        LMDecoder(options, ALPHABET),
        LMDecoder(dataclasses.replace(options, token_min_logp=None), ALPHABET),
    )
    for a, b in zip(floored.search(padded, lengths), every.search(padded, lengths)):
        assert texts(a) == texts(b) and [h.score for h in a] == pytest.approx([h.score for h in b])
    assert texts(floored.search(padded, lengths)[0])[0] == "THE CAT SAT"
    if engine == "flashlight":  # each utterance tried only the labels its widest frame keeps above the floor
        decoders = floored.flashlight._decoders
        assert (
            max(set(decoders) - {floored.flashlight.token_beam}) < every.flashlight.token_beam == TOKENIZER.vocab_size
        )


@pytest.mark.parametrize("mode", ["lexicon", "characters", "lexicon and characters"])
def test_a_compiled_lm_stream_fed_in_pieces_keeps_the_offline_search(files, mode):
    """The compiled engine's stream: frames in pieces -> the offline search's best transcript; what it
    calls agreed only grows and begins every reading ahead (the LM rescores, never rewrites, a prefix)."""
    paths: dict = {
        "lexicon": {"lm": str(files["words"]), "lexicon": str(files["lexicon"])},
        "characters": {"lm": str(files["chars"])},
        "lexicon and characters": {
            "lm": str(files["words"]),
            "lexicon": str(files["lexicon"]),
            "char_lm": str(files["chars"]),
            "unk_score": -5.0,
        },
    }[mode]
    decoder = LMDecoder(LMOptions(**paths, beam_size=8), ALPHABET)
    generator = torch.Generator().manual_seed(1)
    for trial, sentence in enumerate(["THE CAT SAT", "A DOG SAT ON THE MAT", "THE CAT RAN"]):
        log_probs = emissions(sentence, {1: ("A", 0.45), 4: ("D", 0.4)}, seed=trial)
        (offline,) = decoder(log_probs[None], torch.tensor([log_probs.shape[0]]))
        assert streamed(decoder, log_probs, generator, 6) == offline[0].labels, (mode, sentence)


def test_an_unknown_word_path_spells_a_word_outside_the_lexicon(files):
    """The compiled engine charges unk_score once per unknown word (flashlight charges it wherever a
    spelling leaves its trie, and scores differently: not tested here)."""
    novel = emissions("THE RAT SAT")[None]  # RAT is no word of the lexicon; the acoustics are clear
    lengths = torch.tensor([novel.shape[1]])
    paths = {"lm": str(files["words"]), "lexicon": str(files["lexicon"]), "engine": "compiled"}
    closed = DecodingOptions("lm", **paths)
    bounded = DecodingOptions("lm", **paths, unk_score=-3.0)
    assert texts(decode(novel, lengths, closed, ALPHABET)[0])[0] != "THE RAT SAT"
    assert texts(decode(novel, lengths, bounded, ALPHABET)[0])[0] == "THE RAT SAT"
    # where the acoustics hesitate between a lexicon word and an unknown one, the penalty decides
    unsure = emissions("THE CAT SAT", {4: ("R", 0.5)})[None]
    assert texts(decode(unsure, lengths, bounded, ALPHABET)[0])[0] == "THE CAT SAT"


def test_a_character_lm_beside_the_word_lm_adds_its_weighted_score_to_every_hypothesis(files):
    """With ``char_lm`` each hypothesis scores its characters (the separator as ``|``) and ``</s>`` by the
    character LM too, weighted: the n-best lists' scores differ by exactly that; weight 0 changes nothing."""
    log_probs = emissions("THE CAT SAT", {2: ("C", 0.4), 6: ("R", 0.3)})[None]
    lengths = torch.tensor([log_probs.shape[1]])
    words = {"lm": str(files["words"]), "lexicon": str(files["lexicon"]), "unk_score": -4.0, "nbest": 6}
    # a beam that prunes nothing here: each prefix's acoustic score is then the same with either scorer
    common = {"beam_size": 512, "beam_threshold": 1000.0, "token_min_logp": None}
    alone = LMDecoder(LMOptions(**words, **common), ALPHABET)(log_probs, lengths)[0]
    zero = LMDecoder(LMOptions(**words, **common, char_lm=str(files["chars"]), char_lm_weight=0.0), ALPHABET)
    assert [(h.labels, h.score) for h in zero(log_probs, lengths)[0]] == [(h.labels, h.score) for h in alone]

    weight = 0.7
    both = LMDecoder(LMOptions(**words, **common, char_lm=str(files["chars"]), char_lm_weight=weight), ALPHABET)
    scorer = LMDecoder(LMOptions(lm=str(files["chars"])), ALPHABET).scorer  # the character LM alone
    tables = lm_tables.read_arpa(files["chars"])

    def char_log10(text: str) -> float:
        state, total = int(scorer[beam_kernel.LM_INTS][beam_kernel.START]), 0.0
        for token in [*text.replace(" ", "|"), "</s>"]:
            logp, state = beam_kernel.lm_logp(scorer, state, tables.words.get(token, tables.unk))
            total += logp
        return total

    before = {TOKENIZER.decode(h.labels): h.score for h in alone}
    after = {TOKENIZER.decode(h.labels): h.score for h in both(log_probs, lengths)[0]}
    shared = before.keys() & after.keys()
    assert len(shared) >= 3
    for text in shared:
        assert after[text] - before[text] == pytest.approx(weight * char_log10(text), abs=1e-6), text


def test_a_character_lm_spells_the_words_outside_the_lexicon(files):
    """An unknown word is spelled by the acoustics alone without ``char_lm``, by the character LM too with
    it: "DON" and "SON" are both outside the lexicon; the LM's texts begin a word with "DO", never "SO"."""
    log_probs = emissions("THE DON SAT", {4: ("S", 0.55)})[None]
    lengths = torch.tensor([log_probs.shape[1]])
    words = {"lm": str(files["words"]), "lexicon": str(files["lexicon"]), "unk_score": -1.0}
    assert texts(decode(log_probs, lengths, DecodingOptions("lm", **words), ALPHABET)[0]) == ["THE SON SAT"]
    spelled = DecodingOptions("lm", **words, char_lm=str(files["chars"]), char_lm_weight=0.5)
    assert texts(decode(log_probs, lengths, spelled, ALPHABET)[0]) == ["THE DON SAT"]


def test_a_character_lm_beside_a_lexicon_is_checked(files):
    lexicon = {"lexicon": str(files["lexicon"])}
    with pytest.raises(ValueError, match="without a lexicon, pass it as lm"):
        LMOptions(lm=str(files["words"]), char_lm=str(files["chars"]))
    with pytest.raises(ValueError, match="compiled engine"):
        LMOptions(**lexicon, char_lm=str(files["chars"]), engine="flashlight")
    with pytest.raises(ValueError, match="char_lm_weight must be a finite number"):
        LMOptions(**lexicon, char_lm=str(files["chars"]), char_lm_weight=float("nan"))
    with pytest.raises(LexiconError, match="character LM"):
        LMDecoder(LMOptions(**lexicon, char_lm=str(files["words"])), ALPHABET)
    with pytest.raises(FileNotFoundError, match="missing.arpa"):
        LMDecoder(LMOptions(**lexicon, char_lm=str(files["chars"].parent / "missing.arpa")), ALPHABET)
