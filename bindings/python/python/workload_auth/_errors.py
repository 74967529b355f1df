"""The exceptions of workload_auth, one per kind of failure of the Rust library.

Each carries what a caller decides on: ``transient`` (whether retrying later may help), ``kind``,
and when known the HTTP ``status``, the ``endpoint`` (file, URL or place) and a ``hint``.
"""

import errno
import os
from typing import Any, Optional


class WorkloadAuthError(Exception):
    """Base class of every workload_auth error."""

    kind: str
    transient: bool
    status: Optional[int]
    endpoint: Optional[str]
    hint: Optional[str]

    def __init__(
        self,
        message: str,
        *,
        kind: str = "other",
        transient: bool = False,
        status: Optional[int] = None,
        endpoint: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.transient = transient
        self.status = status
        self.endpoint = endpoint
        self.hint = hint


class CredentialsNotFoundError(WorkloadAuthError):
    """No credentials in any place Application Default Credentials looks (the message lists them)."""


class CredentialsFileNotFoundError(CredentialsNotFoundError, FileNotFoundError):
    """The credentials file given does not exist: a ``CredentialsNotFoundError`` and a
    ``FileNotFoundError`` (``errno`` ENOENT, ``filename`` the path)."""

    errno: int
    strerror: str
    filename: str

    def __init__(self, message: str, *, filename: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("kind", "credentials_not_found")
        kwargs.setdefault("endpoint", filename)
        super().__init__(message, **kwargs)
        self.errno = errno.ENOENT
        self.strerror = os.strerror(errno.ENOENT)
        self.filename = filename


class InvalidCredentialsError(WorkloadAuthError):
    """A credentials file, its JSON, or X.509 material is malformed or unusable."""


class PrivateKeyHiddenError(InvalidCredentialsError):
    """The platform keeps the workload's private key hidden: its certificate names the workload
    (and can be presented for token binding), but no mutual TLS can be made with it."""


class InvalidArgumentError(WorkloadAuthError, ValueError):
    """An argument is invalid: an empty audience, a bad scope or policy, a closed stream."""


class IoError(WorkloadAuthError, OSError):
    """Reading a local file or directory failed."""


class TransportError(WorkloadAuthError, ConnectionError):
    """The network failed: refused, reset, timed out, or closed without TLS close_notify."""


class DeadlineExceededError(TransportError, TimeoutError):
    """A call's ``timeout`` passed before it finished (transient: the work goes on in the
    background and a later call may find its result in the cache)."""


class HttpError(WorkloadAuthError):
    """A server answered with an HTTP error status (``status``)."""


class MalformedResponseError(WorkloadAuthError):
    """A server answered, but not in the expected format."""


class RejectedError(WorkloadAuthError):
    """A server or TLS peer refused our credentials (HTTP 401/403, a TLS alert)."""


class NotOnGoogleCloudError(WorkloadAuthError):
    """Not running on Google Cloud: there is no metadata server."""


class SetupError(WorkloadAuthError, RuntimeError):
    """Something the library needs could not be set up on this host, whatever the arguments:
    its HTTP client or TLS configuration, the platform's trust roots, its runtime's threads."""


class VerificationError(WorkloadAuthError):
    """A peer's certificate or SPIFFE ID failed verification or authorization.

    When a user's authorization predicate raised, that exception is ``__cause__``.
    """
