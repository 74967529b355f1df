"""Issue 8, finding 1, from Python: a credentials file cannot send this machine's secrets to a host
of its author's choosing; typed loaders and allowed types refuse other credential types before
anything in the file is used."""

import json
import pathlib
import socket
from typing import Any, Callable, Dict

import pytest

import workload_auth
from conftest import Emulator

JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


def _external(token_url: str, source: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
        "subject_token_type": JWT_TYPE,
        "token_url": token_url,
        "credential_source": source,
    }


def _user(emulator: Emulator) -> Dict[str, Any]:
    return {
        "type": "authorized_user",
        "client_id": "client",
        "client_secret": "secret",
        "refresh_token": "1//refresh",
        "token_uri": f"{emulator.url}/token",
    }


def _secret(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "id_ed25519"
    path.write_text("not-a-real-private-key")
    return path


def test_finding_1_hostile_token_url_refused_before_any_request(tmp_path: pathlib.Path) -> None:
    # A listener standing in for a local secret (the metadata server's token, an OIDC endpoint).
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    port = listener.getsockname()[1]
    sources = [
        {"file": str(_secret(tmp_path))},
        {"url": f"http://127.0.0.1:{port}/token", "headers": {"Metadata-Flavor": "Google"}},
    ]
    for source in sources:
        for token_url in [
            "https://attacker.example/v1/token",
            "https://sts.googleapis.com.attacker.example/v1/token",
            "http://sts.googleapis.com/v1/token",
        ]:
            hostile = _external(token_url, source)
            with pytest.raises(workload_auth.InvalidCredentialsError) as raised:
                workload_auth.Credentials.from_json(hostile)
            assert "`token_url`" in str(raised.value)
            assert "not-a-real-private-key" not in str(raised.value)
            path = tmp_path / "hostile.json"
            path.write_text(json.dumps(hostile))
            with pytest.raises(workload_auth.InvalidCredentialsError):
                workload_auth.Credentials.from_file(path)
            with pytest.raises(workload_auth.InvalidCredentialsError):
                workload_auth.Credentials.from_external_account_file(path)
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody connected
    listener.close()


def test_finding_1_opt_in_allows_a_private_endpoint(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    private = _external("https://sts.corp.example/v1/token", {"file": str(_secret(tmp_path))})
    with pytest.raises(workload_auth.InvalidCredentialsError) as raised:
        workload_auth.Credentials.from_external_account_info(private)
    assert "WORKLOAD_AUTH_ALLOWED_ENDPOINTS" in (raised.value.hint or "")
    creds = workload_auth.Credentials.from_external_account_info(
        private, allowed_endpoints=["sts.corp.example"]
    )
    assert creds.credential_type == "external_account"
    creds = workload_auth.Credentials.from_json(private, allowed_endpoints=["*.corp.example"])
    assert creds.credential_type == "external_account"
    with pytest.raises(workload_auth.InvalidArgumentError):
        workload_auth.Credentials.from_json(private, allowed_endpoints=["*"])
    monkeypatch.setenv("WORKLOAD_AUTH_ALLOWED_ENDPOINTS", "sts.corp.example")
    assert workload_auth.Credentials.from_json(private).credential_type == "external_account"
    monkeypatch.setenv("WORKLOAD_AUTH_ALLOWED_ENDPOINTS", "*.com")
    with pytest.raises(workload_auth.InvalidArgumentError) as bad:
        workload_auth.Credentials.from_json(private)
    assert "WORKLOAD_AUTH_ALLOWED_ENDPOINTS" in str(bad.value)


def test_finding_1_typed_loaders_refuse_other_types(
    emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    user = _user(emulator)
    external = _external(f"{emulator.url}/v1/token", {"file": str(_secret(tmp_path))})
    user_path = tmp_path / "user.json"
    user_path.write_text(json.dumps(user))
    C = workload_auth.Credentials
    wrong: Dict[str, Callable[..., workload_auth.Credentials]] = {
        "service_account": C.from_service_account_info,
        "impersonated_service_account": C.from_impersonated_service_account_info,
        "external_account": C.from_external_account_info,
        "external_account_authorized_user": C.from_external_account_authorized_user_info,
    }
    for expected, load in wrong.items():
        with pytest.raises(workload_auth.InvalidCredentialsError) as raised:
            load(user)
        assert "does not accept" in str(raised.value)
        assert expected in str(raised.value)
    with pytest.raises(workload_auth.InvalidCredentialsError):
        C.from_authorized_user_info(external)
    with pytest.raises(workload_auth.InvalidCredentialsError):
        C.from_service_account_file(user_path)
    assert C.from_authorized_user_info(user).credential_type == "authorized_user"
    assert C.from_authorized_user_info(json.dumps(user)).credential_type == "authorized_user"
    creds = C.from_authorized_user_file(user_path, quota_project="q")
    assert creds.credential_type == "authorized_user"
    assert creds.quota_project_id == "q"
    assert C.from_external_account_info(external).credential_type == "external_account"
    with pytest.raises(TypeError):
        C.from_service_account_info(42)  # type: ignore[arg-type]


def test_finding_1_allowed_types_restrict_the_generic_loaders(emulator: Emulator) -> None:
    user = _user(emulator)
    with pytest.raises(workload_auth.InvalidCredentialsError):
        workload_auth.Credentials.from_json(user, allowed_types=["service_account"])
    creds = workload_auth.Credentials.from_json(
        user, allowed_types=["service_account", "authorized_user"]
    )
    assert creds.credential_type == "authorized_user"
    with pytest.raises(workload_auth.InvalidArgumentError) as unknown:
        workload_auth.Credentials.from_json(user, allowed_types=["magic"])
    assert "magic" in str(unknown.value)
    # The metadata server is used only when listed.
    with pytest.raises(workload_auth.InvalidCredentialsError) as raised:
        workload_auth.default(metadata_host=emulator.host, allowed_types=["service_account"])
    assert "metadata_server" in str(raised.value)
    creds = workload_auth.default(metadata_host=emulator.host, allowed_types=["metadata_server"])
    assert creds.credential_type == "metadata_server"
    assert creds.token()
