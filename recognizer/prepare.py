"""``recognizer-prepare``: turn corpora into JSON-lines manifests.

    recognizer-prepare an4 --root ../shared/data/an4 --out data/an4
    recognizer-prepare synthetic-speech --out data/synthetic-speech
"""

from __future__ import annotations

import argparse
from typing import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="recognizer-prepare", description=__doc__.splitlines()[0])
    corpora = parser.add_subparsers(dest="corpus", required=True)

    an4 = corpora.add_parser("an4", help="CMU AN4 (downloaded into --root when missing)")
    an4.add_argument("--root", required=True, help="the AN4 folder (holding etc/ and wav/)")
    an4.add_argument("--out", required=True, help="where to write train/dev[/test].jsonl")
    an4.add_argument("--no-download", action="store_true", help="fail instead of downloading")

    synthetic = corpora.add_parser("synthetic-speech", help="the built-in espeak-ng corpus")
    synthetic.add_argument("--out", required=True)
    synthetic.add_argument("--num-train", type=int, default=3000)
    synthetic.add_argument("--num-dev", type=int, default=200)
    synthetic.add_argument("--num-test", type=int, default=200)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--workers", type=int, default=None)

    args = parser.parse_args(argv)
    if args.corpus == "an4":
        from .corpora import an4

        an4.prepare(args.root, args.out, download_if_missing=not args.no_download)
    else:
        from .corpora import synthetic_speech

        manifests = synthetic_speech.prepare(
            args.out, args.num_train, args.num_dev, args.num_test, seed=args.seed, workers=args.workers
        )
        for split, path in manifests.items():
            print(f"{split}: {path}")


if __name__ == "__main__":
    main()
