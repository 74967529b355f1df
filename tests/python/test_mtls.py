"""Workload identities and mutual TLS through the Python API: real sockets on loopback, SVIDs
from an independent CA (spiffe_ca.py)."""

import socket
import threading
from typing import Callable, List, Optional, Tuple

import pytest

import workload_auth
from conftest import Spiffe
from spiffe_ca import TrustDomainCa, write_credentials_dir


def listener() -> Tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    return sock, int(sock.getsockname()[1])


class EchoServer:
    """Accepts one connection with `server` on a thread and echoes until the client closes."""

    def __init__(self, server: workload_auth.MtlsServer) -> None:
        self.sock, self.port = listener()
        self.peer: Optional[str] = None
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(server,))
        self.thread.start()

    def _run(self, server: workload_auth.MtlsServer) -> None:
        conn, _ = self.sock.accept()
        try:
            with server.accept(conn) as stream:
                self.peer = stream.peer_spiffe_id
                while True:
                    data = stream.recv(65536)
                    if not data:
                        break
                    stream.sendall(data)
        except BaseException as e:  # reported to the test
            self.error = e
        finally:
            self.sock.close()

    def join(self) -> None:
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()


def recv_exactly(stream: workload_auth.MtlsStream, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = stream.recv(n - len(out))
        assert chunk, f"closed after {len(out)} of {n} bytes"
        out += chunk
    return out


def test_identity_from_a_credentials_directory(spiffe: Spiffe) -> None:
    identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    assert identity.spiffe_id == spiffe.client_id
    assert identity.trust_domain == spiffe.trust_domain
    assert spiffe.client_id in repr(identity)


def test_missing_or_broken_directories_are_typed_errors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(workload_auth.IoError) as missing:
        workload_auth.WorkloadIdentity.from_directory(tmp_path / "nope")
    assert "nope" in str(missing.value)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "certificates.pem").write_text("-----BEGIN CERTIFICATE-----\ngarbage\n")
    (broken / "private_key.pem").write_text("not a key")
    (broken / "ca_certificates.pem").write_text("")
    with pytest.raises(workload_auth.InvalidCredentialsError):
        workload_auth.WorkloadIdentity.from_directory(broken)


def test_echo_over_mutual_tls_with_both_ids_verified(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow=[spiffe.client_id]))
    client = workload_auth.MtlsClient(client_identity, allow=f"td:{spiffe.trust_domain}")
    with client.connect(("127.0.0.1", echo.port), timeout=10) as stream:
        assert stream.peer_spiffe_id == spiffe.server_id
        assert stream.send(b"ping") == 4
        assert recv_exactly(stream, 4) == b"ping"
    assert stream.closed
    echo.join()
    assert echo.error is None, echo.error
    assert echo.peer == spiffe.client_id


def test_full_duplex_from_two_threads_over_a_socket_we_connected(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow="any"))
    sock = socket.create_connection(("127.0.0.1", echo.port))
    stream = workload_auth.MtlsClient(client_identity, allow=[spiffe.server_id]).connect(sock)
    assert sock.fileno() == -1, "the stream took the socket over"
    payload = bytes(i % 251 for i in range(512 * 1024))
    received: List[bytes] = []
    reader = threading.Thread(target=lambda: received.append(recv_exactly(stream, len(payload))))
    reader.start()
    for i in range(0, len(payload), 7000):
        stream.sendall(payload[i : i + 7000])
    reader.join(timeout=30)
    assert received == [payload]
    stream.close()
    stream.close()  # twice is fine
    with pytest.raises(workload_auth.InvalidArgumentError):
        stream.recv(1)
    echo.join()
    assert echo.error is None, echo.error


def test_a_client_refuses_a_server_its_policy_does_not_allow(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow="any"))
    client = workload_auth.MtlsClient(
        client_identity, allow=["prefix:spiffe://python-tests.example/ns/staging"]
    )
    with pytest.raises(workload_auth.VerificationError) as raised:
        client.connect(f"127.0.0.1:{echo.port}")
    assert spiffe.server_id in str(raised.value)
    assert "not authorized" in str(raised.value)
    assert not raised.value.transient
    echo.join()
    assert isinstance(echo.error, workload_auth.WorkloadAuthError)


