"""workload_auth credentials as google-auth credentials: a drop-in for ``google.auth.default()``.

``Credentials`` here *is* a ``google.auth.credentials.Credentials`` (``Scoped`` and
``CredentialsWithQuotaProject``): Google's client libraries and
``google.auth.transport.requests.AuthorizedSession`` take it unchanged, and get this library's
tokens: cached lock-free, refreshed in the background before they expire, one fetch shared by
every thread.

    from google.auth.transport.requests import AuthorizedSession
    from workload_auth import google_auth

    credentials, project = google_auth.default()      # like google.auth.default()
    session = AuthorizedSession(credentials)
    session.get(f"https://storage.googleapis.com/storage/v1/b?project={project}")

Failures raise exceptions that are both this library's (``workload_auth.WorkloadAuthError`` and
the subclass of its kind) and google-auth's (``RefreshError``, ``TransportError``,
``DefaultCredentialsError``), so google-api-core's retry predicates classify them: a failure
that retrying may cure (``transient``) is a ``TransportError`` and its ``retryable`` is true.

Needs google-auth (``pip install workload-auth[google-auth]``).
"""

import base64
import contextlib
import datetime
import json
import threading
import time
import urllib.parse
import urllib.request
from typing import (
    Any,
    Dict,
    Iterator,
    List,
    Mapping,
    MutableMapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
)

try:
    from google.auth import credentials as _google_credentials
    from google.auth import crypt as _crypt
    from google.auth import exceptions as _google_exceptions
    from google.auth.aio import credentials as _aio_credentials
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "workload_auth.google_auth needs google-auth 2.35 or later: "
        "pip install 'workload-auth[google-auth]'"
    ) from _missing

from . import _errors, _native

__all__ = [
    "AsyncCredentials",
    "Credentials",
    "DefaultCredentialsError",
    "IDTokenCredentials",
    "RefreshError",
    "TransportError",
    "default",
    "verify_id_token",
]

#: A token is treated as expired this long before its expiry: the same margin the library's cache
#: keeps, so that when ``valid`` turns false the cache already serves the next token (google-auth's
#: own margin, 225 s, would make every call "expired" with tokens that live shorter than that).
_EXPIRY_MARGIN = datetime.timedelta(seconds=10)


class RefreshError(_errors.WorkloadAuthError, _google_exceptions.RefreshError):
    """Getting a token failed: a ``workload_auth.WorkloadAuthError`` and a
    ``google.auth.exceptions.RefreshError``. ``retryable`` is ``transient``."""

    @property
    def retryable(self) -> bool:
        """Whether retrying later may help (the same as ``transient``)."""
        return self.transient


class TransportError(_errors.WorkloadAuthError, _google_exceptions.TransportError):
    """A failure that retrying may cure (the network, a 5xx, a timeout): a
    ``google.auth.exceptions.TransportError``, which google-api-core retries."""

    @property
    def retryable(self) -> bool:
        """Always true: this failure is transient."""
        return True


class DefaultCredentialsError(
    _errors.CredentialsNotFoundError, _google_exceptions.DefaultCredentialsError
):
    """No credentials were found, or they could not be loaded: a
    ``google.auth.exceptions.DefaultCredentialsError``."""

    @property
    def retryable(self) -> bool:
        """Always false: the environment has to change first."""
        return False


_COMBINED: Dict[Tuple[type, ...], type] = {}
_COMBINED_LOCK = threading.Lock()


def _combined(bases: Tuple[type, ...]) -> type:
    """One class per combination of bases, so that an error keeps its workload_auth kind."""
    with _COMBINED_LOCK:
        cls = _COMBINED.get(bases)
        if cls is None:
            name = "".join(b.__name__ for b in bases[:1]) + "As" + bases[-1].__name__
            cls = type(name, bases, {"__module__": __name__, "__doc__": bases[-1].__doc__})
            _COMBINED[bases] = cls
        return cls


