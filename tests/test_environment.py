"""The install: native libraries load (the smoke check CI runs), a mismatch is one clear line, packaging."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

from recognizer import console, environment
from recognizer.environment import DependencyError

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_smoke_check_passes() -> None:
    reports = list(environment.check())
    assert [r.split(":")[0] for r in reports] == [f"ok  {name}" for name in environment.CHECKS]


def test_pins_are_exact_and_installed() -> None:
    pins = environment.pinned_versions()
    assert set(pins) == set(environment.TORCH_FAMILY), "pyproject.toml must pin torch and torchaudio exactly (==)"
    for name, version in pins.items():
        assert environment.installed_version(name).split("+")[0] == version


def test_mismatched_torchaudio_is_one_clear_line(monkeypatch) -> None:
    linker = OSError("/x/libtorchaudio.so: undefined symbol: torch_exception_get_what_without_backtrace")
    real = importlib.import_module

    def fake(name: str, *args):
        if name == "torchaudio":
            raise linker
        return real(name, *args)

    monkeypatch.setattr(environment.importlib, "import_module", fake)
    with pytest.raises(DependencyError) as caught:
        environment.import_torchaudio()
    message = str(caught.value)
    assert "\n" not in message
    assert f"torch {environment.installed_version('torch')}" in message
    assert f"torchaudio {environment.installed_version('torchaudio')}" in message
    assert "undefined symbol" in message and "pip install" in message
    for name, version in environment.pinned_versions().items():
        assert f"{name}=={version}" in message


def test_console_turns_dependency_error_into_one_line(monkeypatch, capsys) -> None:
    def broken() -> None:
        raise DependencyError("torchaudio's native library does not load")

    monkeypatch.setattr(environment, "main", broken)
    assert console.run("recognizer-check", "environment") == 1
    err = capsys.readouterr().err
    assert err == "recognizer-check: error: torchaudio's native library does not load\n"


def test_pin_mismatch_is_reported(monkeypatch) -> None:
    monkeypatch.setattr(environment, "installed_version", lambda name: "9.9.9")
    with pytest.raises(DependencyError, match=r"installed torch 9\.9\.9, torchaudio 9\.9\.9 but recognizer needs"):
        environment.CHECKS["pins"]()


@pytest.mark.slow
def test_recognizer_check_command() -> None:
    run = subprocess.run([BIN / "recognizer-check"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert f"all {len(environment.CHECKS)} checks passed" in run.stdout


def test_every_subpackage_and_config_ships_in_the_wheel() -> None:
    """pyproject.toml lists the packages explicitly (configs/ is mapped into recognizer.configs)."""
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "recognizer").rglob("__init__.py")}
    assert found <= set(settings["packages"]), (
        f"add {sorted(found - set(settings['packages']))} to [tool.setuptools] packages"
    )
    assert settings["package-dir"]["recognizer.configs"] == "configs"
    configs = {p.relative_to(REPO / "configs") for p in (REPO / "configs").rglob("*") if p.is_file()}
    shipped = {p for p in configs for pattern in settings["package-data"]["recognizer.configs"] if p.match(pattern)}
    assert configs == shipped, f"configs not shipped: {sorted(map(str, configs - shipped))}"


def test_demo_configs_resolve() -> None:
    from recognizer.demo import DEMOS, config_file

    for name, _ in DEMOS.values():
        assert config_file(name).is_file()
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config_file("speech/nope.yaml")