def test_a_server_refuses_a_client_and_the_client_learns_it_on_recv(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(
        workload_auth.MtlsServer(server_identity, allow="spiffe://python-tests.example/ns/x/sa/y")
    )
    stream = workload_auth.MtlsClient(client_identity, allow="any").connect(
        ("127.0.0.1", echo.port)
    )
    echo.join()
    assert isinstance(echo.error, workload_auth.VerificationError), echo.error
    assert spiffe.client_id in str(echo.error)
    with pytest.raises(workload_auth.RejectedError):
        stream.recv(10)


def test_a_peer_from_an_untrusted_ca_is_refused(spiffe: Spiffe, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Same trust domain name, different CA: the bundle of that trust domain does not lead to it.
    impostor_ca = TrustDomainCa(spiffe.trust_domain)
    impostor_dir = write_credentials_dir(
        str(tmp_path / "impostor"), impostor_ca.issue(spiffe.client_id), impostor_ca
    )
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    impostor = workload_auth.WorkloadIdentity.from_directory(impostor_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow="any"))
    with pytest.raises(workload_auth.VerificationError):
        workload_auth.MtlsClient(impostor, allow="any").connect(("127.0.0.1", echo.port))
    echo.join()


@pytest.mark.parametrize("answer", [True, False])
def test_a_python_predicate_decides(spiffe: Spiffe, answer: bool) -> None:
    seen: List[str] = []

    def allow_client(peer: str) -> bool:
        seen.append(peer)
        return answer

    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow=[allow_client]))
    stream = workload_auth.MtlsClient(client_identity, allow="any").connect(
        ("127.0.0.1", echo.port)
    )
    if answer:
        stream.sendall(b"hi")
        assert recv_exactly(stream, 2) == b"hi"
        stream.close()
        echo.join()
        assert echo.error is None
    else:
        echo.join()
        assert isinstance(echo.error, workload_auth.VerificationError)
        assert "allow_client" in str(echo.error)
    assert seen == [spiffe.client_id]


def test_a_predicate_that_raises_refuses_the_peer_with_the_exception_as_cause(
    spiffe: Spiffe,
) -> None:
    class PolicyBug(Exception):
        pass

    def broken(peer: str) -> bool:
        raise PolicyBug(f"cannot decide about {peer}")

    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow=broken))
    workload_auth.MtlsClient(client_identity, allow="any").connect(("127.0.0.1", echo.port))
    echo.join()
    error = echo.error
    assert isinstance(error, workload_auth.VerificationError), error
    assert isinstance(error.__cause__, PolicyBug)
    assert spiffe.client_id in str(error.__cause__)

    # The client side too: a predicate over the server's ID.
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow="any"))
    with pytest.raises(workload_auth.VerificationError) as raised:
        workload_auth.MtlsClient(client_identity, allow=[broken]).connect(
            ("127.0.0.1", echo.port)
        )
    assert isinstance(raised.value.__cause__, PolicyBug)
    echo.join()


def test_bad_policies_and_arguments(spiffe: Spiffe) -> None:
    identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    with pytest.raises(workload_auth.InvalidArgumentError):
        workload_auth.MtlsClient(identity, allow=[])
    with pytest.raises(workload_auth.InvalidArgumentError) as bad:
        workload_auth.MtlsClient(identity, allow=["td:"])
    assert "td:" in str(bad.value)
    with pytest.raises(TypeError):
        workload_auth.MtlsClient(identity, allow=[42])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        workload_auth.MtlsClient("not an identity", allow="any")  # type: ignore[arg-type]
    client = workload_auth.MtlsClient(identity, allow="any")
    with pytest.raises(TypeError):
        client.connect(12345)  # type: ignore[arg-type]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with pytest.raises(workload_auth.InvalidArgumentError):
        client.connect(udp)
    udp.close()
    with pytest.raises(workload_auth.TransportError):
        client.connect(("127.0.0.1", _closed_port()), timeout=5)
    server = workload_auth.MtlsServer(identity, allow="any")
    with pytest.raises(TypeError):
        server.accept(("127.0.0.1", 1))  # type: ignore[arg-type]