def _translate(e: _errors.WorkloadAuthError, *, loading: bool = False) -> Exception:
    """``e`` as an exception that is also google-auth's.

    Transient failures become ``TransportError`` (google-api-core retries those); the rest are
    ``DefaultCredentialsError`` while loading and ``RefreshError`` (not retryable) afterwards. A
    ``SetupError`` (this host cannot make the HTTP client, load its trust roots or start the
    library's threads) is deliberately one of "the rest": retrying cannot cure it, so it must not
    be a ``TransportError``, and google-auth has no closer class for a broken local set-up."""
    target: Type[_errors.WorkloadAuthError]
    if isinstance(e, _errors.CredentialsNotFoundError) or (
        loading and not e.transient and not isinstance(e, _errors.InvalidArgumentError)
    ):
        target = DefaultCredentialsError
    elif e.transient:
        target = TransportError
    else:
        target = RefreshError
    cls = target if issubclass(target, type(e)) else _combined((type(e), target))
    if target is TransportError and not issubclass(cls, RefreshError):
        # A failed refresh is still a refresh failure to code that catches RefreshError.
        cls = _combined((cls, RefreshError))
    translated = cls(
        str(e), kind=e.kind, transient=e.transient, status=e.status, endpoint=e.endpoint,
        hint=e.hint,
    )
    translated.__cause__ = e.__cause__
    return translated


@contextlib.contextmanager
def _google_errors(*, loading: bool = False) -> Iterator[None]:
    try:
        yield
    except (RefreshError, TransportError, DefaultCredentialsError):
        raise
    except _errors.WorkloadAuthError as e:
        raise _translate(e, loading=loading) from None


def _naive_utc(unix_seconds: float) -> datetime.datetime:
    # google-auth compares expiries with naive UTC datetimes.
    aware = datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.timezone.utc)
    return aware.replace(tzinfo=None)


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _scope_list(scopes: Optional[Sequence[str]], name: str) -> Optional[List[str]]:
    if scopes is None:
        return None
    if isinstance(scopes, str):
        return [scopes]  # one scope, as google-auth accepts it
    if isinstance(scopes, (bytes, Mapping)) or not all(isinstance(s, str) for s in scopes):
        raise TypeError(f"{name} must be a sequence of str (or one str), not {scopes!r}")
    return list(scopes)


