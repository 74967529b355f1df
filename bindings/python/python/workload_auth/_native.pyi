# Type stubs of the native module (bindings/python/src). Every blocking method releases the GIL.
import os
import socket
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str

#: A policy: "any", a SPIFFE ID (exact), "td:TRUST_DOMAIN" (member of) or "prefix:SPIFFE_ID"
#: (path prefix on "/" boundaries); or a callable that gets the peer's SPIFFE ID and returns
#: whether to allow it (an exception it raises refuses the peer).
Policy = Union[str, Callable[[str], object]]

#: OAuth scopes: a sequence of scope strings, or one scope as a ``str``.
Scopes = Union[str, Sequence[str]]

def default(
    *,
    scopes: Optional[Scopes] = None,
    quota_project: Optional[str] = None,
    metadata_host: Optional[str] = None,
    allowed_types: Optional[Sequence[str]] = None,
    allowed_endpoints: Optional[Sequence[str]] = None,
    regional_access_boundary: Optional[bool] = None,
    iam_credentials_endpoint: Optional[str] = None,
    timeout: Optional[float] = None,
    metadata_mtls_mode: Optional[str] = None,
    metadata_mtls_dir: Union[str, "os.PathLike[str]", None] = None,
) -> Credentials:
    """Application Default Credentials from the environment: GOOGLE_APPLICATION_CREDENTIALS,
    gcloud's credentials file, then the metadata server (``metadata_host``, else
    GCE_METADATA_HOST, else metadata.google.internal). Makes no token request. Off Google Cloud
    with nothing configured, raises CredentialsNotFoundError within milliseconds.

    ``allowed_types``: accept only these credential types (``"service_account"``,
    ``"metadata_server"``...); a file of another type raises InvalidCredentialsError before
    anything in it is used. ``allowed_endpoints``: hosts (``"sts.corp.example"``,
    ``"*.corp.example"``) a credentials file may send credentials to besides Google's token
    endpoints and localhost, like the WORKLOAD_AUTH_ALLOWED_ENDPOINTS variable. ``timeout``
    (seconds): DeadlineExceededError when finding the credentials takes longer.

    ``regional_access_boundary``: True looks up the credential's regional access boundary (in
    the background, never waited for) and sends ``x-allowed-locations``; False never does; None
    (default) follows GOOGLE_AUTH_TRUST_BOUNDARY_ENABLED. ``iam_credentials_endpoint``: where it
    is looked up, instead of ``https://iamcredentials.UNIVERSE_DOMAIN/v1/`` (for an emulator;
    https, or http to this machine).

    ``metadata_mtls_mode``: how the metadata server is reached, ``"none"`` (plain HTTP),
    ``"default"`` (mTLS when its files exist) or ``"strict"`` (mTLS only, never plain HTTP);
    else GCE_METADATA_MTLS_MODE. ``metadata_mtls_dir``: the directory of its ``root.crt`` and
    ``client.key``, else WORKLOAD_AUTH_MDS_MTLS_DIR, else /run/google-mds-mtls. ``explain()``
    shows the transport chosen and why."""