def test_a_handshake_that_never_completes_times_out(spiffe: Spiffe) -> None:
    # A TCP server that accepts and says nothing.
    silent, port = listener()
    identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(0.3)
    with pytest.raises(workload_auth.TransportError) as raised:
        workload_auth.MtlsClient(identity, allow="any").connect(sock)
    assert raised.value.transient
    silent.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])




def test_finding_5_td_policy_with_a_path_is_refused_not_widened(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    narrow = f"td:spiffe://{spiffe.trust_domain}/ns/admin"
    for make in (workload_auth.MtlsClient, workload_auth.MtlsServer):
        with pytest.raises(workload_auth.InvalidArgumentError) as bad:
            make(client_identity, allow=narrow)
        assert "/ns/admin" in str(bad.value)
        with pytest.raises(workload_auth.InvalidArgumentError):
            make(client_identity, allow=["any", narrow])
    # The trust domain written as its SPIFFE ID, with no path, still means the whole domain.
    echo = EchoServer(
        workload_auth.MtlsServer(server_identity, allow=f"td:spiffe://{spiffe.trust_domain}")
    )
    client = workload_auth.MtlsClient(client_identity, allow=f"td:{spiffe.trust_domain}")
    with client.connect(("127.0.0.1", echo.port)) as stream:
        stream.sendall(b"ping")
        assert recv_exactly(stream, 4) == b"ping"
    echo.join()
    assert echo.error is None
    assert echo.peer == spiffe.client_id


def test_finding_9_recv_with_an_out_of_range_size_is_a_value_error(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow="any"))
    client = workload_auth.MtlsClient(client_identity, allow="any")
    with client.connect(("127.0.0.1", echo.port), timeout=30) as stream:
        for bufsize in (-1, -(2**70), 2**31, 2**63, 2**64 + 5, 10**100):
            with pytest.raises(ValueError) as raised:
                stream.recv(bufsize)
            assert "bufsize" in str(raised.value)
            assert isinstance(raised.value, workload_auth.InvalidArgumentError)
        for wrong_type in (1.5, "10", None):
            with pytest.raises(TypeError):
                stream.recv(wrong_type)  # type: ignore[arg-type]
        # The stream is still usable, and the largest size allowed works without allocating it.
        stream.sendall(b"still here")
        got = b""
        while len(got) < 10:
            chunk = stream.recv(2**31 - 1)
            assert chunk
            got += chunk
        assert got == b"still here"
        assert stream.recv(0) == b""
    echo.join()
    assert echo.error is None


def test_finding_9_out_of_range_timeouts_and_ports_are_value_errors(spiffe: Spiffe) -> None:
    identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    client = workload_auth.MtlsClient(identity, allow="any")
    port = _closed_port()
    for timeout in (1e300, float("inf"), float("nan"), -1, -0.5, 10**400, 2e9, 0, 0.0):
        with pytest.raises(ValueError) as raised:
            client.connect(("127.0.0.1", port), timeout=timeout)
        assert "timeout" in str(raised.value) or "non-blocking" in str(raised.value)
    with pytest.raises(TypeError):
        client.connect(("127.0.0.1", port), timeout="5")  # type: ignore[arg-type]
    # A socket passed with a bad timeout is refused before the stream takes it over.
    sock = socket.socket()
    with pytest.raises(ValueError):
        client.connect(sock, timeout=1e300)
    assert sock.fileno() >= 0
    sock.close()
    for bad_port in (-1, 65536, 2**70):
        with pytest.raises(ValueError) as raised:
            client.connect(("127.0.0.1", bad_port), timeout=5)
        assert "port" in str(raised.value)
    with pytest.raises(TypeError):
        client.connect(("127.0.0.1", 80.0), timeout=5)  # type: ignore[arg-type]
    # The largest timeout allowed is accepted (the connection is then refused, quickly).
    with pytest.raises(workload_auth.TransportError):
        client.connect(("127.0.0.1", port), timeout=1e9)


