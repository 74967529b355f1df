"""Access tokens, ID tokens, headers and explain through the Python API, against the emulator."""

import json
import threading
import time

import pytest

import workload_auth
from conftest import Emulator

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def test_default_finds_the_metadata_server_and_caches_tokens(metadata_env: Emulator) -> None:
    creds = workload_auth.default()
    assert creds.credential_type == "metadata_server"
    token = creds.token()
    assert isinstance(token, str) and len(token) > 10
    # Cached: the same token, without another request.
    assert creds.token() == token
    info = creds.access_token()
    assert info.token == token
    assert info.token_type == "Bearer"
    assert 3000 < info.expires_in <= 3600
    assert abs(info.expires_at - (time.time() + info.expires_in)) < 5
    assert token not in repr(info)


def test_scoped_tokens_have_their_own_cache(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    default_token = creds.token()
    scoped = creds.token(["https://www.googleapis.com/auth/userinfo.email", "openid"])
    assert scoped != default_token
    assert creds.token(["openid", "https://www.googleapis.com/auth/userinfo.email"]) == scoped
    with pytest.raises(workload_auth.InvalidArgumentError) as raised:
        creds.token(["has space"])
    assert not raised.value.transient
    assert isinstance(raised.value, ValueError)


def test_id_tokens_headers_project_and_explain(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host, quota_project="billing-project")
    jwt = creds.id_token("https://backend.example.run.app")
    header, payload, _signature = jwt.split(".")
    claims = json.loads(_b64url(payload))
    assert claims["aud"] == "https://backend.example.run.app"

    headers = creds.headers()
    assert headers == {
        "authorization": f"Bearer {creds.token()}",
        "x-goog-user-project": "billing-project",
    }
    assert creds.quota_project_id == "billing-project"
    assert creds.project_id() == "python-project"
    assert creds.universe_domain() == "googleapis.com"

    explanation = creds.explain()
    assert explanation.credential_type == "metadata_server"
    assert explanation.project_id == "python-project"
    assert explanation.quota_project_id == "billing-project"
    assert explanation.regional_access_boundary == "disabled"
    assert "python-project" in str(explanation)
    outcomes = {step.name: step.outcome for step in explanation.steps}
    assert "chosen" in outcomes.values(), outcomes
    data = explanation.to_dict()
    assert data["credential_type"] == "metadata_server"
    assert data["project_id"] == "python-project"


def test_invalidate_fetches_a_new_token(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    first = creds.token()
    creds.invalidate()
    assert creds.token() != first


def test_nothing_configured_fails_fast_with_every_place_looked_at() -> None:
    started = time.monotonic()
    with pytest.raises(workload_auth.CredentialsNotFoundError) as raised:
        workload_auth.default()
    assert time.monotonic() - started < 0.5
    message = str(raised.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "application_default_credentials.json" in message
    assert raised.value.kind == "credentials_not_found"
    assert not raised.value.transient


def test_an_unreachable_metadata_server_is_a_transient_transport_error() -> None:
    closed = _closed_port()
    creds = workload_auth.default(metadata_host=f"127.0.0.1:{closed}")
    with pytest.raises(workload_auth.TransportError) as raised:
        creds.token()
    assert raised.value.transient
    assert isinstance(raised.value, ConnectionError)
    assert isinstance(raised.value, workload_auth.WorkloadAuthError)


def test_blocking_calls_release_the_gil() -> None:
    # A token fetch from a server that is not there retries for about a second and a half;
    # another Python thread must run all that time.
    creds = workload_auth.default(metadata_host=f"127.0.0.1:{_closed_port()}")
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    counter = threading.Thread(target=count)
    counter.start()
    started = time.monotonic()
    with pytest.raises(workload_auth.TransportError):
        creds.token()
    elapsed = time.monotonic() - started
    done.set()
    counter.join()
    assert elapsed > 0.3, elapsed
    # Tens of thousands of loop turns a second when the GIL is free; a handful if not.
    assert ticks > 10_000 * elapsed, (ticks, elapsed)


def test_credentials_files_and_json(emulator: Emulator, tmp_path) -> None:  # type: ignore[no-untyped-def]
    user = {
        "type": "authorized_user",
        "client_id": "unknown-client",
        "client_secret": "secret",
        "refresh_token": "1//not-a-grant-the-emulator-knows",
        "quota_project_id": "file-quota",
        "token_uri": f"{emulator.url}/token",
    }
    path = tmp_path / "user.json"
    path.write_text(json.dumps(user))
    creds = workload_auth.Credentials.from_file(path)
    assert creds.credential_type == "authorized_user"
    assert creds.quota_project_id == "file-quota"
    # The emulator does not know this client: a permanent refusal, typed, with the status.
    with pytest.raises(workload_auth.WorkloadAuthError) as raised:
        creds.token()
    assert isinstance(raised.value, (workload_auth.RejectedError, workload_auth.HttpError))
    assert raised.value.status in (400, 401)
    assert not raised.value.transient
    assert "1//not-a-grant" not in str(raised.value)

    from_dict = workload_auth.Credentials.from_json(user, quota_project="override")
    assert from_dict.quota_project_id == "override"
    from_text = workload_auth.Credentials.from_json(json.dumps(user))
    assert from_text.credential_type == "authorized_user"

    with pytest.raises(workload_auth.CredentialsNotFoundError) as missing:
        workload_auth.Credentials.from_file(tmp_path / "missing.json")
    assert "missing.json" in str(missing.value)
    with pytest.raises(workload_auth.InvalidCredentialsError):
        workload_auth.Credentials.from_json('{"type": ')
    with pytest.raises(workload_auth.InvalidCredentialsError) as unknown:
        workload_auth.Credentials.from_json({"type": "magic"})
    assert "magic" in str(unknown.value)


def test_wrong_argument_types_are_type_errors(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    with pytest.raises(TypeError):
        creds.token("https://www.googleapis.com/auth/cloud-platform")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        creds.token([1, 2])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        creds.id_token(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        workload_auth.default(scopes=CLOUD_PLATFORM)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        workload_auth.Credentials.from_json(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        workload_auth.Credentials.from_file(None)  # type: ignore[arg-type]
    with pytest.raises(workload_auth.InvalidArgumentError):
        creds.id_token("   ")
    with pytest.raises(TypeError):
        workload_auth.Credentials()  # type: ignore[call-arg]


def test_many_threads_share_one_cache(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    results: list = []

    def work() -> None:
        results.extend(creds.token() for _ in range(200))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1600
    assert len(set(results)) == 1


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _b64url(text: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
