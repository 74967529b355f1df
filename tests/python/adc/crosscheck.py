"""Cross-check of workload-auth's Application Default Credentials against google-auth.

Run by crates/adc/tests/google_auth_crosscheck.rs, once per case, in a child process whose
environment (HOME, CLOUDSDK_CONFIG, GOOGLE_APPLICATION_CREDENTIALS, ...) the Rust test prepared
and also gave to the Rust library. It asks google-auth what `google.auth.default()` finds, makes it
fetch a token from the workload-auth emulator, and prints one JSON object:

    {"class": "...", "project_id": ..., "quota_project_id": ..., "universe_domain": ...,
     "token": "..."}

or, when google-auth is not installed, exits 3 with a message on stderr.

Argument: a JSON object of overrides for the few endpoints google-auth hard-codes to Google's
hosts instead of reading them from the file:
    {"token_uri": URL}                       user credentials' token endpoint (gcloud files have none)
    {"source_token_uri": URL}                the same for an impersonation file's user source
    {"iam_endpoint_override": URL}           impersonation files: google-auth ignores their URL

Every socket is confined to loopback: a connection or name lookup for anything else raises, so
nothing this script does can leave the machine even if google-auth tried.
"""

import json
import socket
import sys

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}
_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if host not in _LOOPBACK:
        raise OSError(f"crosscheck: blocked a connection to {address!r} (loopback only)")
    return _real_connect(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host not in _LOOPBACK and host is not None:
        raise socket.gaierror(f"crosscheck: blocked a lookup of {host!r} (loopback only)")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.getaddrinfo = _guarded_getaddrinfo

try:
    import google.auth
    import google.auth.credentials
    import google.auth.transport.requests
except ImportError as e:  # pragma: no cover - reported by the Rust test
    print(
        f"google-auth is not installed ({e}); run: pip install -r tests/python/requirements.txt",
        file=sys.stderr,
    )
    sys.exit(3)

CLOUD_PLATFORM = "https://www.googleapis.com/auth/cloud-platform"


def main():
    overrides = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    credentials, project_id = google.auth.default()
    out = {
        "class": type(credentials).__module__ + "." + type(credentials).__name__,
        "project_id": project_id,
        "quota_project_id": getattr(credentials, "quota_project_id", None),
        "universe_domain": credentials.universe_domain,
        "google_auth_version": google.auth.__version__,
    }
    if "token_uri" in overrides:
        credentials._token_uri = overrides["token_uri"]
    if "iam_endpoint_override" in overrides:
        credentials._iam_endpoint_override = overrides["iam_endpoint_override"]
    if "source_token_uri" in overrides:
        credentials._source_credentials._token_uri = overrides["source_token_uri"]
    scoped = google.auth.credentials.with_scopes_if_required(credentials, [CLOUD_PLATFORM])
    scoped.refresh(google.auth.transport.requests.Request())
    out["token"] = scoped.token
    print(json.dumps(out))


if __name__ == "__main__":
    main()
