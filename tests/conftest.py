"""Shared test helpers."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    """A torch/torchaudio mismatch stops the run with one readable line, not a collection error per file."""
    from recognizer.environment import DependencyError, import_torchaudio

    try:
        import_torchaudio()
    except DependencyError as error:
        pytest.exit(f"broken install: {error}", returncode=3)


# Real corpora live beside the checkout, never inside it (see ../shared/data/README.md).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def missing(message: str) -> None:
    """Something a test needs is absent: a skip on a developer's machine, a failure in CI, which always
    has it (``.ci/run`` installs it; skipping there would hide that the test never ran)."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(message)
    pytest.skip(message)


def _shared_data(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        missing(f"real data {path} is missing (see {SHARED_DATA / 'README.md'})")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Callable[[str], Path]:
    """``shared_data("an4")`` -> the corpus folder in ``../shared/data``; skips if absent (fails under ``CI=true``)."""
    return _shared_data


@pytest.fixture(scope="session")
def tiny_speech(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic speech corpus (train/dev/test manifests), generated once per test session."""
    from recognizer.corpora import synthetic_speech

    return synthetic_speech.prepare(
        tmp_path_factory.mktemp("speech"), num_train=60, num_dev=12, num_test=12, seed=1, workers=2
    )


def write_wav(path: Path, samples, rate: int = 16000) -> Path:
    """Write float samples as a 16-bit WAV file."""
    import numpy as np
    import soundfile

    soundfile.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="PCM_16")
    return path


@pytest.fixture(scope="session")
def tiny_ink(tmp_path_factory) -> dict[str, Path]:
    """A small synthetic handwriting corpus (train/dev/test manifests), generated once per test session."""
    from recognizer.corpora import synthetic_ink

    return synthetic_ink.prepare(
        tmp_path_factory.mktemp("ink"), num_train=60, num_dev=12, num_test=12, seed=1, workers=1
    )
