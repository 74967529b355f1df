"""Agent Identity certificate-bound tokens, cross-checked with google-auth 2.63 from PyPI.

With an agent-identity workload certificate, google-auth's Compute Engine credentials and this
library both ask the emulator for a token bound to it; the emulator records each binding
(``/emulator/requests``), and they must be the same. The library hands a bound token out only
together with its certificate, and so does the google-auth adapter's ``before_request``.
"""

import base64
import hashlib
import http.client
import json
import pathlib
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import workload_auth
from conftest import Emulator
from spiffe_ca import Svid, TrustDomainCa

pytest.importorskip("google.auth")
from google.auth import exceptions as google_exceptions  # noqa: E402
from google.auth.transport.requests import Request  # noqa: E402

from workload_auth import google_auth  # noqa: E402

AGENT_TD = "agents.global.proj-31337.system.id.goog"
AGENT_ID = f"spiffe://{AGENT_TD}/ns/default/sa/agent"


def _fingerprint(svid: Svid) -> str:
    digest = hashlib.sha256(svid.chain_der[0]).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _install(directory: pathlib.Path, svid: Svid) -> pathlib.Path:
    (directory / "cert.pem").write_bytes(svid.chain_pem)
    (directory / "key.pem").write_bytes(svid.key_pem)
    config = directory / "certificate_config.json"
    config.write_text(
        json.dumps(
            {
                "cert_configs": {
                    "workload": {
                        "cert_path": str(directory / "cert.pem"),
                        "key_path": str(directory / "key.pem"),
                    }
                }
            }
        )
    )
    return config


def _http(emulator: Emulator, method: str, path: str, headers: Optional[Dict[str, str]] = None,
          body: Optional[bytes] = None) -> Tuple[int, bytes]:
    host, port = emulator.host.split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _token_requests(emulator: Emulator) -> List[Dict[str, Any]]:
    status, body = _http(emulator, "GET", "/emulator/requests")
    assert status == 200
    return [r for r in json.loads(body)["requests"] if r["endpoint"] == "Token"]


def _protected(emulator: Emulator, token: str) -> int:
    status, _ = _http(emulator, "GET", "/emulator/protected", {"authorization": f"Bearer {token}"})
    return status


@pytest.fixture
def agent(
    tmp_path: pathlib.Path, metadata_env: Emulator, monkeypatch: pytest.MonkeyPatch
) -> Tuple[Emulator, Svid, pathlib.Path]:
    svid = TrustDomainCa(AGENT_TD).issue(AGENT_ID)
    config = _install(tmp_path, svid)
    monkeypatch.setenv("GOOGLE_API_CERTIFICATE_CONFIG", str(config))
    return metadata_env, svid, tmp_path


def test_google_auth_and_we_send_the_same_binding(agent: Tuple[Emulator, Svid, pathlib.Path]) -> None:
    from google.auth import compute_engine

    emulator, svid, _ = agent
    expected = _fingerprint(svid)

    theirs = compute_engine.Credentials()
    theirs.refresh(Request())
    their_request = _token_requests(emulator)[-1]
    assert their_request["method"] == "POST"
    assert their_request["bound_fingerprint"] == expected
    assert their_request["binding_form"] == "certificate_chain"
    # The emulator bound it: over plain HTTP, without the certificate, it is refused.
    assert _protected(emulator, theirs.token) == 401

    ours = workload_auth.default()
    assert ours.is_bound
    with pytest.raises(workload_auth.InvalidArgumentError, match="bound_access_token"):
        ours.token()
    # google-auth asks for cloud-platform; ask for the same so the whole request compares.
    bound = ours.bound_access_token(["https://www.googleapis.com/auth/cloud-platform"])
    our_request = _token_requests(emulator)[-1]
    for field in ("method", "bound_fingerprint", "binding_form", "query"):
        assert our_request[field] == their_request[field], field
    assert bound.fingerprint == expected
    assert bound.token != theirs.token
    assert _protected(emulator, bound.token) == 401
    leaf = x509.load_pem_x509_certificate(bound.certificate_chain.encode("ascii"))
    assert leaf.public_bytes(serialization.Encoding.DER) == svid.chain_der[0]
    assert "PRIVATE" not in bound.certificate_chain
    assert bound.token not in repr(bound)
    key = bound.private_key_pem()
    assert key is not None and key.startswith(b"-----BEGIN ")
    binding = ours.explain().to_dict()["token_binding"]
    assert binding["bound"] is True and binding["fingerprint"] == expected
    assert f"bound to certificate {expected}" in ours.explain().token_binding


