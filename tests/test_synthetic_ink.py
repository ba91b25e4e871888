"""Synthetic ink corpus: Hershey-font lines as timed pen trajectories, manifests, determinism and reuse."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recognizer.corpora import synthetic_ink as si
from recognizer.corpora.synthetic_speech import WORDS
from recognizer.ink import Ink
from recognizer.ink.formats import read_json_ink
from recognizer.manifest import read_manifest

SIZES = {"train": 8, "dev": 4, "test": 4}
TEXT = "the quick brown fox jumps over a lazy dog"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("synthetic-ink") / "corpus"
    return out, si.prepare(out, SIZES["train"], SIZES["dev"], SIZES["test"], seed=7, workers=2)


def _files(out: Path) -> dict[str, bytes]:
    """Relative path -> content of every manifest and ink file."""
    return {
        str(path.relative_to(out)): path.read_bytes()
        for path in sorted(out.rglob("*"))
        if path.is_file() and path.name != "corpus.json"
    }


def test_every_font_writes_every_character_of_the_word_list():
    letters = "".join(sorted(set("".join(WORDS)))) + " "
    for name in si.FONTS:
        font = si._font(name)
        for char in letters:
            assert char in font, (name, char)
            assert char == " " or font[char].strokes, (name, char)
    ink = si.synthesize_line(letters, np.random.default_rng(0))
    assert ink.text == letters


@pytest.mark.parametrize("seed", range(8))
def test_synthesize_line_gives_timed_left_to_right_ink_of_plausible_size(seed):
    ink = si.synthesize_line(TEXT, np.random.default_rng(seed))
    assert isinstance(ink, Ink) and ink.text == TEXT and ink.has_time
    points = ink.points()
    # Time starts at 0 and rises strictly over the whole line, pen-up gaps included.
    assert points[0, 2] == 0.0 and np.all(np.diff(points[:, 2]) > 0)
    for before, after in zip(ink.strokes, ink.strokes[1:]):
        assert si.PEN_UP_S[0] <= after[0, 2] - before[-1, 2] <= si.PEN_UP_S[1]
    assert 0.2 * len(TEXT) < points[-1, 2] < 2.0 * len(TEXT)  # seconds: a few letters a second
    # A capital is HEIGHT units tall; ascenders, descenders and the wavy baseline add to a line's height.
    height, width = np.ptp(points[:, 1]), np.ptp(points[:, 0])
    assert si.HEIGHT[0] < height < 4 * si.HEIGHT[1]
    assert 0.15 * len(TEXT) < width / height < 1.2 * len(TEXT)
    # Written left to right: only dots and bars come late, and never later than their word.
    centres = np.array([stroke[:, 0].mean() for stroke in ink.strokes])
    assert np.corrcoef(np.arange(len(centres)), centres)[0, 1] > 0.9
    quarter = max(1, len(centres) // 4)
    assert centres[:quarter].max() < centres[-quarter:].min()
    # Points are spread evenly along the path (densified), a fraction of a letter apart.
    steps = np.hypot(*np.diff(points[:, :2], axis=0).T)[np.diff(ink.stroke_ids()) == 0]
    assert np.median(steps) < 0.15 * si.HEIGHT[1]


def test_synthesize_line_is_deterministic_and_writers_differ():
    a = si.synthesize_line("green boat", np.random.default_rng(5))
    b = si.synthesize_line("green boat", np.random.default_rng(5))
    c = si.synthesize_line("green boat", np.random.default_rng(6))
    assert len(a.strokes) == len(b.strokes)
    for x, y in zip(a.strokes, b.strokes):
        np.testing.assert_array_equal(x, y)
    assert a.num_points != c.num_points or not np.allclose(a.points(), c.points())


@pytest.mark.parametrize("text", ["caf\u00e9", "   ", ""])
def test_text_the_fonts_cannot_write_is_an_error(text):
    with pytest.raises(ValueError):
        si.synthesize_line(text, np.random.default_rng(0))


def test_line_texts_are_two_to_seven_listed_words():
    words = set(WORDS)
    for index in range(200):
        tokens = si._line_text(np.random.default_rng([0, 0, index])).split(" ")
        assert si.WORDS_PER_LINE[0] <= len(tokens) <= si.WORDS_PER_LINE[1] and set(tokens) <= words
        assert len(tokens) == si.WORDS_PER_LINE[0] or len(" ".join(tokens)) <= si.MAX_CHARS


def test_prepare_writes_manifests_and_json_ink(corpus):
    out, manifests = corpus
    assert manifests == {split: out.resolve() / f"{split}.jsonl" for split in si.SPLITS}
    ids = set()
    for split, count in SIZES.items():
        entries = read_manifest(manifests[split], required=("text",), path_key="ink_filepath")
        assert len(entries) == count
        # Relative paths keep the corpus folder movable.
        assert not Path(json.loads(manifests[split].read_text().splitlines()[0])["ink_filepath"]).is_absolute()
        for entry in entries:
            ids.add(entry["id"])
            path = Path(entry["ink_filepath"])
            assert path.parent == out.resolve() / "ink" / split and path.name == f"{entry['id']}.json"
            data = json.loads(path.read_text(encoding="utf-8"))
            assert data["text"] == entry["text"]
            assert sum(len(stroke) for stroke in data["strokes"]) == entry["num_points"]
            assert all(len(point) == 3 and point[0] == round(point[0], 3) for s in data["strokes"] for point in s)
            ink = read_json_ink(path)
            assert ink.text == entry["text"] and ink.has_time
            assert np.all(np.diff(ink.points()[:, 2]) > 0)  # still strictly rising once rounded
    assert len(ids) == sum(SIZES.values())


def test_same_seed_gives_the_same_corpus_whatever_the_worker_count(corpus, tmp_path, monkeypatch):
    out, _ = corpus
    # Several chunks per split, so that one worker runs chunks that several would share out.
    monkeypatch.setattr(si, "CHUNK_SIZE", 3)
    a = _files(Path(si.prepare(tmp_path / "a", *SIZES.values(), seed=7, workers=1)["train"]).parent)
    b = _files(Path(si.prepare(tmp_path / "b", *SIZES.values(), seed=7, workers=3)["train"]).parent)
    assert a == b == _files(out)
    # Splits come from separate random streams.
    texts = {split: [e["text"] for e in read_manifest(out / f"{split}.jsonl")] for split in si.SPLITS}
    assert set(texts["train"]).isdisjoint(texts["test"])


def test_finished_corpus_is_reused_and_other_parameters_regenerate(tmp_path):
    out = tmp_path / "corpus"
    manifests = si.prepare(out, 2, 1, 1, seed=3, workers=1)
    files = sorted(out.rglob("*"))
    stamps = {path: path.stat().st_mtime_ns for path in files}
    assert si.prepare(out, 2, 1, 1, seed=3, workers=2) == manifests
    assert sorted(out.rglob("*")) == files
    assert {path: path.stat().st_mtime_ns for path in files} == stamps

    first = [e["text"] for e in read_manifest(manifests["train"])]
    si.prepare(out, 3, 1, 0, seed=4, workers=1)
    assert json.loads((out / "corpus.json").read_text())["parameters"]["seed"] == 4
    second = [e["text"] for e in read_manifest(manifests["train"])]
    assert len(second) == 3 and second[:2] != first
    assert len(list((out / "ink" / "train").iterdir())) == 3
    assert not list((out / "ink" / "test").iterdir()) and read_manifest(manifests["test"], allow_empty=True) == []


def test_recognizer_prepare_synthetic_ink(tmp_path, capsys):
    from recognizer.prepare import main

    main(
        [
            "synthetic-ink",
            "--out",
            str(tmp_path),
            "--num-train",
            "2",
            "--num-dev",
            "1",
            "--num-test",
            "1",
            "--seed",
            "1",
            "--workers",
            "1",
        ]
    )
    assert "train:" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "train.jsonl", path_key="ink_filepath")) == 2
