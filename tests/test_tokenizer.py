import pytest

from recognizer.ctc import BLANK
from recognizer.tokenizer import Tokenizer, TokenizerError


def test_round_trip_and_blank():
    tok = Tokenizer.from_texts(["HELLO WORLD", "GOOD BYE"])
    assert tok.alphabet == " BDEGHLORWY"
    assert tok.vocab_size == len(tok.alphabet) + 1 and tok.tokens[BLANK] == "<blank>"
    labels = tok.encode("HELLO  WORLD ")
    assert BLANK not in labels
    assert tok.decode(labels) == "HELLO WORLD"
    assert tok.decode([BLANK, *labels, BLANK]) == "HELLO WORLD"


def test_normalization_case_and_keep():
    tok = Tokenizer.from_texts(["Hello, World!"], case="lower", keep="[a-z' ]")
    assert tok.alphabet == " dehlorw"
    assert tok.normalize("It's  FINE, ok?") == "it's fine ok"  # the apostrophe is kept, the rest removed


def test_unknown_character_error_names_utterance_and_character():
    tok = Tokenizer(alphabet="ab ")
    with pytest.raises(TokenizerError, match=r"train\.jsonl:7: character 'c' \(U\+0063\)"):
        tok.encode("abc", utterance="train.jsonl:7")


def test_unknown_drop_and_replace_are_counted():
    drop = Tokenizer(alphabet="ab ", unknown="drop")
    assert drop.decode(drop.encode("a c b")) == "a  b"
    assert drop.unknown_counts == {"c": 1}
    replace = Tokenizer(alphabet="ab_", unknown="replace", replacement="_")
    assert replace.decode(replace.encode("axxb")) == "a__b"
    assert replace.unknown_counts == {"x": 2}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(alphabet=""), "empty"),
        (dict(alphabet="aba"), "repeats"),
        (dict(alphabet="ab", unknown="replace", replacement="?"), "not in the alphabet"),
        (dict(alphabet="ab", unknown="ignore"), "unknown="),
    ],
)
def test_invalid_settings(kwargs, message):
    with pytest.raises(TokenizerError, match=message):
        Tokenizer(**kwargs)


def test_settings_round_trip():
    tok = Tokenizer(alphabet="abc ", case="lower", keep="[a-c ]", unknown="drop")
    assert Tokenizer(**tok.to_dict()) == tok


def test_target_text_is_what_the_model_outputs():
    tok = Tokenizer(alphabet="abc ", case="lower", unknown="replace", replacement=" ")
    assert tok.target_text("  AbX  c") == "ab  c" == tok.decode(tok.encode("  AbX  c"))
    with pytest.raises(TokenizerError, match="line 3: character 'x'"):
        Tokenizer(alphabet="ab").target_text("abx", utterance="line 3")
