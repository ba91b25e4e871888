"""Synthetic speech corpus: espeak-ng through ctypes, manifests, determinism and reuse of a finished corpus."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile

from recognizer.corpora import synthetic_speech as ss
from recognizer.manifest import read_manifest

SIZES = {"train": 8, "dev": 4, "test": 4}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("synthetic") / "corpus"
    return out, ss.prepare(out, SIZES["train"], SIZES["dev"], SIZES["test"], seed=7, workers=2)


def _read(out: Path) -> dict[str, list[tuple[str, np.ndarray]]]:
    """split -> [(text, int16 samples)] in manifest order."""
    return {
        split: [
            (entry["text"], soundfile.read(entry["audio_filepath"], dtype="int16")[0])
            for entry in read_manifest(out / f"{split}.jsonl", required=("text", "duration"), path_key="audio_filepath")
        ]
        for split in ss.SPLITS
    }


def test_word_list_is_lowercase_letters_without_duplicates():
    assert 300 <= len(ss.WORDS) <= 500
    assert len(set(ss.WORDS)) == len(ss.WORDS)
    assert all(re.fullmatch("[a-z]+", word) for word in ss.WORDS)


def test_synthesize_gives_audible_speech_of_plausible_length():
    audio = ss.synthesize("the green boat arrived early", "en-us+f2", rate=170, pitch=50, pitch_range=50)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.8 < audio.size / ss.SAMPLE_RATE < 4.0
    assert np.abs(audio).max() <= 1.0
    assert np.sqrt(np.mean(audio**2)) > 0.01
    # Faster speech is shorter: the rate parameter reaches espeak.
    fast = ss.synthesize("the green boat arrived early", "en-us+f2", rate=400, pitch=50, pitch_range=50)
    assert fast.size < 0.7 * audio.size


def test_every_listed_voice_speaks():
    assert len(ss.VOICES) >= 6
    variants = {voice.partition("+")[2] for voice in ss.VOICES}
    assert any(v.startswith("m") for v in variants) and any(v.startswith("f") for v in variants)
    for voice in ss.VOICES:
        assert np.abs(ss.synthesize("hello", voice, 170, 50, 50)).max() > 0.05, voice


@pytest.mark.parametrize("voice", ["en-us+nosuchvariant", "xx-nosuchvoice"])
def test_unknown_voice_is_an_error(voice):
    with pytest.raises(ValueError, match="unknown espeak-ng voice"):
        ss.synthesize("hello", voice, 170, 50, 50)


def test_prepare_writes_readable_manifests_and_16k_wavs(corpus):
    out, manifests = corpus
    assert manifests == {split: out.resolve() / f"{split}.jsonl" for split in ss.SPLITS}
    words = set(ss.WORDS)
    ids = set()
    for split, count in SIZES.items():
        entries = read_manifest(manifests[split], required=("text", "duration"), path_key="audio_filepath")
        assert len(entries) == count
        # Relative paths keep the corpus folder movable.
        assert not Path(json.loads(manifests[split].read_text().splitlines()[0])["audio_filepath"]).is_absolute()
        for entry in entries:
            ids.add(entry["id"])
            tokens = entry["text"].split(" ")
            assert 3 <= len(tokens) <= 8 and set(tokens) <= words
            info = soundfile.info(entry["audio_filepath"])
            assert (info.samplerate, info.channels, info.subtype) == (ss.SAMPLE_RATE, 1, "PCM_16")
            assert info.frames / info.samplerate == pytest.approx(entry["duration"], abs=1e-6)
            audio, _ = soundfile.read(entry["audio_filepath"])
            assert ss.PEAK[0] - 1e-3 <= np.abs(audio).max() <= ss.PEAK[1] + 1e-3
            # Padding carries only the mixed-in noise, well below the speech.
            lead = audio[: int(ss.SILENCE_S[0] * ss.SAMPLE_RATE)]
            assert 0 < np.sqrt(np.mean(lead**2)) < 0.5 * np.sqrt(np.mean(audio**2))
    assert len(ids) == sum(SIZES.values())


def test_same_seed_gives_the_same_corpus_whatever_the_worker_count(corpus, tmp_path, monkeypatch):
    out, _ = corpus
    # Several chunks per split, so that one worker runs chunks that two workers would share out.
    monkeypatch.setattr(ss, "CHUNK_SIZE", 3)
    a = _read(Path(ss.prepare(tmp_path / "a", *SIZES.values(), seed=7, workers=1)["train"]).parent)
    b = _read(Path(ss.prepare(tmp_path / "b", *SIZES.values(), seed=7, workers=3)["train"]).parent)
    reference = _read(out)
    for split in ss.SPLITS:
        texts = [text for text, _ in reference[split]]
        assert [text for text, _ in a[split]] == [text for text, _ in b[split]] == texts
        for (_, x), (_, y) in zip(a[split], b[split]):
            np.testing.assert_array_equal(x, y)
    # Splits come from separate random streams.
    assert {text for text, _ in reference["train"]}.isdisjoint(text for text, _ in reference["test"])


def test_finished_corpus_is_reused_and_other_parameters_regenerate(tmp_path):
    out = tmp_path / "corpus"
    manifests = ss.prepare(out, 2, 1, 1, seed=3, workers=1)
    files = sorted(out.rglob("*"))
    stamps = {path: path.stat().st_mtime_ns for path in files}
    assert ss.prepare(out, 2, 1, 1, seed=3, workers=2) == manifests
    assert sorted(out.rglob("*")) == files
    assert {path: path.stat().st_mtime_ns for path in files} == stamps

    first = [e["text"] for e in read_manifest(manifests["train"])]
    ss.prepare(out, 3, 1, 1, seed=4, workers=1)
    assert json.loads((out / "corpus.json").read_text())["parameters"]["seed"] == 4
    second = [e["text"] for e in read_manifest(manifests["train"])]
    assert len(second) == 3 and second[:2] != first
    assert len(list((out / "wav" / "train").iterdir())) == 3
