"""Run by test_mds_mtls.py inside private mount and network namespaces (``unshare -m -n``, as
root): google-auth's strict mode reads only /run/google-mds-mtls and talks only to
https://metadata.google.internal/ on port 443, so here /run is a fresh tmpfs the emulator writes
its files into, /etc/hosts maps metadata.google.internal to loopback, and the emulator listens on
127.0.0.1:443 of a network namespace with nothing but loopback. Prints what succeeded."""

import os
import socket
import subprocess
import sys


def sh(*args: str) -> None:
    subprocess.run(args, check=True)


def main() -> None:
    sh("ip", "link", "set", "lo", "up")
    sh("mount", "-t", "tmpfs", "tmpfs", "/run")
    sh("mount", "--bind", os.environ["WA_TEST_HOSTS"], "/etc/hosts")
    emulator = subprocess.Popen(
        [os.environ["WORKLOAD_AUTH_BIN"], "emulator", "--listen", "127.0.0.1:443",
         "--project", "mtls-project", "--mds-mtls", "/run/google-mds-mtls"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        assert emulator.stdout.readline().startswith("listening on 127.0.0.1:443")
        emulator.stdout.readline()
        run_clients()
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def run_clients() -> None:
    os.environ["GCE_METADATA_MTLS_MODE"] = "strict"
    for name in ("GCE_METADATA_HOST", "GCE_METADATA_IP", "NO_GCE_CHECK"):
        os.environ.pop(name, None)
    import google.auth.transport.requests
    from google.auth import compute_engine
    from google.auth.compute_engine import _metadata

    request = google.auth.transport.requests.Request()
    creds = compute_engine.Credentials()
    creds.refresh(request)
    assert creds.token
    project = _metadata.get_project_id(request)
    print(f"google-auth strict: token ok, project {project}", flush=True)

    import workload_auth

    ours = workload_auth.default(
        metadata_host="metadata.google.internal", metadata_mtls_mode="strict"
    )
    assert ours.access_token().token
    details = {d["name"]: d["value"] for d in ours.explain().to_dict()["details"]}
    print(f"workload_auth strict: token ok, transport {details['metadata_transport']}", flush=True)

    # Nothing listens on port 80 here: both clients above used mTLS only.
    with socket.socket() as s:
        refused = s.connect_ex(("127.0.0.1", 80)) != 0
    print("plain http to port 80: " + ("refused" if refused else "OPEN"), flush=True)


if __name__ == "__main__":
    main()
    sys.exit(0)
