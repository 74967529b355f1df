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


def test_pyright_verifytypes_is_complete() -> None:
    # Every public symbol (workload_auth and workload_auth.google_auth) has a known type and a
    # docstring. pyright reads the installed package, so an editable install cannot be checked.
    import shutil

    import workload_auth

    pyright = shutil.which("pyright", path=os.path.dirname(sys.executable))
    if pyright is None or "site-packages" not in workload_auth.__file__:
        pytest.skip("needs pyright and a non-editable install (scripts/test.sh has both)")
    result = subprocess.run(
        [pyright, "--verifytypes", "workload_auth", "--ignoreexternal", "--outputjson"],
        capture_output=True,
        text=True,
        env=dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"]),
    )
    import json

    report = json.loads(result.stdout)["typeCompleteness"]
    problems = [
        (s["name"], [d["message"] for d in s["diagnostics"]])
        for s in report["symbols"]
        if s["diagnostics"]
    ]
    assert report["packageName"] == "workload_auth"
    assert report["exportedSymbolCounts"]["withKnownType"] > 40
    assert not problems, problems
    assert report["completenessScore"] == 1
