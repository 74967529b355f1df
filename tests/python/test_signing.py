"""Signing (google.auth.credentials.Signing): IAM signBlob for credentials without a key (the
emulator signs with the key it publishes), local signing with a service-account key, and
google-cloud-storage's signed URLs verified against the emulator's public key."""

import base64
import datetime
import hashlib
import json
import pathlib
import urllib.parse
import urllib.request

import pytest

import workload_auth
from conftest import Emulator, FaultyProxy

pytest.importorskip("google.auth")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import padding, rsa  # noqa: E402
from google.auth import credentials as google_credentials  # noqa: E402

from workload_auth import google_auth  # noqa: E402

EMAIL = "default-sa@emulated-project.iam.gserviceaccount.com"


def emulator_public_key(emulator: Emulator, kid: str) -> rsa.RSAPublicKey:
    with urllib.request.urlopen(f"{emulator.url}/oauth2/v3/certs", timeout=10) as answer:
        jwks = json.load(answer)

    def number(value: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    (key,) = [k for k in jwks["keys"] if k["kid"] == kid]
    return rsa.RSAPublicNumbers(number(key["e"]), number(key["n"])).public_key()


def verify(key: rsa.RSAPublicKey, signature: bytes, message: bytes) -> None:
    key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_metadata_credentials_sign_through_sign_blob(emulator: Emulator) -> None:
    proxy = FaultyProxy(emulator.host)
    try:
        wa = workload_auth.default(metadata_host=proxy.host)
        creds = google_auth.Credentials(wa, iam_endpoint=proxy.url)
        assert isinstance(creds, google_credentials.Signing)
        assert creds.signer_email == EMAIL
        signature = creds.sign_bytes(b"to be signed")
        key_id = creds.signer.key_id
        assert key_id
        key = emulator_public_key(emulator, key_id)
        verify(key, signature, b"to be signed")
        verify(key, creds.signer.sign("text"), b"text")
        with pytest.raises(Exception):
            verify(key, signature, b"something else")
        assert proxy.counts[f"/v1/projects/-/serviceAccounts/{EMAIL}:signBlob"] == 2
        # Native credentials without a key refuse to sign locally, clearly.
        with pytest.raises(workload_auth.InvalidArgumentError):
            wa.sign_bytes(b"x")
    finally:
        proxy.close()


def test_storage_signed_url_verifies_with_the_emulators_key(emulator: Emulator) -> None:
    storage = pytest.importorskip("google.cloud.storage")
    wa = workload_auth.default(metadata_host=emulator.host)
    creds = google_auth.Credentials(wa, iam_endpoint=emulator.url)
    client = storage.Client(project="python-project", credentials=creds)
    # The client's scopes reached the credentials (with_scopes_if_required made a scoped copy).
    used = client._credentials
    assert used is not creds and isinstance(used, google_auth.Credentials)
    assert any("devstorage" in s for s in (used.scopes or []) + (used.default_scopes or []))
    blob = client.bucket("a-bucket").blob("dir/object.txt")
    url = blob.generate_signed_url(
        version="v4", expiration=datetime.timedelta(minutes=10), method="GET"
    )
    creds.sign_bytes(b"probe")  # the client signed with a scoped copy: learn the key id here
    check_signed_url(emulator, url, EMAIL, creds.signer.key_id or "")


def check_signed_url(emulator: Emulator, url: str, email: str, key_id: str) -> None:
    """Rebuilds the V4 string to sign of ``url`` as Cloud Storage does and checks its signature
    with the emulator's published key ``key_id``."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.path == "/a-bucket/dir/object.txt"
    canonical_query, _, signature_hex = parsed.query.partition("&X-Goog-Signature=")
    query = dict(urllib.parse.parse_qsl(canonical_query))
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith(email + "/")
    canonical_request = "\n".join(
        [
            "GET",
            parsed.path,
            canonical_query,
            f"host:{parsed.hostname}\n",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Goog-Credential"][len(email) + 1 :]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = emulator_public_key(emulator, key_id)
    verify(key, bytes.fromhex(signature_hex), string_to_sign.encode())
    with pytest.raises(Exception):
        verify(key, bytes.fromhex(signature_hex), string_to_sign.encode() + b"x")


class OAuthStandIn:
    """An OAuth token endpoint on loopback for an ``authorized_user`` source: it answers every
    refresh-token grant with an access token the emulator issued (taken from its metadata
    server), so that the emulator's IAM endpoints accept it as the impersonation source."""

    def __init__(self, emulator: Emulator) -> None:
        import http.server
        import threading

        source = workload_auth.default(metadata_host=emulator.host)
        self.grants: "list[dict[str, str]]" = []
        stand_in = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                stand_in.grants.append(form)
                ok = form.get("grant_type") == "refresh_token"
                body = json.dumps(
                    {"access_token": source.token(), "expires_in": 3600, "token_type": "Bearer"}
                    if ok
                    else {"error": "unsupported_grant_type"}
                ).encode()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_impersonated_credentials_sign_storage_urls_through_sign_blob(
    emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    storage = pytest.importorskip("google.cloud.storage")
    proxy = FaultyProxy(emulator.host)
    oauth = OAuthStandIn(emulator)
    try:
        info = {
            "type": "impersonated_service_account",
            "service_account_impersonation_url": f"{proxy.url}/v1/projects/-/serviceAccounts/"
            f"{EMAIL}:generateAccessToken",
            "source_credentials": {
                "type": "authorized_user",
                "client_id": "c",
                "client_secret": "s",
                "refresh_token": "r",
                "token_uri": f"{oauth.url}/token",
            },
        }
        path = tmp_path / "impersonated.json"
        path.write_text(json.dumps(info))
        wa = workload_auth.Credentials.from_impersonated_service_account_file(path)
        creds = google_auth.Credentials(wa, iam_endpoint=proxy.url)
        assert creds.signer_email == EMAIL  # the impersonation target, from the file
        client = storage.Client(project="python-project", credentials=creds)
        blob = client.bucket("a-bucket").blob("dir/object.txt")
        url = blob.generate_signed_url(
            version="v4", expiration=datetime.timedelta(minutes=10), method="GET"
        )
        sign_blob = f"/v1/projects/-/serviceAccounts/{EMAIL}:signBlob"
        assert proxy.counts[sign_blob] == 1
        # signBlob carried the impersonated token (the emulator refuses tokens it did not
        # issue): the source was refreshed, then impersonated, once.
        assert proxy.counts[f"/v1/projects/-/serviceAccounts/{EMAIL}:generateAccessToken"] == 1
        assert [g["grant_type"] for g in oauth.grants] == ["refresh_token"]
        creds.sign_bytes(b"probe")
        assert proxy.counts[sign_blob] == 2
        check_signed_url(emulator, url, EMAIL, creds.signer.key_id or "")
        # The native call does the same; locally, without a key, it refuses clearly.
        key_id, signature = wa.sign_blob(b"native", iam_endpoint=f"{proxy.url}/v1/")
        verify(emulator_public_key(emulator, key_id or ""), signature, b"native")
        with pytest.raises(workload_auth.InvalidArgumentError):
            wa.sign_bytes(b"x")
    finally:
        oauth.close()
        proxy.close()


def test_service_account_keys_sign_locally(emulator: Emulator, tmp_path: pathlib.Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "key-project",
        "private_key_id": "key-1",
        "private_key": pem,
        "client_email": "signer@key-project.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{emulator.url}/token",
    }
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    wa = workload_auth.Credentials.from_service_account_file(path)
    key_id, signature = wa.sign_bytes(b"local")
    assert key_id == "key-1"
    verify(private.public_key(), signature, b"local")
    creds = google_auth.Credentials(wa)
    assert creds.signer_email == "signer@key-project.iam.gserviceaccount.com"
    verify(private.public_key(), creds.sign_bytes(bytearray(b"buffer")), b"buffer")
    assert creds.signer.key_id == "key-1"
    with pytest.raises(TypeError):
        creds.sign_bytes(42)  # type: ignore[arg-type]


def test_credentials_that_act_as_no_service_account_cannot_sign(
    emulator: Emulator, tmp_path: pathlib.Path
) -> None:
    user = {
        "type": "authorized_user",
        "client_id": "c",
        "client_secret": "s",
        "refresh_token": "r",
        "token_uri": f"{emulator.url}/token",
    }
    path = tmp_path / "user.json"
    path.write_text(json.dumps(user))
    creds = google_auth.Credentials(workload_auth.Credentials.from_file(path))
    assert creds.signer_email is None
    with pytest.raises(ValueError) as refused:
        creds.sign_bytes(b"x")
    assert isinstance(refused.value, workload_auth.InvalidArgumentError)
    assert "cannot sign" in str(refused.value)
    with pytest.raises(workload_auth.InvalidArgumentError):
        google_auth.Credentials(iam_endpoint="http://example.test")
