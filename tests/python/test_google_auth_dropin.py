"""workload_auth.google_auth as a drop-in for google.auth.default(): Scoped, quota project,
exceptions google-api-core classifies, valid/refresh that never defeat the cache, ID-token
credentials for AuthorizedSession and ID-token verification, against the emulator (directly or
through a recording, fault-injecting proxy)."""

import datetime
import subprocess
from typing import Iterator

import pytest

import workload_auth
from conftest import Emulator, FaultyProxy, start_emulator

pytest.importorskip("google.auth")
pytest.importorskip("google.api_core")
from google.api_core import retry as api_retry  # noqa: E402
from google.auth import credentials as google_credentials  # noqa: E402
from google.auth import exceptions as google_exceptions  # noqa: E402
from google.auth.transport.requests import AuthorizedSession, Request  # noqa: E402

from workload_auth import google_auth  # noqa: E402

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"
EMAIL = "default-sa@emulated-project.iam.gserviceaccount.com"


@pytest.fixture
def short_lived() -> Iterator[Emulator]:
    """An emulator issuing access tokens that live 120 s: less than google-auth's 225 s margin."""
    process, emulator = start_emulator("--token-lifetime", "120")
    try:
        yield emulator
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_default_returns_credentials_and_project(metadata_env: Emulator) -> None:
    creds, project = google_auth.default(quota_project_id="billing")
    assert isinstance(creds, google_credentials.Credentials)
    assert isinstance(creds, google_credentials.Scoped)
    assert isinstance(creds, google_credentials.CredentialsWithQuotaProject)
    assert project == "python-project"
    assert creds.quota_project_id == "billing"
    headers: dict = {}
    creds.before_request(Request(), "GET", metadata_env.url, headers)
    assert headers["authorization"] == f"Bearer {creds.workload_auth_credentials.token()}"
    assert headers["x-goog-user-project"] == "billing"


def test_default_without_credentials_is_a_default_credentials_error() -> None:
    with pytest.raises(google_exceptions.DefaultCredentialsError) as caught:
        google_auth.default()
    assert isinstance(caught.value, workload_auth.CredentialsNotFoundError)
    assert isinstance(caught.value, google_auth.DefaultCredentialsError)
    assert caught.value.retryable is False


def test_with_scopes_if_required_passes_a_clients_scopes_on(emulator: Emulator) -> None:
    wa = workload_auth.default(metadata_host=emulator.host)
    creds = google_auth.Credentials(wa)
    assert creds.requires_scopes
    scoped = google_credentials.with_scopes_if_required(
        creds, None, default_scopes=[CLOUD_PLATFORM]
    )
    assert scoped is not creds and isinstance(scoped, google_auth.Credentials)
    assert scoped.default_scopes == [CLOUD_PLATFORM]
    explicit = google_credentials.with_scopes_if_required(creds, ["https://example.test/a"])
    assert explicit.scopes == ["https://example.test/a"] and not explicit.requires_scopes
    # Same scope set, same cache: the copies and the native credentials share the token.
    explicit.refresh(Request())
    again = creds.with_scopes(["https://example.test/a"])
    again.refresh(Request())
    assert explicit.token == again.token == wa.token(["https://example.test/a"])
    assert explicit.token != wa.token()
    # A str is one scope, as google-auth takes it.
    assert creds.with_scopes("https://example.test/a").scopes == ["https://example.test/a"]
    with pytest.raises(TypeError):
        creds.with_scopes({"a": 1})  # type: ignore[arg-type]


def test_transient_failures_are_retried_by_api_core(proxy: FaultyProxy) -> None:
    wa = workload_auth.default(metadata_host=proxy.host)
    creds = google_auth.Credentials(wa)
    # The library tries 5 times, then remembers the transient failure for a short, growing,
    # jittered backoff: a caller that retries meanwhile gets the error at once, without a request.
    # 8 failures outlast the first refresh and a few backoffs; api-core keeps retrying until the
    # token arrives.
    proxy.faults.extend([("status", 503)] * 8)
    errors = []

    def refresh() -> str:
        try:
            creds.refresh(Request())
        except Exception as e:
            errors.append(e)
            raise
        assert creds.token is not None
        return creds.token

    retrying = api_retry.Retry(predicate=api_retry.if_transient_error, initial=0.01, maximum=0.05)
    token = retrying(refresh)()
    assert token == wa.token()
    assert errors, "the injected failures were not reported"
    for error in errors:
        assert isinstance(error, google_exceptions.TransportError)
        assert isinstance(error, google_exceptions.RefreshError)
        assert isinstance(error, workload_auth.HttpError) and error.status == 503
        assert error.transient and error.retryable is True
        assert api_retry.if_transient_error(error)
    # However often api-core retried, the metadata server saw the 8 failures and one success (and
    # at most one request more, if a background refresh raced the last call): no hot loop.
    token_requests = proxy.counts["/computeMetadata/v1/instance/service-accounts/default/token"]
    assert 9 <= token_requests <= 10, token_requests