class Credentials:
    """Application Default Credentials with their token caches. Thread-safe; share one."""

    @staticmethod
    def from_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Scopes] = None,
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
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_types: Optional[Sequence[str]] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Credentials from the JSON of a credentials file (a ``str``, or a mapping); any type
        ADC knows, or one of ``allowed_types``. Not picklable (the JSON may hold a key)."""
    # One stub per typed loader, deliberately alike: they mirror the native methods one by one
    # so that type checkers and help() see each signature.
    @staticmethod
    def from_service_account_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_service_account_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_authorized_user_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``authorized_user`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_authorized_user_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``authorized_user`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_impersonated_service_account_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``impersonated_service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_impersonated_service_account_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``impersonated_service_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_authorized_user_info(
        info: Union[str, Mapping[str, Any]],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account_authorized_user`` file; any other type raises InvalidCredentialsError."""
    @staticmethod
    def from_external_account_authorized_user_file(
        path: Union[str, "os.PathLike[str]"],
        *,
        scopes: Optional[Scopes] = None,
        quota_project: Optional[str] = None,
        allowed_endpoints: Optional[Sequence[str]] = None,
    ) -> Credentials:
        """Only a ``external_account_authorized_user`` file; any other type raises InvalidCredentialsError."""
    def token(self, scopes: Optional[Scopes] = None, *, timeout: Optional[float] = None) -> str:
        """An access token, from the cache when it holds a fresh one.

        ``timeout`` (seconds, finite and above 0, else ValueError): raise DeadlineExceededError
        when no token came in time (the fetch goes on and fills the cache)."""
    def access_token(
        self, scopes: Optional[Scopes] = None, *, timeout: Optional[float] = None
    ) -> AccessToken:
        """The access token with its type and expiry (``timeout`` as for ``token``)."""
    @property
    def is_bound(self) -> bool:
        """Whether tokens are bound to an Agent Identity workload certificate: then ``token()``
        and ``access_token()`` raise InvalidArgumentError and ``bound_access_token()`` gives the
        token together with its certificate."""
    def bound_access_token(
        self, scopes: Optional[Scopes] = None, *, timeout: Optional[float] = None
    ) -> BoundAccessToken:
        """A token bound to the Agent Identity workload certificate, with that certificate (read
        again on every call: after a rotation, a new token bound to the new certificate)."""
    def id_token(self, audience: str, *, timeout: Optional[float] = None) -> str:
        """An OpenID Connect ID token whose ``aud`` is ``audience``."""
    def headers(
        self, *, url: Optional[str] = None, timeout: Optional[float] = None
    ) -> Dict[str, str]:
        """``authorization``; with a quota project, ``x-goog-user-project``; with regional access
        boundaries enabled and known, ``x-allowed-locations`` (not for a ``url`` on a regional
        endpoint, ``*.rep.googleapis.com``, or the IAM and STS hosts)."""
    def allowed_locations(
        self, url: Optional[str] = None, *, timeout: Optional[float] = None
    ) -> Optional[str]:
        """The ``x-allowed-locations`` value for a request to ``url`` (None: any Google API), or
        None when none is to be sent: disabled, not known yet, failing (fail open),
        unrestricted, or a regional/IAM/STS ``url``. Never waits for the boundary lookup."""
    @property
    def regional_access_boundary(self) -> str:
        """The regional access boundary's state as text (``disabled``, ``pending ...``,
        ``x-allowed-locations: 0xA30 (...)``, ``lookup failing ...``)."""
    def explain(self) -> Explanation:
        """Why these credentials: every place looked at, the type, the project's source."""
    def project_id(self, *, timeout: Optional[float] = None) -> Optional[str]:
        """The project id, or None when nothing knows it (may ask the metadata server once)."""
    def universe_domain(self, *, timeout: Optional[float] = None) -> str:
        """The universe domain (``googleapis.com`` unless the credentials say otherwise)."""
    @property
    def quota_project_id(self) -> Optional[str]:
        """The quota project sent as ``x-goog-user-project``, if any."""
    @property
    def credential_type(self) -> str:
        """metadata_server, service_account, authorized_user, impersonated_service_account,
        external_account or external_account_authorized_user."""
    def service_account_email(self, *, timeout: Optional[float] = None) -> Optional[str]:
        """The email of the service account these credentials act as (a key's client_email, an
        impersonation target, the metadata server's attached account), or None for user and
        federated credentials."""
    def sign_bytes(self, message: bytes) -> Tuple[Optional[str], bytes]:
        """Signs message with a service-account key, locally: (key_id, raw RS256/ES256
        signature). Credentials without a key raise InvalidArgumentError."""
    def sign_blob(
        self,
        message: bytes,
        *,
        iam_endpoint: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> Tuple[Optional[str], bytes]:
        """Signs message as the service account these credentials act as: locally with a
        service-account key, otherwise through the IAM Credentials API's signBlob (at
        iam_endpoint, a base URL like ``https://iamcredentials.googleapis.com/v1/``, default the
        universe's) with these credentials' access token: (key_id, signature). User and
        federated credentials raise InvalidArgumentError. Blocks; releases the GIL."""
    def token_async(
        self, scopes: Optional[Scopes] = None, *, timeout: Optional[float] = None
    ) -> Awaitable[str]:
        """``await``: ``token()`` in the running event loop's executor (the loop never blocks;
        the same cache). RuntimeError without a running loop."""
    def id_token_async(self, audience: str, *, timeout: Optional[float] = None) -> Awaitable[str]:
        """``await``: ``id_token()`` without blocking the event loop."""
    def request_headers_async(
        self, *, timeout: Optional[float] = None
    ) -> Awaitable[Dict[str, str]]:
        """``await``: ``headers()`` without blocking the event loop."""
    def invalidate(self) -> None:
        """Forgets every cached token; the next call fetches anew."""
    def __reduce__(self) -> Tuple[Any, Tuple[int, Dict[str, Any]]]:
        """Pickles the source (a file path, or default() and its arguments), never a token or a
        key; credentials made from JSON in memory raise TypeError."""
    @staticmethod
    def _from_pickle(format: object, state: Mapping[str, Any]) -> Credentials: ...

class AccessBoundaryRule:
    """One rule of a credential access boundary: a resource, the roles available on it, and an
    optional CEL condition."""

    def __init__(
        self,
        available_resource: str,
        available_permissions: Sequence[str],
        *,
        expression: Optional[str] = None,
        title: Optional[str] = None,
        description: Optional[str] = None,
    ) -> None:
        """``available_resource``: ``//storage.googleapis.com/projects/_/buckets/NAME``;
        ``available_permissions``: roles as ``inRole:ROLE``; ``expression``: a CEL condition
        (``resource.name.startsWith('projects/_/buckets/NAME/objects/PREFIX')``)."""
    @property
    def available_resource(self) -> str:
        """The full resource name."""
    @property
    def available_permissions(self) -> List[str]:
        """The roles available on the resource, each ``inRole:ROLE``."""
    @property
    def expression(self) -> Optional[str]:
        """The condition's CEL expression, if any."""
    @property
    def title(self) -> Optional[str]:
        """The condition's title, if any."""
    @property
    def description(self) -> Optional[str]:
        """The condition's description, if any."""

class AccessBoundary:
    """A credential access boundary: 1 to 10 rules, checked when made (InvalidArgumentError
    naming the rule and the field)."""

    def __init__(self, rules: Sequence[AccessBoundaryRule]) -> None:
        """A boundary of ``rules`` (1 to 10)."""
    @staticmethod
    def from_json(json: Union[str, bytes, Mapping[str, Any]]) -> AccessBoundary:
        """From the Security Token Service's JSON form (``{"accessBoundary":
        {"accessBoundaryRules": [...]}}`` or the inner object), as text or a dict."""
    @property
    def rules(self) -> List[AccessBoundaryRule]:
        """The rules."""
    def to_json(self) -> str:
        """The JSON ``{"accessBoundary": {"accessBoundaryRules": [...]}}``."""
    def __len__(self) -> int:
        """How many rules."""

class DownscopedCredentials:
    """Tokens limited to ``boundary``, made from ``source``: server-side (default), one
    Security Token Service exchange per token (cached until it nears expiry); or
    ``client_side=True``, one exchange for an intermediary token and session key, then every
    token minted locally without a network call (conditions limited to the CEL forms
    ``startsWith``, ``endsWith``, ``==`` on ``resource.name|type|service``, ``&&``, ``||``).
    ``sts_endpoint``: the token URL instead of ``https://sts.UNIVERSE_DOMAIN/v1/token``."""

    def __init__(
        self,
        source: Credentials,
        boundary: AccessBoundary,
        *,
        client_side: bool = False,
        sts_endpoint: Optional[str] = None,
    ) -> None:
        """Makes no request: the first token does."""
    def token(self, *, timeout: Optional[float] = None) -> str:
        """A downscoped access token."""
    def access_token(self, *, timeout: Optional[float] = None) -> AccessToken:
        """A downscoped access token with its type and expiry."""
    def headers(self, *, timeout: Optional[float] = None) -> Dict[str, str]:
        """``{"authorization": "Bearer <downscoped token>"}``."""
    @property
    def boundary(self) -> AccessBoundary:
        """The boundary the tokens are limited to."""
    @property
    def client_side(self) -> bool:
        """Whether tokens are minted locally."""
    @property
    def exchange_count(self) -> int:
        """How many Security Token Service exchanges were started."""
    def invalidate(self) -> None:
        """Forgets the cached (or intermediary) token."""

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

class BoundAccessToken:
    """A certificate-bound access token and the certificate it is bound to: present exactly that
    certificate over mutual TLS with the token. ``repr()`` hides the token."""

    @property
    def token(self) -> str: ...
    @property
    def token_type(self) -> str: ...
    @property
    def expires_at(self) -> float:
        """Seconds since the Unix epoch."""
    @property
    def certificate_chain(self) -> str:
        """The chain the token is bound to: PEM certificates, leaf first, no key."""
    @property
    def fingerprint(self) -> str:
        """The leaf's SHA-256, base64url without padding."""
    @property
    def certificate_file(self) -> str:
        """The file the certificate was read from."""
    def private_key_pem(self) -> Optional[bytes]:
        """The certificate's private key as PEM (None when there is none); a secret."""

class ExplanationStep:
    """One place Application Default Credentials looked at, and what it found there."""

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
    def token_binding(self) -> str:
        """Whether tokens are certificate-bound, and to which certificate (its fingerprint)."""
    @property
    def error(self) -> Optional[str]: ...
    @property
    def steps(self) -> List[ExplanationStep]: ...
    def to_dict(self) -> Dict[str, Any]:
        """Everything, as plain data (the JSON ``workload-auth explain --json`` prints)."""

class WorkloadIdentity:
    """The workload's X509-SVID and trust bundles, kept current as they rotate."""

    @staticmethod
    def from_directory(path: Union[str, "os.PathLike[str]", None] = None) -> WorkloadIdentity:
        """Loads the credentials directory, in any layout, and watches it for rotations while the
        object lives (default: ``SPIFFE_CREDENTIAL_FOLDER`` when set, else
        /var/run/secrets/workload-spiffe-credentials)."""
    @staticmethod
    def from_workload_api(endpoint: Optional[str] = None) -> WorkloadIdentity:
        """Takes the identity from a SPIFFE Workload API (``unix:///path`` or ``tcp://IP:port``,
        default ``SPIFFE_ENDPOINT_SOCKET``), kept current while the object lives."""
    @property
    def spiffe_id(self) -> str: ...
    @property
    def trust_domain(self) -> str: ...
    @property
    def layout(self) -> Optional[str]:
        """``"gke"``, ``"combined"``, ``"spiffe-fs"`` or ``"no-key"``; None for an identity from
        the Workload API."""
    @property
    def has_private_key(self) -> bool:
        """False when the platform keeps the key hidden (mTLS raises PrivateKeyHiddenError)."""
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
    def send(self, data: Union[bytes, bytearray, memoryview]) -> int:
        """Sends all of ``data``; returns how many bytes that was."""
    def sendall(self, data: Union[bytes, bytearray, memoryview]) -> None:
        """Sends all of ``data``."""
    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes (0 to 2**31 - 1, else ``ValueError``); ``b""`` when the peer
        closed cleanly."""
    def close(self) -> None:
        """Sends TLS close_notify and closes the connection."""
    def __enter__(self) -> MtlsStream: ...
    def __exit__(self, exc_type: object, exc_value: object, traceback: object) -> None: ...
