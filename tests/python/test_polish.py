"""Issue 13's polish: a str scope is one scope, Python reprs, FileNotFoundError for a missing
file, docstrings on public names."""

import inspect
import pathlib

import pytest

import workload_auth
from conftest import Emulator

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def test_a_str_scope_is_one_scope(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    assert creds.token(SCOPE) == creds.token([SCOPE])
    assert creds.access_token(SCOPE).token == creds.token([SCOPE])
    scoped = workload_auth.default(metadata_host=emulator.host, scopes=SCOPE)
    assert scoped.token()
    for bad in ({"a": 1}, [1, 2], b"bytes", 42):
        with pytest.raises(TypeError) as refused:
            creds.token(bad)  # type: ignore[arg-type]
        assert "scopes must be a str or a sequence of str" in str(refused.value)


def test_reprs_are_python_reprs(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    explanation = creds.explain()
    for text in (repr(explanation), repr(creds), *map(repr, explanation.steps)):
        assert "Some(" not in text and '"' not in text, text
    assert repr(explanation) == (
        f"Explanation(credential_type='metadata_server', project_id={explanation.project_id!r})"
    )
    assert repr(creds) == "Credentials(credential_type='metadata_server', quota_project_id=None)"
    assert "token=<redacted>" in repr(creds.access_token())


def test_a_missing_file_is_file_not_found(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "missing.json"
    for load in (
        workload_auth.Credentials.from_file,
        workload_auth.Credentials.from_service_account_file,
        workload_auth.Credentials.from_external_account_file,
    ):
        with pytest.raises(FileNotFoundError) as raised:
            load(missing)
        assert raised.value.filename == str(missing)
        assert isinstance(raised.value, workload_auth.CredentialsNotFoundError)
        assert "missing.json" in str(raised.value)


def test_every_public_name_has_a_docstring() -> None:
    from workload_auth import google_auth

    missing = []
    for module in (workload_auth, google_auth):
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or callable(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(f"{module.__name__}.{name}")
            if inspect.isclass(obj):
                for attr, member in vars(obj).items():
                    if attr.startswith("_"):
                        continue
                    if not (callable(member) or isinstance(member, property) or
                            type(member).__name__ in ("getset_descriptor", "method_descriptor",
                                                      "builtin_function_or_method")):
                        continue
                    if not inspect.getdoc(getattr(obj, attr)):
                        missing.append(f"{module.__name__}.{name}.{attr}")
    assert not missing, missing
