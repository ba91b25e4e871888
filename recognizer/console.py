"""Console entry points: each imports its command lazily, so a broken install or a bad input ends
in one line on stderr (``prog: error: <file>[:line]: <what is wrong>``) and exit status 1, never a
traceback.

Bad input is reported with ``ValueError`` (manifests, audio, ink, tokenizer, checkpoints, settings)
or ``OSError`` (files) by the code that finds it, with the file and line in the message. Pass
``--debug`` (or set ``RECOGNIZER_DEBUG=1``) to get the traceback as well.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from .environment import DependencyError, import_torchaudio

#: exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it
INTERRUPTED = 130


def run(prog: str, module: str, function: str = "main", needs_torchaudio: bool = True) -> int:
    """Import ``recognizer.<module>`` and call its ``function``; errors become one line.

    With ``needs_torchaudio``, a torch/torchaudio mismatch is reported before anything else runs
    (otherwise it would surface later, wrapped in whatever first imports the audio front-end).
    """
    if "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        os.environ["RECOGNIZER_DEBUG"] = "1"
    try:
        if needs_torchaudio:
            import_torchaudio()
        main = getattr(importlib.import_module(f"recognizer.{module}"), function)
        return int(main() or 0)
    except (DependencyError, ValueError, OSError) as error:
        return _fail(prog, error)
    except Exception as error:
        if type(error).__name__ == "MisconfigurationException":  # Lightning's word for a bad setting
            return _fail(prog, error)
        raise
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return INTERRUPTED


def _fail(prog: str, error: BaseException) -> int:
    if os.environ.get("RECOGNIZER_DEBUG"):
        import traceback

        traceback.print_exception(error)
    message = " ".join(str(error).split()) or type(error).__name__  # one line, whatever the message held
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 1


def _entry(prog: str, module: str, function: str = "main", needs_torchaudio: bool = True) -> Callable[[], None]:
    def entry() -> None:
        sys.exit(run(prog, module, function, needs_torchaudio))

    entry.__doc__ = f"``{prog}``"
    return entry


_lightning_cli = _entry("recognizer", "cli")


#: ``recognizer`` subcommands that need no Lightning: name -> (module, function)
SUBCOMMANDS = {"export": ("export", "main"), "serve": ("serve", "main"), "average": ("average", "subcommand")}


def recognizer() -> None:
    """``recognizer``: Lightning's ``fit``, ``validate``, ``test``, ``predict``; and ``recognizer export``,
    ``recognizer serve`` and ``recognizer average`` (the same as ``recognizer-average``)."""
    if sys.argv[1:2] and sys.argv[1] in SUBCOMMANDS:
        command = sys.argv.pop(1)
        sys.exit(run(f"recognizer {command}", *SUBCOMMANDS[command]))
    _lightning_cli()


def transcribe() -> None:
    """``recognizer-transcribe``: an ONNX speech model decoded greedily runs without importing torch
    (``recognizer.onnx_runtime``, which starts in a tenth of torch's import time); anything else runs through
    ``recognizer.transcribe``."""
    from .transcripts import torch_free  # argparse only: deciding imports nothing that could fail

    if torch_free([arg for arg in sys.argv[1:] if arg != "--debug"]):
        sys.exit(run("recognizer-transcribe", "onnx_runtime", needs_torchaudio=False))
    sys.exit(run("recognizer-transcribe", "transcribe"))


prepare = _entry("recognizer-prepare", "prepare", needs_torchaudio=False)  # corpora need no torch
demo = _entry("recognizer-demo", "demo", "entry")
lm = _entry("recognizer-lm", "ngram", needs_torchaudio=False)
tune = _entry("recognizer-tune", "tune")
average = _entry("recognizer-average", "average")
check = _entry("recognizer-check", "environment", needs_torchaudio=False)  # checks the pins first
