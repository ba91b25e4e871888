"""Line segmentation of ink (``recognizer.ink.lines``) on IAM-OnDB pages, no model needed.

    python benchmarks/line_segmentation.py data/iam-ondb/val1.jsonl data/iam-ondb/val2.jsonl

The line files of a form share the whiteboard's coordinates, so their strokes, concatenated in line
order, are the page as written and the files say which stroke belongs to which line. Prints one JSON
line per manifest: forms whose lines all come out exactly, lines with exactly their strokes, forms with
the right number of lines, and single lines wrongly split in two or more.
"""

from __future__ import annotations

import argparse
import json

from recognizer.ink import Ink
from recognizer.ink.formats import load_ink
from recognizer.ink.lines import split_lines
from recognizer.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="+")
    args = parser.parse_args()
    for manifest in args.manifests:
        entries = read_manifest(manifest, required=("text", "form"), path_key="ink_filepath")
        inks = [load_ink(entry["ink_filepath"], entry.get("line_id")) for entry in entries]
        falsely_split = sum(len(split_lines(ink)) != 1 for ink in inks)
        by_form: dict[str, list[Ink]] = {}
        for entry, ink in zip(entries, inks):  # lines in manifest order within each form
            by_form.setdefault(entry["form"], []).append(ink)
        exact_forms = exact_lines = counted_forms = 0
        for lines in by_form.values():
            strokes, truth = [], []
            for line in lines:
                truth.append(list(range(len(strokes), len(strokes) + len(line.strokes))))
                strokes += line.strokes
            found = split_lines(Ink(strokes))
            exact_forms += found == truth
            counted_forms += len(found) == len(truth)
            exact_lines += sum(line in found for line in truth)
        print(
            json.dumps(
                {
                    "manifest": manifest,
                    "forms": len(by_form),
                    "forms_exact": exact_forms,
                    "forms_with_their_line_count": counted_forms,
                    "lines": len(entries),
                    "lines_with_exactly_their_strokes": exact_lines,
                    "single_lines_split": falsely_split,
                }
            )
        )


if __name__ == "__main__":
    main()
