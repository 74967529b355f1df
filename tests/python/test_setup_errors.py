"""A failure to set up something on this host (here: a trust store without a single certificate,
so no HTTPS client can be made) is a ``SetupError``: not the caller's bad argument, not a network
failure that retrying cures. Through google-auth it is a ``RefreshError`` that is not retryable,
so google-api-core does not retry it.

The platform's roots are loaded once per process, so each check runs in a fresh interpreter with
``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` naming an empty file and directory. The token endpoint is a
closed loopback port: were the client built after all, the failure would be a transport error."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import json, sys
    import workload_auth
    result = {}
    creds = workload_auth.Credentials.from_file(sys.argv[1])
    try:
        creds.access_token()
    except workload_auth.WorkloadAuthError as e:
        result["native"] = [type(e).__name__, e.kind, e.transient,
                            isinstance(e, workload_auth.SetupError),
                            isinstance(e, workload_auth.InvalidArgumentError)]
    try:
        from google.auth import exceptions as google_exceptions
        from google.auth.transport.requests import Request
        from workload_auth import google_auth
    except ImportError:
        pass
    else:
        adapter = google_auth.Credentials(workload_auth.Credentials.from_file(sys.argv[1]))
        try:
            adapter.refresh(Request())
        except google_exceptions.GoogleAuthError as e:
            result["google"] = [isinstance(e, google_exceptions.RefreshError),
                                isinstance(e, google_exceptions.TransportError),
                                e.retryable, isinstance(e, workload_auth.SetupError)]
    print(json.dumps(result))
    """
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_empty_trust_store_is_a_setup_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "empty.pem").write_text("")
    (tmp_path / "certs").mkdir()
    user = tmp_path / "user.json"
    user.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "id.apps.googleusercontent.com",
                "client_secret": "secret",
                "refresh_token": "refresh",
                "token_uri": f"https://127.0.0.1:{_closed_port()}/token",
            }
        )
    )
    env = dict(os.environ)
    env["SSL_CERT_FILE"] = str(tmp_path / "empty.pem")
    env["SSL_CERT_DIR"] = str(tmp_path / "certs")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(user)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["native"] == ["SetupError", "setup", False, True, False]
    if "google" not in result:
        pytest.skip("google-auth is not installed")
    refresh, transport, retryable, setup = result["google"]
    assert refresh and not transport and retryable is False and setup
