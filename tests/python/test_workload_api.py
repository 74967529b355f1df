"""py-spiffe (the Python `spiffe` package, a client nobody here wrote) against our agent:
`workload-auth agent` serving a credentials directory written by an independent CA, before and
after the directory rotates by symlink swap."""

import os
import pathlib
import subprocess
import time
from typing import Iterator, Tuple

import pytest
from cryptography.hazmat.primitives import serialization
from spiffe import TrustDomain, WorkloadApiClient, X509Source

from conftest import _emulator_binary
from spiffe_ca import Svid, TrustDomainCa, write_credentials_dir

WORKLOAD_ID = "spiffe://python-wapi.example/ns/prod/sa/api"


def _der(cert: object) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]


class Node:
    """A credentials directory kept as the node agent does: a symlink swapped to each generation."""

    def __init__(self, parent: pathlib.Path, local: TrustDomainCa, federated: TrustDomainCa):
        self.parent = parent
        self.local = local
        self.federated = federated
        self.link = parent / "workload-spiffe-credentials"
        self.generation = 0

    def rotate(self) -> Svid:
        self.generation += 1
        svid = self.local.issue(WORKLOAD_ID)
        name = f"workload-spiffe-contents-{self.generation}"
        write_credentials_dir(str(self.parent / name), svid, self.local, [self.federated])
        tmp = self.parent / "link.tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        return svid


@pytest.fixture
def agent(tmp_path: pathlib.Path) -> Iterator[Tuple[str, Node]]:
    binary = _emulator_binary()
    if not binary.exists():
        pytest.fail(f"{binary} not found: build it with `cargo build -p workload-auth-cli`")
    node = Node(tmp_path, TrustDomainCa("python-wapi.example"), TrustDomainCa("partner.example"))
    node.rotate()
    socket = tmp_path / "agent.sock"
    process = subprocess.Popen(
        [
            str(binary),
            "agent",
            "--socket",
            f"unix://{socket}",
            "--credentials",
            str(node.link),
            "--poll-interval",
            "100ms",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    first = process.stdout.readline().strip()
    if not first.startswith("agent serving "):
        process.kill()
        _, err = process.communicate(timeout=10)
        pytest.fail(f"the agent did not start: {first!r} {err!r}")
    try:
        yield f"unix://{socket}", node
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0, "SIGTERM stops the agent cleanly"
        assert not socket.exists(), "the agent removes its socket"


def test_py_spiffe_fetches_svid_and_bundles_from_our_agent(agent: Tuple[str, Node]) -> None:
    address, node = agent
    client = WorkloadApiClient(socket_path=address, default_timeout=10)
    svid = client.fetch_x509_svid()
    assert str(svid.spiffe_id) == WORKLOAD_ID
    assert len(svid.cert_chain) == 2
    # The key py-spiffe parsed is the one of the leaf it received.
    leaf_public = svid.leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_public = svid.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert leaf_public == key_public

    bundles = client.fetch_x509_bundles()
    local = bundles.get_bundle_for_trust_domain(TrustDomain("python-wapi.example"))
    partner = bundles.get_bundle_for_trust_domain(TrustDomain("partner.example"))
    assert local is not None and partner is not None
    assert [_der(c) for c in local.x509_authorities] == [_der(node.local.root)]
    assert [_der(c) for c in partner.x509_authorities] == [_der(node.federated.root)]
    client.close()


def test_py_spiffe_x509_source_sees_a_rotation(agent: Tuple[str, Node]) -> None:
    address, node = agent
    source = X509Source(socket_path=address, timeout_in_seconds=10)
    try:
        def leaf() -> bytes:
            svid = source.get_x509_context().default_svid
            assert svid is not None
            return _der(svid.leaf)

        before = leaf()
        rotated = node.rotate()
        deadline = time.monotonic() + 10
        while leaf() == before:
            assert time.monotonic() < deadline, "py-spiffe never saw the rotation"
            time.sleep(0.05)
        assert leaf() == rotated.chain_der[0]
    finally:
        source.close()


def test_workload_identity_from_our_agent(agent: Tuple[str, Node]) -> None:
    """This library's own Python API, taking its identity from the Workload API."""
    import workload_auth

    address, node = agent
    identity = workload_auth.WorkloadIdentity.from_workload_api(address)
    assert identity.spiffe_id == WORKLOAD_ID
    assert identity.trust_domain == "python-wapi.example"
    with pytest.raises(workload_auth.InvalidArgumentError):
        workload_auth.WorkloadIdentity.from_workload_api("http://not-a-socket")
