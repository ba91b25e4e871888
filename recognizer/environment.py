"""The installed native libraries: a clear error when they do not fit together, and a smoke check.

torchaudio declares only ``torch`` as a dependency, yet each release is built against one torch ABI,
and ``import torchaudio`` loads its native library eagerly: a mismatched pair fails with a linker
message on first use. ``import_torchaudio`` turns that into one line naming both versions and the
fix; ``recognizer-check`` (run by CI after installing) loads every native extension the project uses
and runs one tiny forward pass, so an upstream release that breaks the set fails before any test.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

#: the packages whose native libraries must agree with each other (pinned together in pyproject.toml)
TORCH_FAMILY = ("torch", "torchaudio")


class DependencyError(RuntimeError):
    """An installed package cannot be used; the message says what is installed and how to fix it."""


def installed_version(package: str) -> str:
    """The installed distribution's version, or ``"not installed"``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def pinned_versions() -> dict[str, str]:
    """The exact versions this package requires for the torch family, from its installed metadata."""
    try:
        requirements = metadata.requires("recognizer") or []
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return {}
    pins = {}
    for requirement in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*==\s*([^\s;,]+)\s*", requirement)
        if match and match.group(1).lower() in TORCH_FAMILY:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def mismatch_message(package: str, error: BaseException) -> str:
    """One line: what failed to load, which versions are installed, and the command that fixes it."""
    installed = ", ".join(f"{name} {installed_version(name)}" for name in TORCH_FAMILY)
    pins = pinned_versions()
    wanted = " ".join(f"'{name}=={version}'" for name, version in pins.items()) or " ".join(TORCH_FAMILY)
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{package}'s native library does not load ({first_line}); installed: {installed}, which do not "
        f"match. Fix: pip install {wanted}"
    )


def import_native(package: str) -> ModuleType:
    """Import a package with a native library, turning a loader failure into a ``DependencyError``."""
    try:
        return importlib.import_module(package)
    except (OSError, ImportError, RuntimeError) as error:
        raise DependencyError(mismatch_message(package, error)) from error


def import_torchaudio() -> ModuleType:
    """``import torchaudio``, or a ``DependencyError`` naming the installed torch and torchaudio."""
    return import_native("torchaudio")


# ------------------------------------------------------------------------------------- smoke check
def _check_pins() -> str:
    pins = pinned_versions()
    wrong = {
        name: installed_version(name)
        for name, version in pins.items()
        if installed_version(name).split("+")[0] != version
    }
    if wrong:
        raise DependencyError(
            "installed "
            + ", ".join(f"{name} {version}" for name, version in wrong.items())
            + " but recognizer needs "
            + ", ".join(f"{name}=={pins[name]}" for name in wrong)
            + ". Fix: pip install "
            + " ".join(f"'{name}=={pins[name]}'" for name in pins)
        )
    return ", ".join(f"{name} {installed_version(name)}" for name in TORCH_FAMILY)


def _check_torchaudio() -> str:
    torchaudio = import_torchaudio()
    import torch

    # Resampling and the mel filterbank are the parts the audio front-end uses.
    wave = torch.sin(torch.linspace(0, 800 * 3.14159, 8000))
    resampled = torchaudio.functional.resample(wave, 8000, 16000)
    mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=512, n_mels=80)(resampled)
    if resampled.shape[0] != 16000 or not torch.isfinite(mel).all():
        raise DependencyError(f"torchaudio {torchaudio.__version__} gave wrong results on a 1 s test tone")
    return f"torchaudio {torchaudio.__version__}: resample and mel spectrogram"


def _check_soundfile() -> str:
    import numpy as np

    soundfile = import_native("soundfile")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tone.flac"
        samples = (0.5 * np.sin(np.linspace(0, 400 * np.pi, 16000))).astype(np.float32)
        soundfile.write(path, samples, 16000)
        read, rate = soundfile.read(path, dtype="float32")
    if rate != 16000 or read.shape != samples.shape:
        raise DependencyError(
            f"soundfile (libsndfile {soundfile.__libsndfile_version__}) did not round-trip a FLAC file"
        )
    return f"soundfile {soundfile.__version__} (libsndfile {soundfile.__libsndfile_version__}): FLAC round trip"


def _check_flashlight() -> str:
    import_native("flashlight.lib.text.decoder")
    import_native("flashlight.lib.text.decoder.kenlm")
    from flashlight.lib.text.dictionary import Dictionary

    from .decoding.flashlight import _kenlm  # the project's own loader (it keeps KenLM's progress bar off the terminal)

    arpa = (
        "\\data\\\nngram 1=3\nngram 2=1\n\n"
        "\\1-grams:\n-1.0\t<s>\t-0.3\n-0.5\t</s>\n-0.3\ta\t-0.3\n\n"
        "\\2-grams:\n-0.1\t<s> a\n\n\\end\\\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "lm.arpa"
        path.write_text(arpa)
        words = Dictionary(["<s>", "</s>", "a"])
        lm: Any = _kenlm(str(path), words)  # a flashlight KenLM (flashlight-text has no type information)
        _, score = lm.score(lm.start(False), words.get_index("a"))
    if not score < 0:
        raise DependencyError(f"flashlight-text's KenLM scored a bigram {score}, expected a negative log-probability")
    return f"flashlight-text {installed_version('flashlight-text')}: KenLM loads and scores an ARPA model"


def _check_forward() -> str:
    import torch

    from .audio import AudioFrontend
    from .encoders import BLSTMEncoder
    from .lightning_module import CTCModule
    from .tokenizer import Tokenizer

    frontend = AudioFrontend()
    module = CTCModule(
        Tokenizer(alphabet="ab ").to_dict(), frontend.config(), partial(BLSTMEncoder, hidden_size=8, num_layers=1)
    ).eval()
    waveform = torch.randn(16000) * 0.1
    features = frontend.features(waveform)[None]
    with torch.no_grad():
        log_probs, lengths = module(features, torch.tensor([features.shape[1]]))
    if not torch.isfinite(log_probs).all() or log_probs.shape[-1] != 4:
        raise DependencyError("a tiny forward pass through the model gave non-finite or misshapen output")
    return f"model forward: 1 s of audio -> {int(lengths[0])} frames of {log_probs.shape[-1]} classes"


CHECKS: dict[str, Callable[[], str]] = {
    "pins": _check_pins,
    "torchaudio": _check_torchaudio,
    "soundfile": _check_soundfile,
    "flashlight-text": _check_flashlight,
    "forward": _check_forward,
}


def check() -> Iterator[str]:
    """Run every check, yielding a report for each; raises ``DependencyError`` at the first failure."""
    for name, run in CHECKS.items():
        try:
            report = run()
        except DependencyError:
            raise
        except Exception as error:  # any other failure of a native library is still a broken install
            raise DependencyError(f"{name}: {type(error).__name__}: {error}") from error
        yield f"ok  {name}: {report}"


def main(argv: Sequence[str] | None = None) -> int:
    """``recognizer-check``: load every native extension and run a tiny forward pass."""
    parser = argparse.ArgumentParser(prog="recognizer-check", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    for report in check():
        print(report, flush=True)
    print(f"recognizer-check: all {len(CHECKS)} checks passed (Python {sys.version.split()[0]})")
    return 0
