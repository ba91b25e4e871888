import json

import pytest

from recognizer.manifest import ManifestError, read_manifest, write_manifest


def _manifest(tmp_path, lines):
    (tmp_path / "a.wav").write_bytes(b"")
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_relative_paths_resolve_against_the_manifest(tmp_path):
    path = _manifest(tmp_path, ['{"audio_filepath": "a.wav", "duration": 1.0, "text": "hi"}', ""])
    [entry] = read_manifest(path, path_key="audio_filepath")
    assert entry["audio_filepath"] == str(tmp_path / "a.wav")
    assert entry["id"] == "a" and entry["source"] == f"{path}:1"


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"audio_filepath": "a.wav", "text": ', r"m\.jsonl:2: invalid JSON"),
        ('["a.wav", "hi"]', r"m\.jsonl:2: expected a JSON object"),
        ('{"audio_filepath": "a.wav"}', r"m\.jsonl:2: missing field\(s\) 'text'"),
        ('{"text": "hi"}', r"m\.jsonl:2: missing field\(s\) 'audio_filepath'"),
        ('{"audio_filepath": "b.wav", "text": "hi"}', r"m\.jsonl:2: audio_filepath .*b\.wav' does not exist"),
        ('{"audio_filepath": "a.wav", "text": 3}', r"m\.jsonl:2: field 'text' must be a string"),
    ],
)
def test_bad_lines_name_manifest_and_line(tmp_path, line, message):
    path = _manifest(tmp_path, ['{"audio_filepath": "a.wav", "text": "ok"}', line])
    with pytest.raises(ManifestError, match=message):
        read_manifest(path, path_key="audio_filepath")


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "none.jsonl")


def test_write_then_read_is_nemo_compatible(tmp_path):
    (tmp_path / "wav").mkdir()
    (tmp_path / "wav" / "x.wav").write_bytes(b"")
    path = write_manifest(
        tmp_path / "m.jsonl",
        [{"audio_filepath": str(tmp_path / "wav" / "x.wav"), "duration": 0.5, "text": "yes", "source": "dropped"}],
    )
    stored = json.loads(path.read_text())
    assert stored == {"audio_filepath": "wav/x.wav", "duration": 0.5, "text": "yes"}
    assert read_manifest(path, path_key="audio_filepath")[0]["text"] == "yes"


@pytest.mark.parametrize(
    "duration, message",
    [
        ("-1.5", "positive, finite"),
        ('"2.5 s"', "must be a number of seconds"),
        ("NaN", "positive, finite"),
        ("Infinity", "positive, finite"),
        ("0", "positive, finite"),
        ("true", "must be a number"),
    ],
)
def test_bad_durations_name_the_line(tmp_path, duration, message):
    path = _manifest(
        tmp_path,
        [
            '{"audio_filepath": "a.wav", "text": "a", "duration": 1}',
            '{"audio_filepath": "a.wav", "text": "b", "duration": ' + duration + "}",
        ],
    )
    with pytest.raises(ManifestError, match=rf"m\.jsonl:2: field 'duration' .*{message}"):
        read_manifest(path, path_key="audio_filepath")


def test_non_utf8_and_empty_manifests(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"text": "ok"}\n{"text": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin1\.jsonl:2: not UTF-8 text \(byte 14 of the line\)"):
        read_manifest(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(ManifestError, match=r"empty\.jsonl: the manifest has no entries"):
        read_manifest(empty)
