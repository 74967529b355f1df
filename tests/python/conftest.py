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


class FaultyProxy:
    """A recording HTTP proxy in front of the emulator: counts requests per path, and applies
    queued faults (``("status", 503)`` answers that status, ``("delay", seconds)`` waits before
    forwarding) to the next requests, in order."""

    def __init__(self, upstream: str) -> None:
        import collections
        import http.client
        import http.server
        import threading
        import time

        self.upstream = upstream
        self.faults: "collections.deque[tuple[str, float]]" = collections.deque()
        self.counts: "collections.Counter[str]" = collections.Counter()
        #: Every request forwarded: (method, path, headers, body).
        self.recorded: "list[tuple[str, str, dict[str, str], bytes]]" = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy._lock:
                    proxy.counts[self.path.split("?")[0]] += 1
                    proxy.recorded.append(
                        (self.command, self.path, dict(self.headers.items()), body or b"")
                    )
                    fault = proxy.faults.popleft() if proxy.faults else None
                if fault is not None and fault[0] == "delay":
                    time.sleep(fault[1])
                if fault is not None and fault[0] == "status":
                    payload = b"injected fault"
                    self.send_response(int(fault[1]))
                    self.send_header("content-length", str(len(payload)))
                    self.send_header("metadata-flavor", "Google")
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            def _serve(self) -> None:
                try:
                    self._handle()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a deadline passed): nothing to answer

            do_GET = do_POST = _serve

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.host = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def token_fetches(self) -> int:
        return sum(n for path, n in self.counts.items() if path.endswith("/token"))

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def proxy(emulator: Emulator) -> Iterator[FaultyProxy]:
    """A ``FaultyProxy`` in front of the session's emulator."""
    p = FaultyProxy(emulator.host)
    try:
        yield p
    finally:
        p.close()


def start_emulator(*args: str) -> "tuple[subprocess.Popen[str], Emulator]":
    """Another emulator, with extra command-line arguments (for example a short token lifetime)."""
    process = subprocess.Popen(
        [str(_emulator_binary()), "emulator", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    assert first.startswith("listening on "), first
    return process, Emulator(host=first.removeprefix("listening on "))
