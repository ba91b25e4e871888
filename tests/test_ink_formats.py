"""Ink readers and writer: real IAM-OnDB files, InkML and JSON written here, malformed and hostile XML."""

from __future__ import annotations

import json
import math
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recognizer.ink import Ink, InkError
from recognizer.ink.formats import (
    INK_SUFFIXES,
    load_ink,
    read_iam_ondb_strokes,
    read_inkml,
    read_json_ink,
    write_json_ink,
)

# Early in the archive, so streaming to them is quick; a01-053x-03 has "time=0.00" glitches.
REAL_LINES = ("a01-000u-01", "a01-000u-02", "a01-053x-03")


@pytest.fixture(scope="module")
def real_lines(shared_data, tmp_path_factory) -> dict[str, Path]:
    """A few real stroke files, read straight from IAM's tarball (nothing else is extracted)."""
    tarball = shared_data("iam-ondb") / "lineStrokes-all.tar.gz"
    out = tmp_path_factory.mktemp("iam-lines")
    found = {}
    with tarfile.open(tarball, "r|gz") as archive:
        for member in archive:
            stem = Path(member.name).stem
            if member.isfile() and stem in REAL_LINES:
                (out / f"{stem}.xml").write_bytes(archive.extractfile(member).read())
                found[stem] = out / f"{stem}.xml"
                if len(found) == len(REAL_LINES):
                    break
    assert sorted(found) == sorted(REAL_LINES)
    return found


# ---------------------------------------------------------------------------------- IAM-OnDB, real


def test_real_iam_ondb_line(real_lines):
    path = real_lines["a01-000u-01"]
    ink = read_iam_ondb_strokes(path)
    text = path.read_text(encoding="latin-1")
    assert len(ink.strokes) == text.count("<Stroke ") == 31
    assert ink.num_points == text.count("<Point ") == 568
    # The first point as written: x="1073" y="1058" time="769.05", time shifted to start at 0.
    np.testing.assert_allclose(ink.strokes[0][0], [1073, 1058, 0])
    np.testing.assert_allclose(ink.strokes[0][1], [1072, 1085, 0.02], atol=1e-9)
    np.testing.assert_allclose(ink.strokes[-1][-1], [6488, 1152, 790.10 - 769.05], atol=1e-9)
    assert ink.has_time and ink.text is None and ink.empty_strokes == 0
    assert ink.source == str(path)
    assert load_ink(path, line_id="a01-000u-01").num_points == 568


def test_real_zero_time_glitches_are_interpolated(real_lines):
    path = real_lines["a01-053x-03"]
    assert 'time="0.00"' in path.read_text(encoding="latin-1")
    times = read_iam_ondb_strokes(path).points()[:, 2]
    assert times.min() == 0 and times[0] == 0
    # Without the repair the glitch point sat ~637 s before the line started.
    assert np.diff(times).min() > -0.05 and times.max() < 60


def test_real_lines_differ(real_lines):
    first, second = (read_iam_ondb_strokes(real_lines[name]) for name in REAL_LINES[:2])
    assert first.num_points != second.num_points


# ----------------------------------------------------------------------------- IAM-OnDB, synthetic


def iam_xml(*strokes: str) -> str:
    body = "".join(f'<Stroke colour="black" start_time="1" end_time="2">{s}</Stroke>' for s in strokes)
    return f'<?xml version="1.0" encoding="ISO-8859-1"?><WhiteboardCaptureSession><StrokeSet>{body}</StrokeSet></WhiteboardCaptureSession>'


def point(x, y, t="100.5") -> str:
    return f'<Point x="{x}" y="{y}" time="{t}"/>' if t is not None else f'<Point x="{x}" y="{y}"/>'


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_iam_empty_strokes_are_counted(tmp_path):
    path = write(tmp_path / "a.xml", iam_xml(point(1, 2, "10.0") + point(3, 4, "10.5"), "", point(5, 6, "11.0")))
    ink = read_iam_ondb_strokes(path)
    assert len(ink.strokes) == 2 and ink.empty_strokes == 1
    np.testing.assert_allclose(ink.points()[:, 2], [0, 0.5, 1.0])


