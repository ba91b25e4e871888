"""Notes written over several lines: the lines of each IAM-OnDB form stacked into one ink (their files
share the whiteboard's coordinates, so this is the page as written), transcribed whole, against the
same lines transcribed one by one.

    python benchmarks/paragraphs.py --checkpoint BEST.ckpt --manifest data/iam-ondb/val2.jsonl

Prints one JSON line: line-by-line CER (the lines' edits over their characters), paragraph CER (each
form's transcript against its lines joined by newlines, newlines counted as characters), and how many
forms came out with their number of lines.
"""

from __future__ import annotations

import argparse
import json
import time

from torchmetrics.functional.text import char_error_rate

import recognizer
from recognizer.ink import Ink
from recognizer.ink.formats import load_ink
from recognizer.manifest import read_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--manifest", required=True)
    args = parser.parse_args()

    model = recognizer.load(args.checkpoint, device="cpu")
    normalize = model.tokenizer.normalize
    entries = read_manifest(args.manifest, required=("text", "form"), path_key="ink_filepath")
    by_form: dict[str, list[dict]] = {}
    for entry in entries:  # lines in manifest order within each form
        by_form.setdefault(entry["form"], []).append(entry)
    forms = list(by_form.values())
    pages, references = [], []
    for form in forms:
        lines = [load_ink(entry["ink_filepath"], entry.get("line_id")) for entry in form]
        pages.append(Ink([stroke for line in lines for stroke in line.strokes], source=form[0]["form"]))
        references.append("\n".join(normalize(entry["text"]) for entry in form))

    start = time.perf_counter()
    by_line = [t.text for t in model.transcribe([entry["ink_filepath"] for entry in entries], split_lines=False)]
    line_seconds = time.perf_counter() - start
    start = time.perf_counter()
    by_page = [t.text for t in model.transcribe(pages)]
    page_seconds = time.perf_counter() - start
    line_references = [normalize(entry["text"]) for entry in entries]
    print(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "manifest": args.manifest,
                "lines": len(entries),
                "forms": len(forms),
                "line_by_line_cer": round(float(char_error_rate(by_line, line_references)), 4),
                "paragraph_cer": round(float(char_error_rate(by_page, references)), 4),
                "forms_with_their_line_count": sum(
                    hyp.count("\n") == ref.count("\n") for hyp, ref in zip(by_page, references)
                ),
                "line_seconds": round(line_seconds, 1),
                "paragraph_seconds": round(page_seconds, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
