"""``recognizer-prepare``: turn corpora into JSON-lines manifests.

recognizer-prepare an4 --root ../shared/data/an4 --out data/an4
recognizer-prepare iam-ondb --root ../shared/data/iam-ondb --out data/iam-ondb
recognizer-prepare synthetic-speech --out data/synthetic-speech
recognizer-prepare synthetic-ink --out data/synthetic-ink
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

#: generated corpora: name -> (module with ``prepare``, help, default training size)
SYNTHETIC = {
    "synthetic-speech": ("recognizer.corpora.synthetic_speech", "the built-in espeak-ng speech corpus", 3000),
    "synthetic-ink": ("recognizer.corpora.synthetic_ink", "the built-in Hershey-font handwriting corpus", 4000),
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recognizer-prepare", description=__doc__.splitlines()[0])
    corpora = parser.add_subparsers(dest="corpus", required=True)

    an4_parser = corpora.add_parser("an4", help="CMU AN4 (downloaded into --root when missing)")
    an4_parser.add_argument("--root", required=True, help="the AN4 folder (holding etc/ and wav/)")
    an4_parser.add_argument("--out", required=True, help="where to write train/dev[/test].jsonl")
    an4_parser.add_argument("--no-download", action="store_true", help="fail instead of downloading")

    iam_ondb_parser = corpora.add_parser(
        "iam-ondb", help="IAM On-Line Handwriting Database (folders or IAM's tarballs)"
    )
    iam_ondb_parser.add_argument(
        "--root", required=True, help="holds trainset.txt etc. and lineStrokes/, ascii/ or their tarballs"
    )
    iam_ondb_parser.add_argument(
        "--out", required=True, help="where to write train/val1/val2[/test].jsonl (and extract tarballs)"
    )
    iam_ondb_parser.add_argument("--no-validate", action="store_true", help="do not parse every stroke file (faster)")

    for name, (_, help, num_train) in SYNTHETIC.items():
        synthetic = corpora.add_parser(name, help=help)
        synthetic.add_argument("--out", required=True)
        synthetic.add_argument("--num-train", type=int, default=num_train)
        synthetic.add_argument("--num-dev", type=int, default=200)
        synthetic.add_argument("--num-test", type=int, default=200)
        synthetic.add_argument("--seed", type=int, default=0)
        synthetic.add_argument("--workers", type=int, default=None)

    args = parser.parse_args(argv)
    if args.corpus == "an4":
        from .corpora import an4

        an4.prepare(args.root, args.out, download_if_missing=not args.no_download)
    elif args.corpus == "iam-ondb":
        from .corpora import iam_ondb

        iam_ondb.prepare(args.root, args.out, validate=not args.no_validate)
    else:
        corpus = importlib.import_module(SYNTHETIC[args.corpus][0])
        manifests = corpus.prepare(
            args.out, args.num_train, args.num_dev, args.num_test, seed=args.seed, workers=args.workers
        )
        for split, path in manifests.items():
            print(f"{split}: {path}")


if __name__ == "__main__":
    main()