def test_iam_without_time_is_nan(tmp_path):
    ink = read_iam_ondb_strokes(write(tmp_path / "a.xml", iam_xml(point(1, 2, None) + point(3, 4, None))))
    assert not ink.has_time and np.isnan(ink.points()[:, 2]).all()


@pytest.mark.parametrize(
    "strokes, message",
    [
        ((point(1, 2), '<Point x="1" time="3"/>'), r"stroke 2, point 1 .*'y': missing"),
        ((point(1, 2) + '<Point x="1" y="two" time="3"/>',), r"stroke 1, point 2 .*'y': not a number"),
        ((point(1, 2) + point(1, 2, "soon"),), r"stroke 1, point 2 .*'time': not a number"),
        ((point("nan", 2),), "NaN or infinite coordinates"),
        ((point(1, "1e12"),), "absurd coordinates"),
        (("", ""), "no points"),
        ((), "no points"),
    ],
)
def test_iam_bad_values(tmp_path, strokes, message):
    path = write(tmp_path / "bad.xml", iam_xml(*strokes))
    with pytest.raises(InkError, match=message) as error:
        load_ink(path)
    assert str(path) in str(error.value)


def test_iam_wrong_root(tmp_path):
    path = write(tmp_path / "other.xml", "<svg><path/></svg>")
    with pytest.raises(InkError, match=r"other\.xml: not an IAM-OnDB lineStrokes file"):
        read_iam_ondb_strokes(path)


# ------------------------------------------------------------------------------ hostile XML


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<{root}><annotation type="truth">&lol9;</annotation><StrokeSet><Stroke><Point x="1" y="2" time="&lol9;"/></Stroke></StrokeSet>
<trace>1 2, 3 4</trace></{root}>"""

EXTERNAL_ENTITY = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<{root}><annotation type="truth">&x;</annotation><StrokeSet><Stroke><Point x="1" y="2" time="3"/></Stroke></StrokeSet>
<trace>1 2, 3 4</trace></{root}>"""

TRUNCATED = '<?xml version="1.0"?><{root}><StrokeSet><Stroke><Point x="1" y="2" time="3"/></Stroke><trace>1 2, 3'

ROOTS = {".xml": "WhiteboardCaptureSession", ".inkml": "ink"}


@pytest.mark.parametrize("suffix", sorted(ROOTS))
@pytest.mark.parametrize(
    "document, message",
    [(BILLION_LAUGHS, "entity declarations"), (EXTERNAL_ENTITY, "entity declarations"), (TRUNCATED, "malformed XML")],
    ids=["billion-laughs", "external-entity", "truncated"],
)
def test_hostile_and_malformed_xml(tmp_path, suffix, document, message):
    path = write(tmp_path / f"hostile{suffix}", document.format(root=ROOTS[suffix]))
    start = time.perf_counter()
    with pytest.raises(InkError, match=message) as error:
        load_ink(path)
    assert time.perf_counter() - start < 1  # refused at the declaration, nothing expanded
    assert str(path) in str(error.value)
    assert "lollol" not in str(error.value) and "root:" not in str(error.value)


# ----------------------------------------------------------------------------------------- InkML


INKML_NS = 'xmlns="http://www.w3.org/2003/InkML"'


def test_inkml_without_time_channel(tmp_path):
    path = write(
        tmp_path / "plain.inkml",
        f"<ink {INKML_NS}><trace>10 0, 9 14, 8 28</trace><trace xml:id='t2'> 1 1 ,2 2 </trace><trace></trace></ink>",
    )
    [ink] = read_inkml(path)
    assert ink.text is None and ink.source == f"{path}#0" and not ink.has_time
    assert ink.empty_strokes == 1
    np.testing.assert_array_equal(ink.strokes[0][:, :2], [[10, 0], [9, 14], [8, 28]])
    np.testing.assert_array_equal(ink.strokes[1][:, :2], [[1, 1], [2, 2]])
    assert load_ink(path).num_points == 5


