"""Shared fixtures of the Python suite.

- Every socket is confined to loopback: connecting to or resolving anything else raises, so no
  test can reach a real metadata server or a Google host even by mistake.
- The process environment is emptied of anything Application Default Credentials would read
  (credentials files, gcloud configuration, metadata host), and HOME points at an empty directory.
- ``emulator``: the project's emulator, run as ``workload-auth emulator --listen 127.0.0.1:0``
  (the binary cargo builds; set WORKLOAD_AUTH_BIN to use another).
- ``spiffe``: credentials directories written by an independent CA (tests/python/spiffe_ca.py).

Test modules must import google.auth.compute_engine lazily (inside tests): google-auth reads
GCE_METADATA_HOST when that module is first imported.
"""

import os
import pathlib
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from spiffe_ca import TrustDomainCa, write_credentials_dir  # noqa: E402

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check(address: object) -> None:
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and host not in _LOOPBACK and not host.startswith("/"):
        raise OSError(f"tests: blocked a connection to {address!r} (loopback only)")


def _guarded_connect(self: socket.socket, address: object) -> None:
    _check(address)
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    _check(address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    if host is not None and host not in _LOOPBACK:
        raise socket.gaierror(f"tests: blocked a lookup of {host!r} (loopback only)")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo

_ADC_VARIABLES = [
    "GOOGLE_APPLICATION_CREDENTIALS",
    "GOOGLE_CLOUD_PROJECT",
    "GCLOUD_PROJECT",
    "GOOGLE_CLOUD_QUOTA_PROJECT",
    "GCE_METADATA_HOST",
    "GCE_METADATA_IP",
    "GCE_METADATA_ROOT",
    "CLOUDSDK_CONFIG",
    "CLOUDSDK_CORE_PROJECT",
    "GOOGLE_API_USE_CLIENT_CERTIFICATE",
    "GOOGLE_API_CERTIFICATE_CONFIG",
    "WORKLOAD_AUTH_ALLOWED_ENDPOINTS",
]
_HOME = tempfile.mkdtemp(prefix="wa-python-home-")
for _name in _ADC_VARIABLES:
    os.environ.pop(_name, None)
os.environ["HOME"] = _HOME
os.environ["CLOUDSDK_CONFIG"] = os.path.join(_HOME, "gcloud")
# Nothing configured means "not on Google Cloud", decided without a probe.
os.environ["NO_GCE_CHECK"] = "true"


def _emulator_binary() -> pathlib.Path:
    explicit = os.environ.get("WORKLOAD_AUTH_BIN")
    if explicit:
        return pathlib.Path(explicit)
    root = pathlib.Path(__file__).resolve().parents[2]
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    return target / "debug" / "workload-auth"


@dataclass
class Emulator:
    host: str  # "127.0.0.1:PORT", what GCE_METADATA_HOST takes

    @property
    def url(self) -> str:
        return f"http://{self.host}"


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    binary = _emulator_binary()
    if not binary.exists():
        pytest.fail(
            f"{binary} not found: build it with `cargo build -p workload-auth-cli` "
            "(or set WORKLOAD_AUTH_BIN)"
        )
    process = subprocess.Popen(
        [str(binary), "emulator", "--listen", "127.0.0.1:0", "--project", "python-project"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    if not first.startswith("listening on "):
        process.kill()
        _, err = process.communicate(timeout=10)
        pytest.fail(f"the emulator did not start: {first!r} {err!r}")
    host = first.removeprefix("listening on ")
    assert host.startswith("127.0.0.1:"), host
    try:
        yield Emulator(host=host)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture
def metadata_env(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """The process environment pointing ADC (and google-auth) at the emulator."""
    monkeypatch.setenv("GCE_METADATA_HOST", emulator.host)
    monkeypatch.setenv("GCE_METADATA_IP", emulator.host)
    monkeypatch.delenv("NO_GCE_CHECK", raising=False)
    return emulator


@dataclass
class Spiffe:
    trust_domain: str
    server_id: str
    client_id: str
    server_dir: str
    client_dir: str
    ca: TrustDomainCa


@pytest.fixture(scope="session")
def spiffe(tmp_path_factory: pytest.TempPathFactory) -> Spiffe:
    root = tmp_path_factory.mktemp("spiffe")
    ca = TrustDomainCa("python-tests.example")
    server_id = "spiffe://python-tests.example/ns/prod/sa/server"
    client_id = "spiffe://python-tests.example/ns/prod/sa/client"
    return Spiffe(
        trust_domain=ca.trust_domain,
        server_id=server_id,
        client_id=client_id,
        server_dir=write_credentials_dir(str(root / "server"), ca.issue(server_id), ca),
        client_dir=write_credentials_dir(str(root / "client"), ca.issue(client_id), ca),
        ca=ca,
    )