def test_every_fingerprint_encoding_records_the_same_binding(
    agent: Tuple[Emulator, Svid, pathlib.Path],
) -> None:
    from google.auth import _agent_identity_utils

    emulator, svid, _ = agent
    expected = _fingerprint(svid)
    leaf = x509.load_der_x509_certificate(svid.chain_der[0])
    # google-auth's own (older clients') encoding: standard base64, unpadded, URL-quoted.
    python_form = _agent_identity_utils.calculate_certificate_fingerprint(leaf)
    standard = base64.b64encode(hashlib.sha256(svid.chain_der[0]).digest()).decode("ascii")
    for raw_query in (
        f"bindCertificateFingerprint={python_form}",
        f"bindCertificateFingerprint={urllib.parse.quote(python_form)}",  # quoted twice
        f"bindCertificateFingerprint={urllib.parse.quote(standard, safe='')}",
        f"bindCertificateFingerprint={expected}",  # base64url (Node, ours)
    ):
        status, body = _http(
            emulator,
            "GET",
            f"/computeMetadata/v1/instance/service-accounts/default/token?{raw_query}",
            {"metadata-flavor": "Google"},
        )
        assert status == 200, (raw_query, body)
        recorded = _token_requests(emulator)[-1]
        assert recorded["bound_fingerprint"] == expected, raw_query
        assert recorded["binding_form"] == "fingerprint_query"
        assert _protected(emulator, json.loads(body)["access_token"]) == 401
    status, _ = _http(
        emulator,
        "GET",
        "/computeMetadata/v1/instance/service-accounts/default/token?bindCertificateFingerprint=abc",
        {"metadata-flavor": "Google"},
    )
    assert status == 400


def test_opting_out_gives_unbound_tokens_to_both(
    agent: Tuple[Emulator, Svid, pathlib.Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from google.auth import compute_engine

    emulator, _, _ = agent
    monkeypatch.setenv("GOOGLE_API_ENABLE_RUNTIME_BOUND_TOKEN", "false")
    theirs = compute_engine.Credentials()
    theirs.refresh(Request())
    their_request = _token_requests(emulator)[-1]
    ours = workload_auth.default()
    assert not ours.is_bound
    token = ours.token()
    our_request = _token_requests(emulator)[-1]
    for recorded in (their_request, our_request):
        assert recorded["method"] == "GET"
        assert recorded["bound_fingerprint"] is None
    assert _protected(emulator, token) == 200
    with pytest.raises(workload_auth.InvalidArgumentError):
        ours.bound_access_token()


def test_the_adapter_hands_out_a_bound_token_only_with_its_certificate(
    agent: Tuple[Emulator, Svid, pathlib.Path],
) -> None:
    emulator, svid, directory = agent
    creds = google_auth.Credentials(workload_auth.default())
    assert creds.is_bound
    headers: Dict[str, str] = {}
    # No transport was given the certificate: no bound token goes out.
    with pytest.raises(google_exceptions.RefreshError, match="client_cert_callback"):
        creds.before_request(Request(), "GET", "https://storage.googleapis.com/", headers)
    assert "authorization" not in headers
    chain, key = creds.client_cert_callback()
    leaf = x509.load_pem_x509_certificate(chain)
    assert leaf.public_bytes(serialization.Encoding.DER) == svid.chain_der[0]
    assert serialization.load_pem_private_key(key, None).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    creds.before_request(Request(), "GET", "https://storage.googleapis.com/", headers)
    assert headers["authorization"] == f"Bearer {creds.token}"
    assert creds.bound_fingerprint == _fingerprint(svid)

    # Rotation: the next token is bound to the new certificate, and it is refused until the
    # transport is given that certificate.
    rotated = TrustDomainCa(AGENT_TD).issue(AGENT_ID)
    _install(directory, rotated)
    old = creds.token
    creds.refresh(Request())
    assert creds.token != old
    assert creds.bound_fingerprint == _fingerprint(rotated)
    assert _token_requests(emulator)[-1]["bound_fingerprint"] == _fingerprint(rotated)
    with pytest.raises(google_exceptions.RefreshError, match="again after the certificate rotated"):
        creds.before_request(Request(), "GET", "https://storage.googleapis.com/", {})
    chain, _ = creds.client_cert_callback()
    assert x509.load_pem_x509_certificate(chain).public_bytes(
        serialization.Encoding.DER
    ) == rotated.chain_der[0]
    headers = {}
    creds.before_request(Request(), "GET", "https://storage.googleapis.com/", headers)
    assert headers["authorization"] == f"Bearer {creds.token}"
