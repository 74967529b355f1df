"""workload-auth: a workload proves who it is.

To Google APIs with OAuth tokens found through Application Default Credentials, and to other
workloads over mutual TLS with its managed workload identity (a SPIFFE X.509 certificate).

    import workload_auth

    creds = workload_auth.default()
    token = creds.token()                  # cached, refreshed in the background
    print(creds.explain())                 # why these credentials

    identity = workload_auth.WorkloadIdentity.from_directory()
    server = workload_auth.MtlsServer(identity, allow=["td:prod.example"])
    stream = server.accept(conn)           # conn from socket.accept()
    print(stream.peer_spiffe_id)

Every blocking call releases the GIL. Every failure is a ``WorkloadAuthError`` subclass that says
whether retrying may help (``.transient``). ``workload_auth.google_auth.Credentials`` adapts these
credentials to google-auth (install the ``google-auth`` extra).
"""

from ._errors import (
    CredentialsFileNotFoundError,
    CredentialsNotFoundError,
    DeadlineExceededError,
    HttpError,
    InvalidArgumentError,
    InvalidCredentialsError,
    IoError,
    MalformedResponseError,
    NotOnGoogleCloudError,
    PrivateKeyHiddenError,
    RejectedError,
    SetupError,
    TransportError,
    VerificationError,
    WorkloadAuthError,
)
from ._native import (
    AccessBoundary,
    AccessBoundaryRule,
    AccessToken,
    BoundAccessToken,
    Credentials,
    DownscopedCredentials,
    Explanation,
    ExplanationStep,
    MtlsClient,
    MtlsServer,
    MtlsStream,
    WorkloadIdentity,
    __version__,
    default,
)

__all__ = [
    "CredentialsFileNotFoundError",
    "AccessBoundary",
    "AccessBoundaryRule",
    "AccessToken",
    "BoundAccessToken",
    "Credentials",
    "CredentialsNotFoundError",
    "DeadlineExceededError",
    "DownscopedCredentials",
    "Explanation",
    "ExplanationStep",
    "HttpError",
    "InvalidArgumentError",
    "InvalidCredentialsError",
    "PrivateKeyHiddenError",
    "IoError",
    "MalformedResponseError",
    "MtlsClient",
    "MtlsServer",
    "MtlsStream",
    "NotOnGoogleCloudError",
    "RejectedError",
    "SetupError",
    "TransportError",
    "VerificationError",
    "WorkloadAuthError",
    "WorkloadIdentity",
    "__version__",
    "default",
]
