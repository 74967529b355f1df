# Type stubs of the native module (bindings/python/src). Every blocking method releases the GIL.
import os
import socket
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str

#: A policy: "any", a SPIFFE ID (exact), "td:TRUST_DOMAIN" (member of) or "prefix:SPIFFE_ID"
#: (path prefix on "/" boundaries); or a callable that gets the peer's SPIFFE ID and returns
#: whether to allow it (an exception it raises refuses the peer).
Policy = Union[str, Callable[[str], object]]

def default(
    *,
    scopes: Optional[Sequence[str]] = None,
    quota_project: Optional[str] = None,
    metadata_host: Optional[str] = None,
    allowed_types: Optional[Sequence[str]] = None,
    allowed_endpoints: Optional[Sequence[str]] = None,
) -> Credentials:
    """Application Default Credentials from the environment: GOOGLE_APPLICATION_CREDENTIALS,
    gcloud's credentials file, then the metadata server (``metadata_host``, else
    GCE_METADATA_HOST, else metadata.google.internal). Makes no token request. Off Google Cloud
    with nothing configured, raises CredentialsNotFoundError within milliseconds.

    ``allowed_types``: accept only these credential types (``"service_account"``,
    ``"metadata_server"``...); a file of another type raises InvalidCredentialsError before
    anything in it is used. ``allowed_endpoints``: hosts (``"sts.corp.example"``,
    ``"*.corp.example"``) a credentials file may send credentials to besides Google's token
    endpoints and localhost, like the WORKLOAD_AUTH_ALLOWED_ENDPOINTS variable."""

class Credentials:
    """Application Default Credentials with their token caches. Thread-safe; share one."""

    @staticmethod
    def from_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_types: Optional[Sequence[str]] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Any credential type (or one of ``allowed_types``). For a file from a source you do
        not control, use the loader of the type you expect (``from_service_account_file``...)."""
    @staticmethod
    def from_json(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_types: Optional[Sequence[str]] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials: ...
    @staticmethod
    def from_service_account_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_service_account_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_authorized_user_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``authorized_user`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_authorized_user_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``authorized_user`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_impersonated_service_account_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``impersonated_service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_impersonated_service_account_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``impersonated_service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_authorized_user_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account_authorized_user`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_authorized_user_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account_authorized_user`` file; any other type raises InvalidCredentialsError."""
    def token(self, scopes: Optional[Sequence[str]] = None) -> str:
        """An access token, from the cache when it holds a fresh one."""
    def access_token(self, scopes: Optional[Sequence[str]] = None) -> AccessToken: ...
    def id_token(self, audience: str) -> str:
        """An OpenID Connect ID token whose ``aud`` is ``audience``."""
    def headers(self) -> Dict[str, str]:
        """``authorization``; with a quota project, ``x-goog-user-project``; with regional access
        boundaries enabled and known, ``x-allowed-locations``."""
    def explain(self) -> Explanation: ...
    def project_id(self) -> Optional[str]: ...
    def universe_domain(self) -> str: ...
    @property
    def quota_project_id(self) -> Optional[str]: ...
    @property
    def credential_type(self) -> str:
        """metadata_server, service_account, authorized_user, impersonated_service_account,
        external_account or external_account_authorized_user."""
    def invalidate(self) -> None:
        """Forgets every cached token; the next call fetches anew."""

class AccessToken:
    """An access token and its expiry. ``repr()`` hides the token."""

    @property
    def token(self) -> str: ...
    @property
    def token_type(self) -> str: ...
    @property
    def expires_at(self) -> float:
        """Seconds since the Unix epoch."""
    @property
    def expires_in(self) -> float: ...

class ExplanationStep:
    @property
    def name(self) -> str: ...
    @property
    def place(self) -> Optional[str]: ...
    @property
    def outcome(self) -> str:
        """chosen, not_found, failed or not_tried."""
    @property
    def detail(self) -> str: ...

class Explanation:
    """Why these credentials. ``str()`` is a report for people; ``to_dict()`` the same as data."""

    @property
    def credential_type(self) -> Optional[str]: ...
    @property
    def credential_source(self) -> Optional[str]: ...
    @property
    def project_id(self) -> Optional[str]: ...
    @property
    def quota_project_id(self) -> Optional[str]: ...
    @property
    def universe_domain(self) -> Optional[str]: ...
    @property
    def regional_access_boundary(self) -> str: ...
    @property
    def error(self) -> Optional[str]: ...
    @property
    def steps(self) -> List[ExplanationStep]: ...
    def to_dict(self) -> Dict[str, Any]: ...

class WorkloadIdentity:
    """The workload's X509-SVID and trust bundles, kept current as they rotate."""

    @staticmethod
    def from_directory(path: Union[str, "os.PathLike[str]", None] = None) -> WorkloadIdentity:
        """Loads the credentials directory (default /var/run/secrets/workload-spiffe-credentials)
        and watches it for rotations while the object lives."""
    @staticmethod
    def from_workload_api(endpoint: Optional[str] = None) -> WorkloadIdentity:
        """Takes the identity from a SPIFFE Workload API (``unix:///path`` or ``tcp://IP:port``,
        default ``SPIFFE_ENDPOINT_SOCKET``), kept current while the object lives."""
    @property
    def spiffe_id(self) -> str: ...
    @property
    def trust_domain(self) -> str: ...
    @property
    def warnings(self) -> List[str]:
        """Warnings an operator should act on (e.g. a private key file readable by group or
        others); empty when all is well."""

class MtlsClient:
    """The client side of mutual TLS: presents ``identity``, accepts servers ``allow`` allows."""

    def __init__(
        self, identity: WorkloadIdentity, allow: Union[Policy, Sequence[Policy]]
    ) -> None: ...
    def connect(
        self,
        target: Union[socket.socket, Tuple[str, int], str],
        *,
        timeout: Optional[float] = None,
    ) -> MtlsStream:
        """Handshakes over a connected socket (the stream takes it over) or connects to
        ``(host, port)`` / ``"host:port"`` first."""

class MtlsServer:
    """The server side: presents ``identity``, requires a client certificate ``allow`` allows."""

    def __init__(
        self, identity: WorkloadIdentity, allow: Union[Policy, Sequence[Policy]]
    ) -> None: ...
    def accept(self, sock: socket.socket) -> MtlsStream:
        """Handshakes over an accepted socket, which the stream takes over."""

class MtlsStream:
    """An established mutual-TLS connection. One thread may recv() while another sends."""

    @property
    def peer_spiffe_id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def send(self, data: bytes) -> int: ...
    def sendall(self, data: bytes) -> None: ...
    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes (0 to 2**31 - 1, else ``ValueError``); ``b""`` when the peer
        closed cleanly."""
    def close(self) -> None: ...
    def __enter__(self) -> MtlsStream: ...
    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None: ...