def test_inkml_time_channel_and_document_annotation(tmp_path):
    # No namespace, a force channel between Y and T, and T in milliseconds.
    path = write(
        tmp_path / "timed.inkml",
        """<ink><annotation type="truth">hello world</annotation><annotation type="writer">w1</annotation>
        <traceFormat><channel name="X"/><channel name="Y"/><channel name="F"/><channel name="T" units="ms"/></traceFormat>
        <trace>5 6 0.5 1000, 7 8 0.5 1010</trace><trace>9 10 0.4 1500</trace></ink>""",
    )
    [ink] = read_inkml(path)
    assert ink.text == "hello world" and ink.has_time
    np.testing.assert_allclose(ink.points(), [[5, 6, 0], [7, 8, 0.01], [9, 10, 0.5]])


def test_inkml_trace_groups_with_truth(tmp_path):
    path = write(
        tmp_path / "groups.inkml",
        f"""<ink {INKML_NS}>
          <annotation type="truth">ignored when groups are annotated</annotation>
          <definitions><context xml:id="ctx"><traceFormat>
            <channel name="X"/><channel name="Y"/><channel name="T"/></traceFormat></context></definitions>
          <trace xml:id="a" contextRef="#ctx">0 0 10, 1 1 10.1</trace>
          <trace xml:id="b" contextRef="#ctx">2 2 10.2</trace>
          <trace xml:id="c" contextRef="#ctx">3 3 20, 4 4 20.5</trace>
          <traceGroup xml:id="line1">
            <annotation type="truth">first line</annotation>
            <traceView traceDataRef="#a"/><traceView traceDataRef="b"/>
          </traceGroup>
          <traceGroup>
            <annotation type="truth">second line</annotation>
            <traceGroup><annotation type="truth">nested word</annotation><traceView traceDataRef="#c"/></traceGroup>
            <trace>7 7, 8 8</trace>
          </traceGroup>
          <traceGroup><annotation type="UI">not a sample</annotation><traceView traceDataRef="#a"/></traceGroup>
        </ink>""",
    )
    first, second = read_inkml(path)
    assert (first.text, first.source) == ("first line", f"{path}#line1")
    np.testing.assert_allclose(first.points(), [[0, 0, 0], [1, 1, 0.1], [2, 2, 0.2]], atol=1e-9)
    assert (second.text, second.source) == ("second line", f"{path}#1")
    assert len(second.strokes) == 2 and not second.has_time  # the nested trace has no context: X Y only
    assert load_ink(path, line_id="line1").text == "first line"
    assert load_ink(path, line_id="1").text == "second line"
    with pytest.raises(InkError, match=r"groups\.inkml: holds 2 samples"):
        load_ink(path)
    with pytest.raises(InkError, match=r"no sample 'line9' among its 2 \(line1, 1\)"):
        load_ink(path, line_id="line9")


def test_inkml_difference_prefixes(tmp_path):
    # Second differences accumulate a velocity; a prefix holds, per channel, until another replaces it.
    path = write(tmp_path / "diff.inkml", f"<ink {INKML_NS}><trace>10 20,'1'-2,\"1\"0,1-1,!0!0,'5 5</trace></ink>")
    [ink] = read_inkml(path)
    expected = [[10, 20], [11, 18], [13, 16], [16, 13], [0, 0], [5, 5]]
    np.testing.assert_array_equal(ink.strokes[0][:, :2], expected)


def test_inkml_points_without_commas_and_unknown_values(tmp_path):
    path = write(tmp_path / "draft.inkml", "<ink><trace>10 0 9 14 8 28</trace></ink>")
    np.testing.assert_array_equal(read_inkml(path)[0].strokes[0][:, :2], [[10, 0], [9, 14], [8, 28]])
    path = write(tmp_path / "unknown.inkml", "<ink><trace>10 0, ? 3</trace></ink>")
    with pytest.raises(InkError, match="NaN or infinite"):
        read_inkml(path)


