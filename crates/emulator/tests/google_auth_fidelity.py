"""Runs google-auth, the reference client library, against the workload-auth metadata emulator.

Started by google_auth_fidelity.rs with GCE_METADATA_HOST and GCE_METADATA_IP pointing at the
emulator on 127.0.0.1 and an empty HOME/CLOUDSDK_CONFIG. Every URL used here is the emulator's:
nothing is sent anywhere else.

Usage: python3 google_auth_fidelity.py AUDIENCE SCOPE[,SCOPE...]
Prints one JSON object on stdout. Exits 3 when google-auth or requests is missing.
"""

import json
import os
import sys


def main():
    try:
        import google.auth
        import google.auth.transport.requests
        from google.auth import _helpers, compute_engine
        from google.auth.compute_engine import _metadata
        from google.oauth2 import id_token
    except ImportError as exc:
        print(json.dumps({"error": f"{exc}; run: pip install google-auth requests"}))
        return 3

    audience = sys.argv[1]
    scopes = sys.argv[2].split(",")
    host = os.environ["GCE_METADATA_HOST"]
    request = google.auth.transport.requests.Request()
    out = {"google_auth_version": google.auth.__version__}

    # Detection: a GET of / on GCE_METADATA_IP, checking the Metadata-Flavor response header.
    out["ping"] = _metadata.ping(request)
    out["is_on_gce"] = _metadata.is_on_gce(request)

    # Access token for the attached service account.
    creds = compute_engine.Credentials()
    creds.refresh(request)
    out["token"] = creds.token
    out["token_valid"] = creds.valid
    out["token_seconds_left"] = (creds.expiry - _helpers.utcnow()).total_seconds()
    out["service_account_email"] = creds.service_account_email
    out["universe_domain"] = creds.universe_domain

    # A token for explicit scopes (sent as ?scopes=a,b).
    scoped = compute_engine.Credentials(scopes=scopes)
    scoped.refresh(request)
    out["scoped_token"] = scoped.token

    # ID token from the identity endpoint, verified against the emulator's keys.
    idc = compute_engine.IDTokenCredentials(
        request, target_audience=audience, use_metadata_identity_endpoint=True
    )
    idc.refresh(request)
    claims = id_token.verify_token(
        idc.token, request, audience=audience, certs_url=f"http://{host}/oauth2/v1/certs"
    )
    out["id_token_claims"] = claims
    out["id_token_issuer_is_google"] = claims["iss"] in id_token._GOOGLE_ISSUERS
    out["id_token_valid"] = idc.valid
    out["id_token_service_account_email"] = idc.service_account_email

    # Application Default Credentials: nothing else configured, so the metadata server.
    default_creds, project_id = google.auth.default()
    out["default_type"] = f"{type(default_creds).__module__}.{type(default_creds).__name__}"
    out["default_project_id"] = project_id
    out["project_id"] = _metadata.get_project_id(request)
    out["metadata_universe_domain"] = _metadata.get_universe_domain(request)
    default_creds.refresh(request)
    out["default_token_valid"] = default_creds.valid

    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