class _CacheBacked(_google_credentials.Credentials):  # type: ignore[misc]
    """``valid``, ``expired`` and ``refresh()`` over the library's cache, which is never defeated:
    ``refresh()`` forgets the cache only when the token held is the cached one and still valid (an
    API refused it); otherwise it takes what the cache holds, which refreshes ahead of expiry."""

    token: Optional[str]
    expiry: Optional[datetime.datetime]

    def _fetch(self) -> Tuple[str, float]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _forget(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def expired(self) -> bool:
        """Whether the token held is past its expiry (minus the cache's 10 s margin)."""
        if self.expiry is None:
            return False
        return bool(_utcnow() >= self.expiry - _EXPIRY_MARGIN)

    @property
    def valid(self) -> bool:
        """Whether a token is held and not expired."""
        return self.token is not None and not self.expired

    def _sync(self) -> None:
        """Takes the current token from the cache (lock-free when it holds a fresh one)."""
        with _google_errors():
            token, expires_at = self._fetch()
        if token != self.token:
            self.token = token
            self.expiry = _naive_utc(expires_at)

    def refresh(self, request: Any) -> None:
        """Gets a token. When the token this object holds is still valid and still the cached
        one, a caller is asking for a new one (an API answered 401), so the cache is invalidated
        first; in every other case the cache answers. ``request`` is not used: tokens come
        through workload_auth's own client."""
        if self.token is not None and self.valid:
            with _google_errors():
                current, _ = self._fetch()
            if current == self.token:
                self._forget()
        self._sync()

    def __getstate__(self) -> Dict[str, Any]:
        """Pickles everything but the token: the copy gets its own from its rebuilt source."""
        state = dict(self.__dict__)
        state["token"] = None
        state["expiry"] = None
        if "_bound" in state:
            # A bound token and the certificate given to a transport stay with this process.
            state["_bound"] = None
            state["_presented"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        """Restores a pickled adapter (its token comes from the cache on first use)."""
        self.__dict__.update(state)

    def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Puts a valid token in ``headers``: the one held while it is valid, else the cache's
        (which refreshes ahead of expiry, so a token is never served stale)."""
        if not self.valid:
            self._sync()
        self.apply(headers)


def _apply_allowed_locations(
    wa: _native.Credentials, url: str, headers: MutableMapping[str, str], timeout: Optional[float]
) -> None:
    """Sets (or removes) ``x-allowed-locations`` in ``headers`` for a request to ``url``."""
    with _google_errors():
        locations = wa.allowed_locations(url, timeout=timeout)
    if locations:
        headers["x-allowed-locations"] = locations
    else:
        headers.pop("x-allowed-locations", None)


_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "[::1]", "localhost")


def _checked_endpoint(url: str) -> str:
    """``url`` without a trailing slash, when it is https (or http to this machine)."""
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    if parsed.scheme == "https" and host:
        return url.rstrip("/")
    if parsed.scheme == "http" and host in _LOOPBACK_HOSTS:
        return url.rstrip("/")
    raise _errors.InvalidArgumentError(
        f"iam_endpoint must be an https URL (or http to localhost), not {url!r}",
        kind="invalid_argument",
    )


class _Signer(_crypt.Signer):  # type: ignore[misc]
    """A ``google.auth.crypt.Signer`` that signs through the adapter's ``sign_bytes``."""

    def __init__(self, credentials: "Credentials") -> None:
        self._credentials = credentials

    @property
    def key_id(self) -> Optional[str]:
        """The id of the key that made the last signature (None before the first)."""
        return self._credentials._key_id

    def sign(self, message: Union[str, bytes]) -> bytes:
        """The signature of ``message`` (a ``str`` is signed as UTF-8)."""
        return self._credentials.sign_bytes(message)


class Credentials(
    _CacheBacked,
    _google_credentials.Scoped,
    _google_credentials.CredentialsWithQuotaProject,
    _google_credentials.Signing,
):
    """google-auth credentials backed by ``workload_auth.Credentials``.

    ``credentials``: the workload_auth credentials to use (default: ``workload_auth.default()``).
    ``scopes``: the scopes of the access tokens (default: the credentials' own); ``with_scopes``
    makes a scoped copy that shares the token caches.
    ``quota_project_id``: overrides the quota project sent as ``x-goog-user-project``.
    ``timeout``: a deadline in seconds for each token fetch (``DeadlineExceededError``, a
    ``TransportError``, when it passes).
    ``iam_endpoint``: where credentials without a key sign (``sign_bytes``) through the IAM
    Credentials API's ``signBlob`` (default ``https://iamcredentials.UNIVERSE_DOMAIN``).
    Service-account keys sign locally.

    Agent Identity: when the workload certificate makes tokens certificate-bound (``is_bound``),
    the token is only good over mutual TLS presenting that certificate. Configure the transport
    with ``client_cert_callback`` (``AuthorizedSession.configure_mtls_channel(
    credentials.client_cert_callback)``); ``before_request`` refuses (``RefreshError``) to put a
    bound token on a request whose transport was not given the certificate it is bound to, and
    after a certificate rotation until the transport is configured again.
    """

    def __init__(
        self,
        credentials: Optional[_native.Credentials] = None,
        *,
        scopes: Optional[Sequence[str]] = None,
        default_scopes: Optional[Sequence[str]] = None,
        quota_project_id: Optional[str] = None,
        timeout: Optional[float] = None,
        iam_endpoint: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._timeout = timeout
        self._iam_endpoint = _checked_endpoint(iam_endpoint) if iam_endpoint else None
        self._signer_email: Optional[str] = None
        self._key_id: Optional[str] = None
        if credentials is None:
            with _google_errors(loading=True):
                credentials = _native.default()
        elif not isinstance(credentials, _native.Credentials):
            raise TypeError(
                f"credentials must be workload_auth.Credentials, not {type(credentials).__name__}"
            )
        self._wa = credentials
        self._scopes = _scope_list(scopes, "scopes")
        self._default_scopes = _scope_list(default_scopes, "default_scopes")
        self._quota_project_id = (
            quota_project_id if quota_project_id is not None else self._wa.quota_project_id
        )
        self._universe: Optional[str] = None
        self._bound: Optional[_native.BoundAccessToken] = None
        self._presented: Optional[str] = None
        # Fixed when the credentials are built: requests of credentials without regional access
        # boundaries pay nothing for them.
        self._regional = self._wa.regional_access_boundary != "disabled"

    @property
    def workload_auth_credentials(self) -> _native.Credentials:
        """The workload_auth credentials behind this adapter."""
        return self._wa

    @property
    def is_bound(self) -> bool:
        """Whether tokens are bound to an Agent Identity workload certificate."""
        return self._wa.is_bound

    @property
    def bound_fingerprint(self) -> Optional[str]:
        """The fingerprint of the certificate the token held is bound to (None: not bound)."""
        return self._bound.fingerprint if self._bound is not None else None

    def client_cert_callback(self) -> Tuple[bytes, bytes]:
        """The certificate chain and key (PEM) the current bound token is bound to, for
        ``AuthorizedSession.configure_mtls_channel``; the transport presenting them is then the
        one ``before_request`` accepts for this token. Raises ``RefreshError`` when tokens are not
        bound or no key sits next to the certificate."""
        if not self.valid or self._bound is None:
            self._sync()
        bound = self._bound
        key = bound.private_key_pem() if bound is not None else None
        if bound is None or key is None:
            raise RefreshError(
                "there is no bound certificate with a private key to present",
                kind="invalid_argument",
            )
        self._presented = bound.fingerprint
        return bound.certificate_chain.encode("ascii"), key

    @property
    def universe_domain(self) -> str:
        """The universe domain (``googleapis.com`` unless the credentials say otherwise)."""
        if self._universe is None:
            with _google_errors():
                self._universe = self._wa.universe_domain()
        return self._universe

    @property
    def requires_scopes(self) -> bool:
        """True until scopes are given, so that ``with_scopes_if_required`` passes a client
        library's scopes on (the credentials' own scopes apply when none are)."""
        return not self._scopes

    def _effective_scopes(self) -> Optional[List[str]]:
        return self._scopes or self._default_scopes or None

    def _fetch(self) -> Tuple[str, float]:
        if self._wa.is_bound:
            bound = self._wa.bound_access_token(self._effective_scopes(), timeout=self._timeout)
            self._bound = bound
            return bound.token, bound.expires_at
        self._bound = None
        token = self._wa.access_token(self._effective_scopes(), timeout=self._timeout)
        return token.token, token.expires_at

    def _forget(self) -> None:
        self._wa.invalidate()

    def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Puts a valid token in ``headers`` (a bound token only when the transport was given
        its certificate through ``client_cert_callback``) and, with regional access boundaries
        enabled and known, ``x-allowed-locations`` (not for regional endpoints or the IAM and
        STS hosts; a stale value in ``headers`` is removed). The boundary lookup runs in the
        background and is never waited for."""
        if not self.valid:
            self._sync()
        if self._bound is not None and self._presented != self._bound.fingerprint:
            presented = self._presented or "no client certificate"
            raise RefreshError(
                f"the token is bound to the certificate {self._bound.fingerprint}, but the "
                f"transport presents {presented}: configure it with client_cert_callback "
                "(again after the certificate rotated)",
                kind="invalid_argument",
            )
        self.apply(headers)
        if self._regional:
            _apply_allowed_locations(self._wa, url, headers, self._timeout)

    def _copy(self) -> "Credentials":
        copy = Credentials(
            self._wa, quota_project_id=self._quota_project_id, timeout=self._timeout
        )
        copy._iam_endpoint = self._iam_endpoint
        copy._signer_email = self._signer_email
        copy._scopes = self._scopes
        copy._default_scopes = self._default_scopes
        copy._universe = self._universe
        return copy

    def with_scopes(
        self, scopes: Optional[Sequence[str]], default_scopes: Optional[Sequence[str]] = None
    ) -> "Credentials":
        """A copy with these scopes, sharing the token cache of each scope set with this one."""
        copy = self._copy()
        copy._scopes = _scope_list(scopes, "scopes")
        copy._default_scopes = _scope_list(default_scopes, "default_scopes")
        return copy

    def with_quota_project(self, quota_project_id: Optional[str]) -> "Credentials":
        """A copy that sends ``quota_project_id`` as ``x-goog-user-project`` (none when None)."""
        copy = self._copy()
        copy._quota_project_id = quota_project_id
        return copy

    @property
    def signer_email(self) -> Optional[str]:
        """The service account that signs (a key's ``client_email``, the impersonation target,
        the metadata server's attached account); None for user and federated credentials."""
        if self._signer_email is None:
            with _google_errors():
                self._signer_email = self._wa.service_account_email(timeout=self._timeout)
        return self._signer_email

    @property
    def signer(self) -> _crypt.Signer:
        """A ``google.auth.crypt.Signer`` signing as ``signer_email`` (through ``sign_bytes``)."""
        return _Signer(self)

    def sign_bytes(self, message: Union[str, bytes]) -> bytes:
        """The RS256 signature of ``message`` (a ``str`` is signed as UTF-8) by the service
        account: locally with a service-account key, otherwise through IAM ``signBlob``. User
        and federated credentials cannot sign: ``InvalidArgumentError`` (a ``ValueError``)."""
        if isinstance(message, str):
            data = message.encode("utf-8")
        elif isinstance(message, (bytes, bytearray, memoryview)):
            data = bytes(message)
        else:
            raise TypeError(f"message must be bytes or str, not {type(message).__name__}")
        # The library signs: locally with a key, else through signBlob at the checked endpoint.
        endpoint = f"{self._iam_endpoint}/v1/" if self._iam_endpoint else None
        with _google_errors():
            key_id, signature = self._wa.sign_blob(
                data, iam_endpoint=endpoint, timeout=self._timeout
            )
        self._key_id = key_id
        return signature

    def get_cred_info(self) -> Optional[Mapping[str, str]]:
        """Where the credentials come from, for google-auth's error messages."""
        return {"credential_source": "workload_auth", "credential_type": self._wa.credential_type}

    def __repr__(self) -> str:
        return (
            f"workload_auth.google_auth.Credentials(credential_type="
            f"{self._wa.credential_type!r}, scopes={self._effective_scopes()!r}, "
            f"quota_project_id={self._quota_project_id!r})"
        )


class AsyncCredentials(_aio_credentials.Credentials):  # type: ignore[misc]
    """``google.auth.aio`` credentials (for ``google.auth.aio.transport.sessions.
    AsyncAuthorizedSession``) backed by ``workload_auth.Credentials``: tokens come from the same
    caches as the blocking API, fetched in the event loop's executor so the loop never blocks.
    Arguments as for ``Credentials``."""

    def __init__(
        self,
        credentials: Optional[_native.Credentials] = None,
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project_id: Optional[str] = None,
        timeout: Optional[float] = None,
    ) -> None:
        super().__init__()
        if credentials is None:
            with _google_errors(loading=True):
                credentials = _native.default()
        self._wa = credentials
        self._scopes = _scope_list(scopes, "scopes")
        self._quota_project_id = (
            quota_project_id if quota_project_id is not None else credentials.quota_project_id
        )
        self._timeout = timeout
        self.token: Optional[str] = None
        self.expiry: Optional[datetime.datetime] = None

    @property
    def workload_auth_credentials(self) -> _native.Credentials:
        """The workload_auth credentials behind this adapter."""
        return self._wa

    @property
    def quota_project_id(self) -> Optional[str]:
        """The quota project sent as ``x-goog-user-project``, if any."""
        return self._quota_project_id

    async def _sync(self) -> None:
        import asyncio
        import functools

        loop = asyncio.get_running_loop()
        fetch = functools.partial(self._wa.access_token, self._scopes, timeout=self._timeout)
        try:
            token = await loop.run_in_executor(None, fetch)
        except _errors.WorkloadAuthError as e:
            raise _translate(e) from None
        self.token = token.token
        self.expiry = _naive_utc(token.expires_at)

    async def refresh(self, request: Any) -> None:
        """Gets a token from the cache; when the token held is still the cached one and valid
        (an API answered 401), the cache is invalidated first."""
        if self.token is not None and self.expiry is not None and _utcnow() < self.expiry - _EXPIRY_MARGIN:
            held = self.token
            await self._sync()
            if self.token == held:
                self._wa.invalidate()
        await self._sync()

    async def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        """Puts the current token (and the quota project, and with regional access boundaries
        enabled and known, ``x-allowed-locations``) in ``headers``."""
        await self._sync()
        headers["authorization"] = f"Bearer {self.token}"
        if self._quota_project_id:
            headers["x-goog-user-project"] = self._quota_project_id
        if self._wa.regional_access_boundary != "disabled":
            # The token is cached by now: this neither waits for the network nor for a lookup.
            _apply_allowed_locations(self._wa, url, headers, None)


def default(
    scopes: Optional[Sequence[str]] = None,
    quota_project_id: Optional[str] = None,
    *,
    default_scopes: Optional[Sequence[str]] = None,
) -> Tuple[Credentials, Optional[str]]:
    """``google.auth.default()``: Application Default Credentials and the project id (``None``
    when nothing knows it). Raises ``DefaultCredentialsError`` when there are none."""
    scope_list = _scope_list(scopes, "scopes")
    with _google_errors(loading=True):
        wa = _native.default()
    credentials = Credentials(
        wa, scopes=scope_list, default_scopes=default_scopes, quota_project_id=quota_project_id
    )
    try:
        project = wa.project_id()
    except _errors.WorkloadAuthError:
        project = None  # google.auth.default() also answers None when it cannot tell
    return credentials, project


def _jwt_claims(token: str) -> Dict[str, Any]:
    """The claims of a JWT, not verified (only to read its expiry)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as e:
        raise RefreshError(f"the ID token is not a JWT: {e}", kind="malformed_response") from None
    if not isinstance(claims, dict):
        raise RefreshError("the ID token's claims are not an object", kind="malformed_response")
    return claims


class IDTokenCredentials(_CacheBacked):
    """google-auth credentials that send an OpenID Connect ID token for ``target_audience`` (a
    Cloud Run service's URL, an IAP client id): for ``AuthorizedSession`` towards such services.
    Tokens come from the same cache as ``workload_auth.Credentials.id_token``.
    """

    def __init__(self, target_audience: str, credentials: Optional[_native.Credentials] = None) -> None:
        super().__init__()
        if not isinstance(target_audience, str) or not target_audience:
            raise TypeError("target_audience must be a non-empty str")
        if credentials is None:
            with _google_errors(loading=True):
                credentials = _native.default()
        self._wa = credentials
        self._audience = target_audience

    @property
    def target_audience(self) -> str:
        """The audience (``aud``) of the ID tokens."""
        return self._audience

    @property
    def workload_auth_credentials(self) -> _native.Credentials:
        """The workload_auth credentials behind this adapter."""
        return self._wa

    def _fetch(self) -> Tuple[str, float]:
        token = self._wa.id_token(self._audience)
        exp = _jwt_claims(token).get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise RefreshError("the ID token has no numeric exp", kind="malformed_response")
        return token, float(exp)

    def _forget(self) -> None:
        self._wa.invalidate()

    def with_target_audience(self, target_audience: str) -> "IDTokenCredentials":
        """A copy for another audience, sharing the credentials (and their caches)."""
        return IDTokenCredentials(target_audience, self._wa)

    def __repr__(self) -> str:
        return (
            f"workload_auth.google_auth.IDTokenCredentials(target_audience={self._audience!r}, "
            f"credential_type={self._wa.credential_type!r})"
        )


#: Google's JWKS of the keys that sign ID tokens.
GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v3/certs"
_JWKS_MAX_BYTES = 1 << 20
_JWKS_DEFAULT_AGE = 3600.0
_jwks_cache: Dict[str, Tuple[float, Dict[str, bytes]]] = {}
_jwks_lock = threading.Lock()


def _max_age(cache_control: Optional[str]) -> float:
    for part in (cache_control or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isdigit():
            return float(min(int(value), 86400))
    return _JWKS_DEFAULT_AGE


def _jwks_pems(jwks: Any) -> Dict[str, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    def number(value: Any) -> int:
        if not isinstance(value, str):
            raise ValueError("not a base64url string")
        return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")

    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list):
        raise ValueError("not a JWKS (no keys array)")
    pems: Dict[str, bytes] = {}
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") != "RSA" or not isinstance(key.get("kid"), str):
            continue
        public = rsa.RSAPublicNumbers(number(key.get("e")), number(key.get("n"))).public_key()
        pems[key["kid"]] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return pems


def _certs(url: str, timeout: float) -> Dict[str, bytes]:
    now = time.monotonic()
    with _jwks_lock:
        cached = _jwks_cache.get(url)
        if cached is not None and cached[0] > now:
            return cached[1]
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - https or a test's loopback
            body = response.read(_JWKS_MAX_BYTES + 1)
            max_age = _max_age(response.headers.get("cache-control"))
        if len(body) > _JWKS_MAX_BYTES:
            raise ValueError("the JWKS is larger than 1 MiB")
        pems = _jwks_pems(json.loads(body))
    except OSError as e:
        raise TransportError(
            f"fetching the JWKS failed: {e}", kind="transport", transient=True, endpoint=url
        ) from None
    except ValueError as e:
        raise RefreshError(
            f"the JWKS is malformed: {e}", kind="malformed_response", endpoint=url
        ) from None
    with _jwks_lock:
        _jwks_cache[url] = (now + max_age, pems)
    return pems


def verify_id_token(
    token: str,
    audience: Optional[str],
    *,
    certs_url: str = GOOGLE_CERTS_URL,
    clock_skew_in_seconds: int = 10,
    timeout: float = 10.0,
) -> Mapping[str, Any]:
    """Verifies an ID token's RS256 signature against the keys at ``certs_url`` (a JWKS, cached
    for its ``Cache-Control`` max-age), its expiry and its ``aud``; returns its claims.
    Raises ``ValueError`` (google-auth's verification errors) when the token does not verify."""
    from google.auth import jwt

    if not isinstance(token, str):
        raise TypeError(f"token must be a str, not {type(token).__name__}")
    certs = _certs(certs_url, timeout)
    try:
        claims = jwt.decode(
            token, certs=certs, audience=audience, clock_skew_in_seconds=clock_skew_in_seconds
        )
    except ValueError:
        # A key rotated since the JWKS was cached: fetch it once more, then decide.
        header = jwt.decode_header(token)
        if header.get("kid") in certs:
            raise
        with _jwks_lock:
            _jwks_cache.pop(certs_url, None)
        claims = jwt.decode(
            token,
            certs=_certs(certs_url, timeout),
            audience=audience,
            clock_skew_in_seconds=clock_skew_in_seconds,
        )
    return dict(claims)
