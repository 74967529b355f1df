"""Issue 13's "Bad input" list through the google-auth drop-in (the native calls have theirs in
test_credentials.py, test_deadlines_async.py and test_fork_pickle.py): wrong types, signing with
credentials that cannot sign, deadlines of 0, negative or NaN, and a pickle of another version each
raise a clear Python exception of the documented type, never an abort or a Rust panic message."""

import math
import pickle

import pytest

import workload_auth
from conftest import Emulator

pytest.importorskip("google.auth")
from google.auth.transport.requests import Request  # noqa: E402

from workload_auth import google_auth  # noqa: E402


def _no_rust_in(error: BaseException) -> None:
    text = str(error)
    assert text, type(error)
    for leak in ("panicked", "called `Option", "called `Result", "PyErr", "Some(", "src/"):
        assert leak not in text, text


@pytest.mark.parametrize("scopes", [b"https://example.test/a", {"a": 1}, [None], [b"x"], 42])
def test_wrong_scope_types_are_type_errors(metadata_env: Emulator, scopes: object) -> None:
    with pytest.raises(TypeError) as raised:
        google_auth.default(scopes=scopes)  # type: ignore[arg-type]
    _no_rust_in(raised.value)
    creds = google_auth.Credentials(workload_auth.default(metadata_host=metadata_env.host))
    with pytest.raises(TypeError):
        creds.with_scopes(scopes)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        google_auth.Credentials(creds.workload_auth_credentials, scopes=scopes)  # type: ignore[arg-type]
    # None means "no scopes given" (the credentials' own), as in google-auth.
    assert creds.with_scopes(None).scopes is None


def test_wrong_argument_types_are_type_errors(emulator: Emulator) -> None:
    wa = workload_auth.default(metadata_host=emulator.host)
    for bad in ("not credentials", {"type": "service_account"}, b"{}"):
        with pytest.raises(TypeError) as raised:
            google_auth.Credentials(bad)  # type: ignore[arg-type]
        _no_rust_in(raised.value)
    for audience in (None, b"https://aud.example.test", ["https://aud.example.test"]):
        with pytest.raises(TypeError) as raised:
            google_auth.IDTokenCredentials(audience, wa)  # type: ignore[arg-type]
        _no_rust_in(raised.value)
    creds = google_auth.Credentials(wa)
    for message in (None, 42, ["x"]):
        with pytest.raises(TypeError):
            creds.sign_bytes(message)  # type: ignore[arg-type]
    with pytest.raises((TypeError, ValueError)):
        google_auth.verify_id_token(None, "aud")  # type: ignore[arg-type]


@pytest.mark.parametrize("timeout", [0, -1, -0.5, math.nan, math.inf])
def test_bad_deadlines_are_value_errors(emulator: Emulator, timeout: float) -> None:
    wa = workload_auth.default(metadata_host=emulator.host)
    for call in (
        lambda: wa.token(timeout=timeout),
        lambda: wa.id_token("https://aud.example.test", timeout=timeout),
        lambda: google_auth.Credentials(wa, timeout=timeout).refresh(Request()),
        lambda: wa.sign_blob(b"x", timeout=timeout),
        lambda: google_auth.Credentials(wa, timeout=timeout).sign_bytes(b"x"),
    ):
        with pytest.raises(ValueError) as raised:
            call()
        assert not isinstance(raised.value, workload_auth.TransportError)
        _no_rust_in(raised.value)
    with pytest.raises(TypeError):
        wa.token(timeout="1")  # type: ignore[arg-type]


def test_signing_with_credentials_that_cannot_sign(emulator: Emulator) -> None:
    # The adapter over credentials without a service account: a clear ValueError.
    user = workload_auth.Credentials.from_json(
        {
            "type": "authorized_user",
            "client_id": "c",
            "client_secret": "s",
            "refresh_token": "r",
            "token_uri": f"{emulator.url}/token",
        }
    )
    creds = google_auth.Credentials(user)
    with pytest.raises(ValueError) as raised:
        creds.sign_bytes(b"x")
    assert isinstance(raised.value, workload_auth.InvalidArgumentError)
    assert "cannot sign" in str(raised.value)
    with pytest.raises(ValueError):
        creds.signer.sign(b"x")
    with pytest.raises(workload_auth.InvalidArgumentError) as native_refusal:
        user.sign_blob(b"x", iam_endpoint=f"{emulator.url}/v1/")
    assert "cannot sign" in str(native_refusal.value)
    for message in (None, "text", 42):
        with pytest.raises(TypeError):
            user.sign_blob(message)  # type: ignore[arg-type]
    # Natively, only a service-account key signs.
    with pytest.raises(workload_auth.InvalidArgumentError) as native:
        workload_auth.default(metadata_host=emulator.host).sign_bytes(b"x")
    _no_rust_in(native.value)


def test_an_adapter_pickled_by_another_version_is_refused_clearly(emulator: Emulator) -> None:
    creds = google_auth.Credentials(workload_auth.default(metadata_host=emulator.host))
    restore, (fmt, native_state) = creds.workload_auth_credentials.__reduce__()
    state = creds.__getstate__()

    class NativeOfAnotherVersion:
        def __reduce__(self) -> object:
            return restore, (fmt + 1, dict(native_state, version="0.0.1"))

    class AdapterOfAnotherVersion:
        def __reduce__(self) -> object:
            forged = dict(state, _wa=NativeOfAnotherVersion())
            return object.__new__, (google_auth.Credentials,), forged

    data = pickle.dumps(AdapterOfAnotherVersion())
    with pytest.raises(ValueError) as refused:
        pickle.loads(data)
    assert "0.0.1" in str(refused.value)
    _no_rust_in(refused.value)
    # The same bytes from this version load.
    assert isinstance(pickle.loads(pickle.dumps(creds)), google_auth.Credentials)
