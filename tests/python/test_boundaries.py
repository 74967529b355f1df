"""Issue 11 from Python: downscoped tokens (server- and client-side) checked by the emulator,
cross-checked with google-auth's own ``google.auth.downscoped.Credentials``; regional access
boundaries (``x-allowed-locations``) in ``headers()`` and in the google-auth adapter, compared
with what google-auth 2.63 sends with its own lookup switched on."""

import json
import time
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

import pytest

import workload_auth
from conftest import Emulator, FaultyProxy

BUCKET = "//storage.googleapis.com/projects/_/buckets/py-bucket"
VIEWER = "inRole:roles/storage.objectViewer"
CONDITION = "resource.name.startsWith('projects/_/buckets/py-bucket/objects/customer-a/')"
STORAGE = "https://storage.googleapis.com/storage/v1/b/py-bucket/o"
RAB_ENV = "GOOGLE_SDK_EXPERIMENTAL_PYTHON_REGIONAL_ACCESS_BOUNDARY_LOOKUP_ENABLED"


def _boundary() -> workload_auth.AccessBoundary:
    return workload_auth.AccessBoundary(
        [workload_auth.AccessBoundaryRule(BUCKET, [VIEWER], expression=CONDITION, title="a")]
    )


def _carried(emulator: Emulator, token: str) -> Tuple[int, Dict[str, Any]]:
    """What the emulator's check endpoint says a downscoped token carries."""
    request = urllib.request.Request(
        f"{emulator.url}/emulator/v1/downscoped-boundary",
        headers={"authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as e:
        return e.code, {}


def test_downscoped_tokens_carry_the_boundary(metadata_env: Emulator) -> None:
    source = workload_auth.default()
    sts = f"{metadata_env.url}/v1/token"
    for client_side in (False, True):
        downscoped = workload_auth.DownscopedCredentials(
            source, _boundary(), client_side=client_side, sts_endpoint=sts
        )
        assert downscoped.client_side is client_side
        tokens = [downscoped.token() for _ in range(5)]
        assert downscoped.exchange_count == 1
        # Server-side: the cached token; client-side: a new token each time, minted locally.
        assert len(set(tokens)) == (5 if client_side else 1)
        assert tokens[0] != source.token()
        token = downscoped.access_token()
        assert token.expires_in > 1800
        assert downscoped.headers() == {"authorization": f"Bearer {downscoped.token()}"} or (
            client_side
        )
        for t in (tokens[0], tokens[-1]):
            status, body = _carried(metadata_env, t)
            assert status == 200, body
            assert body["kind"] == ("client-side" if client_side else "server-side")
            rule = body["accessBoundary"]["accessBoundaryRules"][0]
            assert rule["availableResource"] == BUCKET
            assert rule["availablePermissions"] == [VIEWER]
            assert "customer-a/" in rule["availabilityCondition"]["expression"]
        assert "Bearer" not in repr(downscoped) and tokens[0] not in repr(downscoped)


def test_bad_boundaries_raise_errors_naming_the_field(metadata_env: Emulator) -> None:
    rule = workload_auth.AccessBoundaryRule(BUCKET, [VIEWER])
    with pytest.raises(workload_auth.InvalidArgumentError, match="at most 10"):
        workload_auth.AccessBoundary([rule] * 11)
    with pytest.raises(workload_auth.InvalidArgumentError, match=r"availablePermissions\[0\]"):
        workload_auth.AccessBoundary([workload_auth.AccessBoundaryRule(BUCKET, ["roles/x"])])
    with pytest.raises(ValueError, match="accessBoundaryRules"):
        workload_auth.AccessBoundary.from_json("{}")
    with pytest.raises(TypeError):
        workload_auth.AccessBoundaryRule(BUCKET, [VIEWER], title="a title without a condition")
    parsed = workload_auth.AccessBoundary.from_json(json.loads(_boundary().to_json()))
    assert len(parsed) == 1 and parsed.rules[0].expression == CONDITION
    assert parsed.rules[0].title == "a"
    # Client-side minting refuses a condition it cannot compile, before any request.
    odd = workload_auth.AccessBoundary(
        [workload_auth.AccessBoundaryRule(BUCKET, [VIEWER], expression="resource.name.matches('x')")]
    )
    with pytest.raises(workload_auth.InvalidArgumentError):
        workload_auth.DownscopedCredentials(
            workload_auth.default(), odd, client_side=True,
            sts_endpoint=f"{metadata_env.url}/v1/token",
        )
    with pytest.raises(workload_auth.WorkloadAuthError, match="sts_endpoint"):
        workload_auth.DownscopedCredentials(
            workload_auth.default(), _boundary(), sts_endpoint="http://sts.example.com/v1/token"
        )


def _exchanges(proxy: FaultyProxy) -> List[Dict[str, List[str]]]:
    return [
        urllib.parse.parse_qs(body.decode())
        for method, path, _, body in proxy.recorded
        if method == "POST" and path == "/v1/token"
    ]


def test_server_side_exchange_matches_google_auth(
    metadata_env: Emulator, proxy: FaultyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth import compute_engine
    from google.auth import downscoped as google_downscoped
    from google.auth.transport.requests import Request

    # google-auth's STS URL is https://sts.UNIVERSE/v1/token: pointed at the recording proxy.
    monkeypatch.setattr(google_downscoped, "_STS_TOKEN_URL_PATTERN", f"{proxy.url}/v1/token")
    google_boundary = google_downscoped.CredentialAccessBoundary(
        rules=[
            google_downscoped.AccessBoundaryRule(
                available_resource=BUCKET,
                available_permissions=[VIEWER],
                availability_condition=google_downscoped.AvailabilityCondition(
                    expression=CONDITION, title="a"
                ),
            )
        ]
    )
    theirs = google_downscoped.Credentials(
        source_credentials=compute_engine.Credentials(),
        credential_access_boundary=google_boundary,
    )
    theirs.refresh(Request())
    ours = workload_auth.DownscopedCredentials(
        workload_auth.default(), _boundary(), sts_endpoint=f"{proxy.url}/v1/token"
    )
    our_token = ours.token()
    google_form, our_form = _exchanges(proxy)
    for field in ("grant_type", "subject_token_type", "requested_token_type"):
        assert our_form[field] == google_form[field], field
    # google-auth percent-encodes the JSON before the form encoding does it again (its
    # sts.Client quotes `options`); we send it form-encoded once, as Go and Java do. The STS
    # (and the emulator) read both: the same boundary once decoded.
    google_options = google_form["options"][0]
    assert google_options.startswith("%7B")
    assert json.loads(our_form["options"][0]) == json.loads(urllib.parse.unquote(google_options))
    assert our_form["subject_token"] and google_form["subject_token"]
    # Both tokens carry the same boundary, as the emulator reads it.
    (status_g, carried_g), (status_o, carried_o) = (
        _carried(metadata_env, theirs.token),
        _carried(metadata_env, our_token),
    )
    assert status_g == status_o == 200
    assert carried_g == carried_o


def _settled(get: Any, deadline: float = 10.0) -> Optional[str]:
    """Calls ``get`` until it answers something (the lookups run in the background)."""
    end = time.monotonic() + deadline
    value = get()
    while value is None and time.monotonic() < end:
        time.sleep(0.02)
        value = get()
    return value


def test_regional_boundary_headers_match_google_auth(
    metadata_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth import _regional_access_boundary_utils as rab
    from google.auth import compute_engine
    from google.auth.transport.requests import Request

    from workload_auth import google_auth

    monkeypatch.setenv(RAB_ENV, "true")
    # google-auth looks up at https://iamcredentials.googleapis.com: pointed at the emulator.
    monkeypatch.setattr(
        rab,
        "get_service_account_rab_endpoint",
        lambda email: f"{metadata_env.url}/v1/projects/-/serviceAccounts/{email}/allowedLocations",
    )
    theirs = compute_engine.Credentials()
    request = Request()

    def google_header() -> Optional[str]:
        headers: Dict[str, str] = {}
        theirs.before_request(request, "GET", STORAGE, headers)
        return headers.get("x-allowed-locations")

    native = workload_auth.default(iam_credentials_endpoint=f"{metadata_env.url}/v1/")
    ours = google_auth.Credentials(native)

    def our_header(url: str = STORAGE) -> Optional[str]:
        headers = {"x-allowed-locations": "stale"}
        ours.before_request(None, "GET", url, headers)
        return headers.get("x-allowed-locations")

    expected = _settled(google_header)
    assert expected == "0xA30"
    assert _settled(our_header) == expected
    assert native.headers()["x-allowed-locations"] == expected
    assert native.allowed_locations() == expected
    assert "0xA30" in native.regional_access_boundary
    # Regional endpoints and the STS host: no header (and the stale one is removed).
    assert our_header("https://storage.us-central1.rep.googleapis.com/b") is None
    assert native.headers(url="https://sts.googleapis.com/v1/token").get("x-allowed-locations") is None
    # Off: nothing, whatever the environment says.
    off = workload_auth.default(
        regional_access_boundary=False, iam_credentials_endpoint=f"{metadata_env.url}/v1/"
    )
    assert off.regional_access_boundary == "disabled"
    assert "x-allowed-locations" not in off.headers()
    assert google_auth.Credentials(off)._regional is False


def test_regional_boundary_opt_in_by_environment(
    metadata_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable, value in (("GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED", "true"), (RAB_ENV, "yes")):
        with monkeypatch.context() as m:
            m.setenv(variable, value)
            m.setenv("WORKLOAD_AUTH_IAM_CREDENTIALS_ENDPOINT", f"{metadata_env.url}/v1/")
            creds = workload_auth.default()
            assert _settled(creds.allowed_locations) == "0xA30", variable
    assert workload_auth.default().regional_access_boundary == "disabled"