def test_finding_10_a_key_file_readable_by_others_is_a_warning(spiffe: Spiffe, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    directory = write_credentials_dir(
        str(tmp_path / "creds"), spiffe.ca.issue(spiffe.client_id), spiffe.ca
    )
    key = os.path.join(directory, "private_key.pem")
    assert workload_auth.WorkloadIdentity.from_directory(directory).warnings == []
    os.chmod(key, 0o644)
    warnings = workload_auth.WorkloadIdentity.from_directory(directory).warnings
    assert len(warnings) == 1
    assert key in warnings[0] and "0644" in warnings[0]


def test_send_and_sendall_take_any_bytes_like_buffer(spiffe: Spiffe) -> None:
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    client_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.client_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, allow="any"))
    client = workload_auth.MtlsClient(client_identity, allow=[spiffe.server_id])
    with client.connect(("127.0.0.1", echo.port), timeout=10) as stream:
        assert stream.send(bytearray(b"abc")) == 3
        stream.sendall(memoryview(b"xdefx")[1:4])
        stream.sendall(b"g")
        assert recv_exactly(stream, 7) == b"abcdefg"
        for bad in ("text", 42, [1, 2]):
            with pytest.raises(TypeError):
                stream.sendall(bad)  # type: ignore[arg-type]
        assert "peer_spiffe_id='" in repr(stream) and "closed=False" in repr(stream)
    echo.join()
    assert echo.error is None


@pytest.mark.parametrize("layout", ["combined", "spiffe-fs", "no-key"])
def test_each_credential_layout_written_by_python(spiffe: Spiffe, tmp_path, layout: str) -> None:  # type: ignore[no-untyped-def]
    from spiffe_ca import write_layout_dir

    directory = write_layout_dir(
        str(tmp_path / layout), spiffe.ca.issue(spiffe.client_id), spiffe.ca, layout
    )
    identity = workload_auth.WorkloadIdentity.from_directory(directory)
    assert identity.layout == layout
    assert identity.spiffe_id == spiffe.client_id
    assert identity.has_private_key == (layout != "no-key")
    if layout == "no-key":
        with pytest.raises(workload_auth.PrivateKeyHiddenError) as hidden:
            workload_auth.MtlsClient(identity, spiffe.server_id)
        assert isinstance(hidden.value, workload_auth.InvalidCredentialsError)
        assert "hidden" in str(hidden.value)
        with pytest.raises(workload_auth.PrivateKeyHiddenError):
            workload_auth.MtlsServer(identity, "any")
        return
    server_identity = workload_auth.WorkloadIdentity.from_directory(spiffe.server_dir)
    echo = EchoServer(workload_auth.MtlsServer(server_identity, spiffe.client_id))
    with workload_auth.MtlsClient(identity, spiffe.server_id).connect(
        ("127.0.0.1", echo.port), timeout=10
    ) as stream:
        assert stream.peer_spiffe_id == spiffe.server_id
        stream.sendall(b"layout")
        assert recv_exactly(stream, 6) == b"layout"
    echo.join()
    assert echo.error is None, echo.error
    assert echo.peer == spiffe.client_id


def test_spiffe_credential_folder_is_the_default_directory(
    spiffe: Spiffe, tmp_path, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    from spiffe_ca import write_layout_dir

    directory = write_layout_dir(
        str(tmp_path / "folder"), spiffe.ca.issue(spiffe.client_id), spiffe.ca, "spiffe-fs"
    )
    monkeypatch.setenv("SPIFFE_CREDENTIAL_FOLDER", directory)
    identity = workload_auth.WorkloadIdentity.from_directory()
    assert identity.layout == "spiffe-fs"
    assert identity.spiffe_id == spiffe.client_id
