"""AN4 reader: the real training list in ../shared/data/an4, plus small corpora built from it in CMU's layout."""

from __future__ import annotations

import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest
import soundfile

from recognizer.corpora import an4
from recognizer.manifest import read_manifest

FOLDERS = {"train": "an4_clstk", "test": "an4test_clstk"}


@pytest.fixture(scope="module")
def real_root(shared_data) -> Path:
    return shared_data("an4")


@pytest.fixture(scope="module")
def real_train(real_root) -> list[dict]:
    return an4.read_split(real_root, "train")


@pytest.fixture
def small_splits(real_train) -> dict[str, list[dict]]:
    """Five training utterances from two speakers and three test ones from a third."""
    by_speaker: dict[str, list[dict]] = {}
    for entry in real_train:
        by_speaker.setdefault(entry["speaker"], []).append(entry)
    speakers = sorted(by_speaker)
    return {
        "train": by_speaker[speakers[0]][:2] + by_speaker[speakers[-1]][:3],
        "test": by_speaker[speakers[1]][:3],
    }


def build_corpus(dest: Path, splits: dict[str, list[dict]], extension: str = ".sph") -> Path:
    """Write ``splits`` (entries as read_split returns them) in CMU's layout; audio as SPHERE or WAV."""
    (dest / "etc").mkdir(parents=True)
    for split, entries in splits.items():
        transcription, fileids = [], []
        for entry in entries:
            uttid = entry["id"][len(entry["speaker"]) + 1 :]
            fileid = f"{FOLDERS[split]}/{entry['speaker']}/{uttid}"
            audio = dest / "wav" / f"{fileid}{extension}"
            audio.parent.mkdir(parents=True, exist_ok=True)
            if extension == ".wav":
                shutil.copyfile(entry["audio_filepath"], audio)
            else:
                data, rate = soundfile.read(entry["audio_filepath"], dtype="int16")
                soundfile.write(audio, data, rate, format="NIST", subtype="PCM_16")
            transcription.append(f"<s> {entry['text']} </s> ({uttid})\n")
            fileids.append(f"{fileid}\n")
        (dest / "etc" / f"an4_{split}.transcription").write_text("".join(transcription))
        (dest / "etc" / f"an4_{split}.fileids").write_text("".join(fileids))
    return dest


def make_tarball(path: Path, corpus: Path) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        archive.add(corpus, arcname="an4")
    return path


def rewrite_line(path: Path, number: int, text: str | None) -> None:
    lines = path.read_text().splitlines(keepends=True)
    if text is None:
        del lines[number - 1]
    else:
        lines[number - 1] = text
    path.write_text("".join(lines))


# --- the real training list ---------------------------------------------------------------------


def test_read_train_real(real_train):
    assert len(real_train) == 948
    assert len({entry["id"] for entry in real_train}) == 948
    assert len({entry["speaker"] for entry in real_train}) == 74
    for entry in real_train:
        assert set(entry) == {"id", "audio_filepath", "duration", "text", "speaker"}
        assert entry["duration"] > 0
        assert Path(entry["audio_filepath"]).is_absolute() and Path(entry["audio_filepath"]).is_file()
        assert re.fullmatch(r"[A-Z]+( [A-Z]+)*", entry["text"]), entry
        assert entry["id"].startswith(entry["speaker"] + "-")
    first = next(entry for entry in real_train if entry["id"] == "fkai-an311-fkai-b")
    assert first["text"] == "ERASE I S L F THIRTY EIGHT"
    assert first["audio_filepath"].endswith("wav/an4_clstk/fkai/an311-fkai-b.wav")


def test_split_dev_real(real_train):
    train, dev = an4.split_dev(real_train)
    assert (len(train), len(dev)) == (848, 100)
    assert [entry["id"] for entry in dev] == sorted(entry["id"] for entry in real_train)[:100]
    assert {entry["speaker"] for entry in dev}.isdisjoint(entry["speaker"] for entry in train)
    with pytest.raises(ValueError, match="949"):
        an4.split_dev(real_train, 949)