def test_an_unreachable_server_is_a_google_transport_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    creds = google_auth.Credentials(workload_auth.default(metadata_host=f"127.0.0.1:{closed}"))
    with pytest.raises(google_exceptions.TransportError) as caught:
        creds.refresh(Request())
    assert isinstance(caught.value, workload_auth.TransportError)
    assert api_retry.if_transient_error(caught.value)


def test_permanent_failures_are_refresh_errors_api_core_does_not_retry(emulator: Emulator) -> None:
    creds = google_auth.Credentials(workload_auth.default(metadata_host=emulator.host))
    bad = creds.with_scopes([""])
    with pytest.raises(google_exceptions.RefreshError) as caught:
        bad.refresh(Request())
    error = caught.value
    assert isinstance(error, workload_auth.InvalidArgumentError)
    assert error.retryable is False
    assert not api_retry.if_transient_error(error)
    assert api_retry.if_exception_type(google_exceptions.RefreshError)(error)


def test_short_lived_tokens_valid_refresh_idiom_does_not_refetch(short_lived: Emulator) -> None:
    proxy = FaultyProxy(short_lived.host)
    try:
        creds = google_auth.Credentials(workload_auth.default(metadata_host=proxy.host))
        request = Request()
        tokens = set()
        for _ in range(10):
            if not creds.valid:
                creds.refresh(request)
            tokens.add(creds.token)
        assert creds.expiry is not None
        remaining = creds.expiry - datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        assert remaining < datetime.timedelta(seconds=225)  # shorter than google-auth's margin
        assert len(tokens) == 1
        assert proxy.token_fetches() == 1
        # An API refusing the token still gets a new one.
        creds.refresh(request)
        assert proxy.token_fetches() == 2
        assert creds.token not in tokens
    finally:
        proxy.close()


def test_id_token_credentials_with_authorized_session(emulator: Emulator) -> None:
    wa = workload_auth.default(metadata_host=emulator.host)
    audience = "https://service.example.test"
    creds = google_auth.IDTokenCredentials(audience, wa)
    session = AuthorizedSession(creds)
    response = session.get(f"{emulator.url}/oauth2/v3/certs")
    assert response.status_code == 200
    sent = response.request.headers["authorization"]
    assert sent == f"Bearer {wa.id_token(audience)}"
    assert creds.valid and creds.expiry is not None
    claims = google_auth.verify_id_token(
        creds.token, audience, certs_url=f"{emulator.url}/oauth2/v3/certs"
    )
    assert claims["aud"] == audience
    assert claims["email"] == EMAIL or claims.get("sub")
    with pytest.raises(ValueError):
        google_auth.verify_id_token(
            creds.token, "https://other.example.test", certs_url=f"{emulator.url}/oauth2/v3/certs"
        )
    # A tampered token does not verify.
    header, payload, signature = creds.token.split(".")
    with pytest.raises(ValueError):
        google_auth.verify_id_token(
            f"{header}.{payload}.{signature[:-4]}AAAA",
            audience,
            certs_url=f"{emulator.url}/oauth2/v3/certs",
        )


def test_verify_id_token_caches_the_jwks(emulator: Emulator) -> None:
    proxy = FaultyProxy(emulator.host)
    try:
        wa = workload_auth.default(metadata_host=emulator.host)
        token = wa.id_token("https://cached.example.test")
        for _ in range(5):
            google_auth.verify_id_token(
                token, "https://cached.example.test", certs_url=f"{proxy.url}/oauth2/v3/certs"
            )
        assert proxy.counts["/oauth2/v3/certs"] == 1
    finally:
        proxy.close()
