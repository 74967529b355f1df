"""The metadata server over mutual TLS from Python: ``workload_auth.default(metadata_mtls_mode=...)``
against ``workload-auth emulator --mds-mtls DIR``, Python's own ``ssl`` against the same emulator,
and google-auth 2.63 in ``GCE_METADATA_MTLS_MODE=strict`` (which only reads
/run/google-mds-mtls and only talks to metadata.google.internal:443: run in private mount and
network namespaces, as root)."""

import os
import pathlib
import shutil
import socket
import ssl
import subprocess
import sys
from typing import Iterator, Tuple

import pytest

import workload_auth
from conftest import _emulator_binary

HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture
def mtls_emulator(tmp_path: pathlib.Path) -> Iterator[Tuple[str, pathlib.Path]]:
    """A fresh emulator serving the metadata server over mTLS too; its files in a directory."""
    files = tmp_path / "mds-mtls"
    process = subprocess.Popen(
        [str(_emulator_binary()), "emulator", "--listen", "127.0.0.1:0", "--project",
         "mtls-project", "--mds-mtls", str(files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    assert first.startswith("listening on "), first
    second = process.stdout.readline()
    assert "mTLS" in second, second
    try:
        yield first.removeprefix("listening on "), files
    finally:
        process.terminate()
        process.wait(timeout=10)


def _details(creds: workload_auth.Credentials) -> dict:
    return {d["name"]: d["value"] for d in creds.explain().to_dict()["details"]}


def test_default_with_strict_mtls_gets_tokens_and_explains_the_transport(
    mtls_emulator: Tuple[str, pathlib.Path],
) -> None:
    host, files = mtls_emulator
    creds = workload_auth.default(
        metadata_host=host, metadata_mtls_mode="strict", metadata_mtls_dir=files
    )
    assert creds.access_token().token
    details = _details(creds)
    assert details["metadata_transport"] == "mtls"
    assert details["metadata_mtls_mode"] == "strict"
    assert "never plain HTTP" in details["metadata_transport_reason"]
    assert creds.project_id() == "mtls-project"
    # A pickle keeps the transport choice (never the files' contents).
    import pickle

    data = pickle.dumps(creds)
    assert b"PRIVATE KEY" not in data
    assert _details(pickle.loads(data))["metadata_transport"] == "mtls"


def test_an_unknown_mode_and_missing_files_are_typed_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(workload_auth.InvalidArgumentError, match="sometimes"):
        workload_auth.default(metadata_host="127.0.0.1:9", metadata_mtls_mode="sometimes")
    with pytest.raises(workload_auth.InvalidCredentialsError, match="root.crt"):
        workload_auth.default(
            metadata_host="127.0.0.1:9", metadata_mtls_mode="strict", metadata_mtls_dir=tmp_path
        )


def test_python_ssl_verifies_the_emulator_as_both_metadata_server_names(
    mtls_emulator: Tuple[str, pathlib.Path],
) -> None:
    host, files = mtls_emulator
    port = int(host.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=str(files / "root.crt"))
    context.load_cert_chain(str(files / "client.key"))
    for name in ("metadata.google.internal", "169.254.169.254"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname=name) as tls:
                tls.sendall(
                    b"GET /computeMetadata/v1/project/project-id HTTP/1.1\r\n"
                    b"Host: metadata.google.internal\r\nMetadata-Flavor: Google\r\n"
                    b"Connection: close\r\n\r\n"
                )
                answer = b""
                while chunk := tls.recv(4096):
                    answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:80]
        assert answer.endswith(b"mtls-project"), answer[-80:]
    # Without a client certificate the server refuses the handshake.
    bare = ssl.create_default_context(cafile=str(files / "root.crt"))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with bare.wrap_socket(raw, server_hostname="metadata.google.internal") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                tls.recv(1)


def test_google_auth_strict_mode_against_the_emulator_in_a_namespace(
    tmp_path: pathlib.Path,
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for private mount and network namespaces")
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost metadata.google.internal\n")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "WORKLOAD_AUTH_BIN": str(_emulator_binary()),
        "WA_TEST_HOSTS": str(hosts),
        "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
    }
    script = HERE / "mds_mtls_google_auth.py"
    result = subprocess.run(
        ["unshare", "-m", "-n", sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "google-auth strict: token ok, project mtls-project" in lines, result.stdout
    assert "workload_auth strict: token ok, transport mtls" in lines, result.stdout
    assert "plain http to port 80: refused" in lines, result.stdout