def test_prepare_real(real_root, tmp_path, capsys):
    manifests = an4.prepare(real_root, tmp_path / "out", download_if_missing=False)
    assert set(manifests) == {"train", "dev"}
    assert not (tmp_path / "out" / "test.jsonl").exists()
    train = read_manifest(manifests["train"], required=("text", "duration"), path_key="audio_filepath")
    dev = read_manifest(manifests["dev"], required=("text", "duration"), path_key="audio_filepath")
    assert (len(train), len(dev)) == (848, 100)
    # Stored absolute: the corpus is outside the manifest folder.
    assert all(
        Path(json.loads(line)["audio_filepath"]).is_absolute() for line in manifests["dev"].read_text().splitlines()
    )
    assert {entry["speaker"] for entry in dev}.isdisjoint(entry["speaker"] for entry in train)
    printed = capsys.readouterr().out
    assert "train: 848 utterances" in printed and "dev: 100 utterances" in printed


# --- the test split and SPHERE audio --------------------------------------------------------------


def test_read_test_split_sph(tmp_path, small_splits):
    corpus = build_corpus(tmp_path / "an4", small_splits, ".sph")
    test = an4.read_split(corpus, "test")
    assert [entry["id"] for entry in test] == [entry["id"] for entry in small_splits["test"]]
    for entry, original in zip(test, small_splits["test"]):
        assert entry["audio_filepath"] == str(
            corpus.resolve()
            / "wav"
            / "an4test_clstk"
            / entry["speaker"]
            / (entry["id"][len(entry["speaker"]) + 1 :] + ".sph")
        )
        assert entry["duration"] == pytest.approx(original["duration"])
        assert (entry["text"], entry["speaker"]) == (original["text"], original["speaker"])


def test_prepare_with_test_split_and_mixed_audio(tmp_path, small_splits):
    corpus = build_corpus(tmp_path / "an4", small_splits, ".sph")
    # A converted copy may mix formats; each file id takes whichever file is there.
    first = Path(an4.read_split(corpus, "train")[0]["audio_filepath"])
    data, rate = soundfile.read(first)
    first.unlink()
    soundfile.write(first.with_suffix(".wav"), data, rate)

    manifests = an4.prepare(corpus, tmp_path / "out", download_if_missing=False, num_dev=2)
    assert set(manifests) == {"train", "dev", "test"}
    counts = {
        split: len(read_manifest(path, required=("text", "duration"), path_key="audio_filepath"))
        for split, path in manifests.items()
    }
    assert counts == {"train": 3, "dev": 2, "test": 3}
    suffixes = {Path(entry["audio_filepath"]).suffix for path in manifests.values() for entry in read_manifest(path)}
    assert suffixes == {".wav", ".sph"}


# --- download -----------------------------------------------------------------------------------


def test_download_then_prepare(tmp_path, small_splits):
    tarball = make_tarball(tmp_path / "an4_sphere.tar.gz", build_corpus(tmp_path / "src" / "an4", small_splits))
    root = tmp_path / "data"
    manifests = an4.prepare(root, tmp_path / "out", url=tarball.as_uri(), num_dev=2)
    assert (root / "an4_sphere.tar.gz").is_file()
    assert sorted(path.name for path in root.iterdir()) == ["an4", "an4_sphere.tar.gz"]  # no staging left
    entries = {
        split: read_manifest(path, required=("text", "duration"), path_key="audio_filepath")
        for split, path in manifests.items()
    }
    assert {split: len(rows) for split, rows in entries.items()} == {"train": 3, "dev": 2, "test": 3}
    for rows in entries.values():
        for entry in rows:
            assert Path(entry["audio_filepath"]).is_relative_to((root / "an4" / "wav").resolve())
            assert entry["audio_filepath"].endswith(".sph")

    # A second run finds the extracted copy and needs no download.
    tarball.unlink()
    assert an4.prepare(root, tmp_path / "out2", url=tarball.as_uri(), num_dev=2).keys() == manifests.keys()


