"""Checked with `mypy --strict` by test_typing.py: user code against the shipped stubs."""

import socket
from typing import Any, Dict, List, Mapping, Optional

import workload_auth
from workload_auth import google_auth
from workload_auth.google_auth import Credentials as GoogleAuthCredentials


def tokens(host: str) -> List[str]:
    creds: workload_auth.Credentials = workload_auth.default(metadata_host=host, scopes=["a"])
    token: str = creds.token()
    scoped: str = creds.token(["https://www.googleapis.com/auth/cloud-platform"])
    info: workload_auth.AccessToken = creds.access_token()
    expires: float = info.expires_at
    headers: Dict[str, str] = creds.headers()
    project: Optional[str] = creds.project_id()
    explanation = creds.explain()
    kind: Optional[str] = explanation.credential_type
    steps: List[str] = [s.outcome for s in explanation.steps]
    adapter = GoogleAuthCredentials(creds, scopes=["x"], timeout=5.0)
    assert adapter.requires_scopes is False
    one: str = creds.token("https://www.googleapis.com/auth/cloud-platform", timeout=2.5)
    signer: Optional[str] = adapter.signer_email
    signature: bytes = adapter.sign_bytes(b"blob")
    key_id, native_signature = creds.sign_blob(b"blob", iam_endpoint=None, timeout=5.0)
    maybe_key: Optional[str] = key_id
    raw: bytes = native_signature
    del maybe_key, raw
    google_creds, google_project = google_auth.default(scopes=["s"], quota_project_id="q")
    scoped_copy: GoogleAuthCredentials = google_creds.with_scopes(["t"])
    id_creds = google_auth.IDTokenCredentials("https://svc.example", creds)
    claims: Mapping[str, Any] = google_auth.verify_id_token("jwt", "aud")
    del expires, headers, project, kind, steps, one, signer, signature, google_project
    del scoped_copy, id_creds, claims
    return [token, scoped, creds.id_token("aud", timeout=1.0)]


async def tokens_async(creds: workload_auth.Credentials) -> str:
    headers: Dict[str, str] = await creds.request_headers_async(timeout=1.0)
    id_token: str = await creds.id_token_async("aud")
    del headers, id_token
    return await creds.token_async(["s"], timeout=1.0)


def serve(directory: str, conn: socket.socket) -> bytes:
    identity = workload_auth.WorkloadIdentity.from_directory(directory)
    server = workload_auth.MtlsServer(identity, allow=["td:example.org", lambda peer: peer.endswith("/sa/a")])
    with server.accept(conn) as stream:
        peer: str = stream.peer_spiffe_id
        data: bytes = stream.recv(1024)
        sent: int = stream.send(peer.encode() + data)
        del sent
        return data


def handle(error: workload_auth.WorkloadAuthError) -> bool:
    status: Optional[int] = error.status
    del status
    return error.transient