@pytest.mark.parametrize(
    "body, message",
    [
        ("<trace>'1 2, 3 4</trace>", "first difference with no previous point"),
        ('<trace>1 2, "1 2</trace>', "second difference needs two previous points"),
        ("<trace>1 2, 3</trace>", "point 2 has 1 values"),
        ("<trace>1 2, 3 x</trace>", "point 2: cannot read 'x'"),
        ("<trace>1 2 3</trace>", "do not split into points"),
        ("<traceView traceDataRef='#nowhere'/>", "refers to no element"),
        ("<traceFormat><channel name='X'/></traceFormat><trace>1</trace>", "has no Y channel"),
        ("<traceFormat><channel name='X'/><channel name='Y'/><channel name='T' units='h'/></traceFormat>", "time unit"),
        ("", "no points"),
    ],
)
def test_inkml_errors(tmp_path, body, message):
    path = write(tmp_path / "bad.inkml", f"<ink {INKML_NS}>{body}</ink>")
    with pytest.raises(InkError, match=message) as error:
        read_inkml(path)
    assert str(path) in str(error.value)


def test_inkml_wrong_root(tmp_path):
    with pytest.raises(InkError, match="not an InkML file"):
        read_inkml(write(tmp_path / "x.inkml", "<svg/>"))


# ------------------------------------------------------------------------------------------ JSON


def test_json_read_and_round_trip(tmp_path):
    path = write(
        tmp_path / "a.json", json.dumps({"text": "hi", "strokes": [[[1, 2, 0], [3, 4, 0.25]], [], [[5, 6, 0.5]]]})
    )
    ink = read_json_ink(path)
    assert (ink.text, ink.empty_strokes, ink.has_time, ink.source) == ("hi", 1, True, str(path))
    again = read_json_ink(write_json_ink(tmp_path / "out" / "b.json", ink))
    assert again.text == "hi" and len(again.strokes) == 2
    for a, b in zip(ink.strokes, again.strokes):
        np.testing.assert_array_equal(a, b)


def test_json_write_rounds_and_drops_missing_time(tmp_path):
    ink = Ink([np.array([[1.123456789, 2.0], [3.5, -4.00004]])], text=None)
    path = write_json_ink(tmp_path / "c.json", ink)
    assert json.loads(path.read_text()) == {"text": None, "strokes": [[[1.1235, 2], [3.5, -4.0]]]}
    again = read_json_ink(path)
    assert not again.has_time and again.text is None
    np.testing.assert_allclose(again.strokes[0][:, :2], [[1.1235, 2], [3.5, -4.0]])


def test_json_real_ink_round_trip(real_lines, tmp_path):
    ink = read_iam_ondb_strokes(real_lines["a01-000u-01"])
    ink.text = "A MOVE to stop Mr . Gaitskell"
    again = load_ink(write_json_ink(tmp_path / "line.json", ink))
    assert again.text == ink.text and again.num_points == ink.num_points
    np.testing.assert_allclose(again.points(), ink.points(), atol=5e-5)


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"strokes": [[[1, 2, 3]], [[4, 5]]]}', "some points have a time value and others do not"),
        ('{"strokes": [[[1, 2, 3]]', "invalid JSON"),
        ('{"strokes": [[[1, "2"]]]}', r"stroke 1, point 1 .*expected \[x, y\]"),
        ('{"strokes": [[[1, true]]]}', r"stroke 1, point 1"),
        ('{"strokes": [[1, 2]]}', r"stroke 1, point 1"),
        ('{"strokes": [[[1]]]}', r"stroke 1, point 1"),
        ('{"strokes": [3]}', "stroke 1 .* not a list"),
        ('{"strokes": [[[1, 2]]], "text": 5}', '"text" must be a string'),
        ("[[[1, 2]]]", 'a "strokes" list'),
        ('{"strokes": [[[NaN, 2]]]}', "NaN or infinite"),
        ('{"strokes": [[[1e9, 2]]]}', "absurd coordinates"),
        ('{"strokes": [[], []]}', "no points"),
        ('{"strokes": []}', "no points"),
    ],
)
def test_json_errors(tmp_path, content, message):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(InkError, match=message) as error:
        load_ink(path)
    assert str(path) in str(error.value)