def test_download_returns_corpus_folder(tmp_path, small_splits):
    tarball = make_tarball(tmp_path / "an4_sphere.tar.gz", build_corpus(tmp_path / "src" / "an4", small_splits))
    assert an4.download(tmp_path / "data", tarball.as_uri()) == tmp_path / "data" / "an4"


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes = b"gotcha\n") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("kind", ["parent", "nested-parent", "absolute", "symlink"])
def test_download_rejects_escaping_members(tmp_path, kind):
    tarball = tmp_path / "an4_sphere.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        _add_bytes(archive, "an4/etc/an4_train.transcription", b"<s> YES </s> (an251-fash-b)\n")
        if kind == "parent":
            _add_bytes(archive, "../evil")
        elif kind == "nested-parent":
            _add_bytes(archive, "an4/../../evil")
        elif kind == "absolute":
            _add_bytes(archive, str(tmp_path / "evil"))
        else:
            link = tarfile.TarInfo("an4/link")
            link.type, link.linkname = tarfile.SYMTYPE, "../../evil"
            archive.addfile(link)
    root = tmp_path / "data"
    with pytest.raises(ValueError, match="refusing"):
        an4.download(root, tarball.as_uri())
    assert not (tmp_path / "evil").exists()
    assert [path.name for path in root.iterdir()] == ["an4_sphere.tar.gz"]  # nothing extracted


def test_prepare_without_corpus_or_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="an4_train.transcription"):
        an4.prepare(tmp_path, tmp_path / "out", download_if_missing=False)


# --- errors name the file and line -----------------------------------------------------------------


def test_malformed_transcription_line(tmp_path, small_splits):
    corpus = build_corpus(tmp_path / "an4", small_splits)
    transcription = corpus / "etc" / "an4_train.transcription"
    rewrite_line(transcription, 2, "<s> YES </s>\n")
    with pytest.raises(ValueError, match=re.escape(f"{transcription.resolve()}:2:")):
        an4.read_split(corpus, "train")


def test_fileids_out_of_order(tmp_path, small_splits):
    corpus = build_corpus(tmp_path / "an4", small_splits)
    fileids = corpus / "etc" / "an4_train.fileids"
    lines = fileids.read_text().splitlines(keepends=True)
    lines[2], lines[3] = lines[3], lines[2]
    fileids.write_text("".join(lines))
    with pytest.raises(ValueError, match=re.escape(f"{fileids.resolve()}:3:") + ".*does not match"):
        an4.read_split(corpus, "train")


def test_fileids_count_mismatch(tmp_path, small_splits):
    corpus = build_corpus(tmp_path / "an4", small_splits)
    fileids = corpus / "etc" / "an4_train.fileids"
    transcription = corpus / "etc" / "an4_train.transcription"
    original = fileids.read_text()

    fileids.write_text(original + "an4_clstk/fash/an999-fash-b\n")
    with pytest.raises(ValueError, match=re.escape(f"{fileids.resolve()}:6:") + ".*more file ids"):
        an4.read_split(corpus, "train")

    fileids.write_text(original)
    rewrite_line(fileids, 5, None)
    with pytest.raises(ValueError, match=re.escape(f"{transcription.resolve()}:5:") + ".*more transcripts"):
        an4.read_split(corpus, "train")


def test_missing_audio_names_id_and_path(tmp_path, small_splits):
    corpus = build_corpus(tmp_path / "an4", small_splits)
    entry = small_splits["test"][1]
    uttid = entry["id"][len(entry["speaker"]) + 1 :]
    (corpus / "wav" / "an4test_clstk" / entry["speaker"] / f"{uttid}.sph").unlink()
    expected = corpus.resolve() / "wav" / "an4test_clstk" / entry["speaker"] / f"{uttid}.wav"
    with pytest.raises(FileNotFoundError, match=re.escape(entry["id"]) + ".*" + re.escape(str(expected))):
        an4.read_split(corpus, "test")


def test_unknown_split(tmp_path):
    with pytest.raises(ValueError, match="dev"):
        an4.read_split(tmp_path, "dev")


# --- the shared-data helper -----------------------------------------------------------------------


def test_shared_data_missing_fails_on_ci(shared_data, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no-such-corpus"):
        shared_data("no-such-corpus")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no-such-corpus"):
        shared_data("no-such-corpus")
