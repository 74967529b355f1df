"""The package is typed: `py.typed` and the stubs are installed, and mypy --strict accepts user
code written against them (typed_usage.py) and rejects code that misuses them."""

import importlib.resources
import os
import subprocess
import sys
import textwrap

import pytest

HERE = os.path.dirname(__file__)


def test_stubs_and_py_typed_are_installed() -> None:
    package = importlib.resources.files("workload_auth")
    assert package.joinpath("py.typed").is_file()
    stub = package.joinpath("_native.pyi").read_text()
    assert "class Credentials" in stub and "def token" in stub


def _mypy(*args: str) -> "subprocess.CompletedProcess[str]":
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *args],
        capture_output=True,
        text=True,
        cwd=HERE,
    )


def test_typed_usage_passes_mypy_strict() -> None:
    result = _mypy("typed_usage.py")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_catches_misuse(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad_usage.py"
    bad.write_text(
        textwrap.dedent(
            """
            import workload_auth
            creds = workload_auth.default()
            n: int = creds.token()
            creds.id_token(42)
            """
        )
    )
    result = _mypy(str(bad))
    assert result.returncode != 0
    assert "Incompatible types in assignment" in result.stdout, result.stdout
    assert 'Argument 1 to "id_token"' in result.stdout, result.stdout