# ---------------------------------------------------------------------------------------- dispatch


def test_load_ink_suffixes(tmp_path):
    assert INK_SUFFIXES == (".xml", ".inkml", ".json")
    with pytest.raises(InkError, match=r"ink\.svg: unknown ink file type '\.svg'"):
        load_ink(write(tmp_path / "ink.svg", "<svg/>"))
    with pytest.raises(InkError, match=r"missing\.json: cannot read"):
        load_ink(tmp_path / "missing.json")
    upper = write(tmp_path / "UP.JSON", '{"strokes": [[[1, 2]]]}')
    assert load_ink(upper).num_points == 1
    assert math.isnan(load_ink(upper).strokes[0][0, 2])


def test_partly_missing_timestamps_read_as_untimed_in_every_format(tmp_path):
    """Some points with a time, others without (absent or NaN): one rule for every reader."""
    iam = tmp_path / "line.xml"
    iam.write_text(
        "<WhiteboardCaptureSession><StrokeSet><Stroke>"
        '<Point x="1" y="2" time="3"/><Point x="2" y="2"/><Point x="3" y="2" time="nan"/>'
        "</Stroke></StrokeSet></WhiteboardCaptureSession>"
    )
    inkml = tmp_path / "line.inkml"
    inkml.write_text(
        f'<ink {INKML_NS}><traceFormat><channel name="X"/><channel name="Y"/><channel name="T"/>'
        "</traceFormat><trace>1 2 3, 2 2 ?, 3 2 4</trace></ink>"
    )
    json_ink = tmp_path / "line.json"
    json_ink.write_text('{"strokes": [[[1, 2, 3], [2, 2, NaN], [3, 2, 4]]]}')
    for path in (iam, inkml, json_ink):
        ink = load_ink(path)
        assert not ink.has_time and np.isnan(ink.points()[:, 2]).all(), path
        assert ink.dropped_times in (1, 2)
    infinite = tmp_path / "infinite.json"
    infinite.write_text('{"strokes": [[[1, 2, 3], [2, 2, Infinity]]]}')
    with pytest.raises(InkError, match="infinite timestamp"):
        load_ink(infinite)


def test_inkml_from_another_device_annotationxml_truth_and_integer_tablet_units():
    """A tablet's export: no namespace, integer coordinates in device units (0.01 mm), T in ms, the
    truth in <annotationXML><Label>, device metadata in a page-level annotationXML."""
    from recognizer.ink import functional as F
    from recognizer.ink.frontend import InkFrontend

    path = Path(__file__).parent / "fixtures" / "tablet-annotationxml.inkml"
    first, second = read_inkml(path)
    assert (first.text, second.text) == ("hello world", "tablet ink")
    assert first.source.endswith("#line1") and load_ink(path, line_id="line2").text == "tablet ink"
    points = first.points()
    assert first.has_time and (points[:, :2] == np.round(points[:, :2])).all() and points[:, :2].max() > 10000
    for frontend in (InkFrontend(), InkFrontend(representation="bezier")):
        for ink in (first, second):
            normalized = frontend.load(ink)
            assert 0.5 < F.estimate_line_height(normalized) < 2  # tablet units become line heights
            assert torch.isfinite(frontend.features(normalized)).all()


def test_annotationxml_forms_of_the_truth(tmp_path):
    path = write(
        tmp_path / "forms.inkml",
        """<ink><traceGroup><annotationXML type="truth">typed truth</annotationXML><trace>0 0, 1 1</trace></traceGroup>
        <traceGroup><annotationXML><meta><truth> nested
        truth </truth></meta></annotationXML><trace>2 2, 3 3</trace></traceGroup>
        <traceGroup><annotationXML><writer>w1</writer></annotationXML><trace>4 4</trace></traceGroup></ink>""",
    )
    assert [ink.text for ink in read_inkml(path)] == ["typed truth", "nested truth"]
