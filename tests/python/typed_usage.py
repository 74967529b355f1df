"""Checked with `mypy --strict` by test_typing.py: user code against the shipped stubs."""

import socket
from typing import Dict, List, Optional

import workload_auth
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
    adapter = GoogleAuthCredentials(creds, scopes=["x"])
    assert adapter.requires_scopes is False
    del expires, headers, project, kind, steps
    return [token, scoped, creds.id_token("aud")]


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
