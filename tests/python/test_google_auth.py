"""The google-auth adapter: a google.auth.credentials.Credentials that AuthorizedSession uses
unchanged, against the emulator's IAM endpoint (which accepts only tokens the emulator issued)."""

import datetime

import pytest

import workload_auth
from conftest import Emulator

google_auth = pytest.importorskip("google.auth")
from google.auth import credentials as google_credentials  # noqa: E402
from google.auth.transport.requests import AuthorizedSession, Request  # noqa: E402

from workload_auth.google_auth import Credentials  # noqa: E402

EMAIL = "default-sa@emulated-project.iam.gserviceaccount.com"


def iam_url(emulator: Emulator) -> str:
    return f"{emulator.url}/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"


def test_authorized_session_calls_an_api_with_our_tokens(emulator: Emulator) -> None:
    wa = workload_auth.default(metadata_host=emulator.host, quota_project="billing-project")
    creds = Credentials(wa)
    assert isinstance(creds, google_credentials.Credentials)
    session = AuthorizedSession(creds)
    response = session.post(
        iam_url(emulator),
        json={"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "600s"},
    )
    assert response.status_code == 200, response.text
    assert "accessToken" in response.json()
    sent = response.request.headers
    assert sent["authorization"] == f"Bearer {wa.token()}"
    assert sent["x-goog-user-project"] == "billing-project"
    # google-auth sees a valid token with a naive UTC expiry about an hour out.
    assert creds.valid and creds.token == wa.token()
    assert creds.expiry is not None and creds.expiry.tzinfo is None
    remaining = creds.expiry - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert datetime.timedelta(minutes=50) < remaining <= datetime.timedelta(hours=1)


def test_a_token_the_api_does_not_know_is_refused(emulator: Emulator) -> None:
    # The baseline for the test above: the IAM endpoint really checks the bearer token.
    import requests

    response = requests.post(
        iam_url(emulator),
        json={"scope": ["https://www.googleapis.com/auth/cloud-platform"]},
        headers={"authorization": "Bearer ya29.made-up"},
    )
    assert response.status_code == 401


def test_refresh_replaces_a_token_the_api_rejected(emulator: Emulator) -> None:
    wa = workload_auth.default(metadata_host=emulator.host)
    creds = Credentials(wa)
    request = Request()
    assert not creds.valid
    creds.refresh(request)  # the first token: from the cache
    first = creds.token
    assert first == wa.token() and creds.valid
    creds.refresh(request)  # asked again while holding it: an API refused it, get a new one
    assert creds.token != first
    assert creds.token == wa.token()


def test_quota_project_and_universe(emulator: Emulator) -> None:
    creds = Credentials(workload_auth.default(metadata_host=emulator.host))
    assert creds.quota_project_id is None
    assert creds.universe_domain == "googleapis.com"
    with_quota = creds.with_quota_project("other-project")
    assert isinstance(with_quota, Credentials)
    assert with_quota.quota_project_id == "other-project"
    headers: dict = {}
    with_quota.before_request(Request(), "GET", emulator.url, headers)
    assert headers["x-goog-user-project"] == "other-project"
    assert headers["authorization"].startswith("Bearer ")
    assert creds.get_cred_info() == {
        "credential_source": "workload_auth",
        "credential_type": "metadata_server",
    }


def test_default_adapter_uses_application_default_credentials(metadata_env: Emulator) -> None:
    creds = Credentials()
    headers: dict = {}
    creds.before_request(Request(), "GET", metadata_env.url, headers)
    assert headers["authorization"] == f"Bearer {creds.workload_auth_credentials.token()}"
