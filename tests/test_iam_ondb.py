"""IAM-OnDB reader: counts on the full real split lists, prepare() on a real subset, and edge cases.

A full prepare() (extracting 315 MB and parsing 8,320 stroke files) takes ~30 s, so prepare() runs here
on a handful of real forms; the full line counts are checked from the tarball listing instead.
"""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from recognizer import prepare as prepare_cli
from recognizer.corpora import iam_ondb
from recognizer.corpora.archive import check_member
from recognizer.manifest import read_manifest

# Forms from the real lists: a08-551z has CRLF line ends and 8 text lines for 9 ink lines; a01-053x-03
# (listed as a line id below) has time="0.00" glitches; all sit early in the archive.
SUBSET = {
    "trainset.txt": [" a01-020x", " a08-551z"],
    "testset_v.txt": [" a02-050"],
    "testset_t.txt": [" a01-000u", " a01-053x-03"],
}
FORMS = {"a01-020x", "a08-551z", "a02-050", "a01-000u", "a01-053x"}


@pytest.fixture(scope="module")
def real_root(shared_data) -> Path:
    return shared_data("iam-ondb")


@pytest.fixture(scope="module")
def subset_root(real_root, tmp_path_factory) -> Path:
    """A corpus folder in IAM's layout holding a few real forms: lineStrokes/ extracted, ascii as the tarball."""
    root = tmp_path_factory.mktemp("iam-subset")
    wanted = set(FORMS)
    with tarfile.open(real_root / "lineStrokes-all.tar.gz", "r|gz") as archive:
        for member in archive:
            form = Path(member.name).stem.rpartition("-")[0]
            if member.isfile() and form in FORMS:
                check_member(real_root / "lineStrokes-all.tar.gz", member)
                target = root / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
                wanted.discard(form)
            elif not wanted:
                break  # each form's files are contiguous in the archive
    shutil.copy(real_root / "ascii-all.tar.gz", root)
    for name, lines in SUBSET.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def csr_lines(ascii_root: Path, form: str) -> list[str]:
    """The CSR block of a form's ascii file, read independently of the reader under test."""
    [path] = ascii_root.rglob(f"{form}.txt")
    text = path.read_bytes().decode("latin-1").replace("\r", "")
    return [line.strip() for line in text.split("CSR:")[1].splitlines() if line.strip()]


# ---------------------------------------------------------------------------------- full real lists


def test_real_split_counts_from_tarball_listing(real_root, tmp_path):
    with tarfile.open(real_root / "lineStrokes-all.tar.gz", "r:gz") as archive:
        names = [member.name for member in archive.getmembers() if member.name.endswith(".xml")]
    assert len(names) == 8320
    # Stroke files numbered from 01 without gaps in every form.
    strokes = iam_ondb.group_stroke_files({Path(name).stem: Path(name) for name in names})
    assert all(sorted(lines) == list(range(1, len(lines) + 1)) for lines in strokes.values())
    ascii_root = iam_ondb.find_folder(real_root, tmp_path, "ascii")
    assert ascii_root == tmp_path / "ascii"
    ascii_files = {path.stem: path for path in ascii_root.rglob("*.txt")}
    counts = {}
    for split, name in [("train", "trainset.txt"), ("val1", "testset_v.txt"), ("val2", "testset_t.txt")]:
        entries, skipped = iam_ondb.read_split(real_root / name, strokes, ascii_files, validate=False)
        counts[split] = len(entries)
        assert not skipped, (split, skipped)
        assert all(
            entry["text"] and entry["text"] == entry["text"].strip() and "\r" not in entry["text"] for entry in entries
        )
    assert counts == {"train": 5364, "val1": 1438, "val2": 1518}
    assert len(iam_ondb.read_split_list(real_root / "trainset.txt")) == 775


# ---------------------------------------------------------------------------------- prepare, subset


@pytest.fixture(scope="module")
def prepared(subset_root, tmp_path_factory) -> dict[str, Path]:
    return iam_ondb.prepare(subset_root, tmp_path_factory.mktemp("iam-out"))


def test_prepare_real_subset(prepared, subset_root):
    assert set(prepared) == {"train", "val1", "val2"}  # no testset_f.txt, no test.jsonl
    assert not (prepared["train"].parent / "test.jsonl").exists()
    manifests = {
        split: read_manifest(path, required=("text", "line_id", "form"), path_key="ink_filepath")
        for split, path in prepared.items()
    }
    assert {split: len(entries) for split, entries in manifests.items()} == {"train": 6 + 9, "val1": 8, "val2": 6 + 1}
    ascii_root = prepared["train"].parent / "ascii"  # extracted from the tarball into --out
    by_id = {}
    for entries in manifests.values():
        for entry in entries:
            assert Path(entry["ink_filepath"]).is_absolute() and Path(entry["ink_filepath"]).is_file()
            assert Path(entry["ink_filepath"]).stem == entry["line_id"] == entry["id"]
            assert entry["line_id"].startswith(entry["form"] + "-") and "writer" not in entry
            by_id[entry["id"]] = entry
    assert (
        by_id["a01-020x-01"]["text"]
        == csr_lines(ascii_root, "a01-020x")[0]
        == "Mr . Macleod went on with the conference"
    )
    assert by_id["a02-050-02"]["text"] == csr_lines(ascii_root, "a02-050")[1] == "was not * to bring the President back"
    assert [by_id[f"a01-000u-{n:02d}"]["text"] for n in range(1, 7)] == csr_lines(ascii_root, "a01-000u")
    assert by_id["a01-053x-03"]["text"] == "black - listed by the Government ."
    # The one form with a text line for two ink lines, split at its "%%%" mark (CRLF removed).
    assert by_id["a08-551z-08"]["text"] == "weeks to have a broken ankle bone"
    assert by_id["a08-551z-09"]["text"] == "pinned."
    assert by_id["a08-551z-01"]["text"] == "It has been provisionally"


def test_prepare_skips_and_counts(subset_root, tmp_path, capsys):
    root = tmp_path / "root"
    shutil.copytree(subset_root, root)
    strokes = root / "lineStrokes" / "a01" / "a01-000"
    (strokes / "a01-000u-02.xml").unlink()
    (strokes / "a01-000u-03.xml").write_text("<WhiteboardCaptureSession><StrokeSet><Stroke>")
    (root / "testset_f.txt").write_text(" a01-020x\n a99-999\n")
    out = tmp_path / "out"
    prepare_cli.main(["iam-ondb", "--root", str(root), "--out", str(out)])
    printed = capsys.readouterr()
    assert "a01-000u-03.xml: malformed XML" in printed.err
    assert (
        "iam-ondb val2 (testset_t.txt): 5 lines from 2 forms written, 2 skipped (1 missing stroke file, 1 unreadable ink)"
        in printed.out
    )
    assert "iam-ondb test (testset_f.txt): 6 lines from 1 forms written, 1 skipped (1 form not found)" in printed.out
    assert sorted(path.name for path in out.glob("*.jsonl")) == [
        "test.jsonl",
        "train.jsonl",
        "val1.jsonl",
        "val2.jsonl",
    ]
    assert len(read_manifest(out / "test.jsonl", path_key="ink_filepath")) == 6
    assert (out / "lineStrokes").exists() is False  # the folder in --root was used, not extracted again


def test_prepare_needs_the_split_lists(tmp_path):
    with pytest.raises(FileNotFoundError, match="trainset.txt"):
        iam_ondb.prepare(tmp_path, tmp_path / "out")


# ------------------------------------------------------------------------------------ edge cases


def test_normalize_text():
    assert iam_ondb.normalize_text(" &quot;Abolish Lords&quot;  &amp; more \r") == '"Abolish Lords" & more'
    assert iam_ondb.normalize_text("Genius & food - # crossed") == "Genius & food - # crossed"


def test_split_list_accepts_form_and_line_ids(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text(" a01-000u\n a01-003\n a01-003-02\n\n a01-000u\n")
    assert iam_ondb.read_split_list(path) == [("a01-000u", None), ("a01-003", None), ("a01-003", 2)]


def test_line_count_mismatch_skips_the_form(tmp_path, capsys):
    ascii_file = tmp_path / "f01-001.txt"
    ascii_file.write_text("OCR:\n\nx\n\nCSR:\n\nonly one line\n")
    (tmp_path / "list.txt").write_text(" f01-001\n")
    strokes = {"f01-001": {1: tmp_path / "f01-001-01.xml", 2: tmp_path / "f01-001-02.xml"}}
    entries, skipped = iam_ondb.read_split(tmp_path / "list.txt", strokes, {"f01-001": ascii_file}, validate=False)
    assert entries == [] and skipped == {"text/ink line count mismatch": 2}
    assert "1 text lines but stroke files up to 02" in capsys.readouterr().err


def test_lines_of_real_forms_stacked_into_a_page_are_found_again(subset_root):
    """The line files of a form share the whiteboard's coordinates: stacked, they are the page as
    written, and ``split_lines`` must give back each line's strokes."""
    from recognizer.ink import Ink
    from recognizer.ink.formats import read_iam_ondb_strokes
    from recognizer.ink.lines import split_lines

    for form in sorted(FORMS):
        files = sorted((subset_root / "lineStrokes").rglob(f"{form}-*.xml"))
        strokes, truth = [], []
        for path in files:
            line = read_iam_ondb_strokes(path).strokes
            truth.append(list(range(len(strokes), len(strokes) + len(line))))
            strokes += line
        assert len(files) > 3 and split_lines(Ink(strokes)) == truth, form
