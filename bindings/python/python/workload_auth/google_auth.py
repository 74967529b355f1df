"""workload_auth credentials as google-auth credentials.

``Credentials`` here *is* a ``google.auth.credentials.Credentials``: Google's client libraries and
``google.auth.transport.requests.AuthorizedSession`` take it unchanged, and get this library's
tokens: cached lock-free, refreshed in the background before they expire, one fetch shared by
every thread.

    from google.auth.transport.requests import AuthorizedSession
    from workload_auth.google_auth import Credentials

    session = AuthorizedSession(Credentials())        # Application Default Credentials
    session.get("https://storage.googleapis.com/storage/v1/b?project=my-project")

Needs google-auth (``pip install workload-auth[google-auth]``).
"""

import datetime
from typing import Any, Mapping, MutableMapping, Optional, Sequence

try:
    from google.auth import credentials as _google_credentials
except ImportError as _missing:  # pragma: no cover - depends on the environment
    raise ImportError(
        "workload_auth.google_auth needs google-auth: pip install 'workload-auth[google-auth]'"
    ) from _missing

from . import _native


def _naive_utc(unix_seconds: float) -> datetime.datetime:
    # google-auth compares expiries with naive UTC datetimes.
    aware = datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.timezone.utc)
    return aware.replace(tzinfo=None)


class Credentials(_google_credentials.CredentialsWithQuotaProject):
    """google-auth credentials backed by ``workload_auth.Credentials``.

    ``credentials``: the workload_auth credentials to use (default: ``workload_auth.default()``).
    ``scopes``: the scopes of the access tokens (default: the credentials' own).
    ``quota_project_id``: overrides the quota project sent as ``x-goog-user-project``.
    """

    def __init__(
        self,
        credentials: Optional[_native.Credentials] = None,
        *,
        scopes: Optional[Sequence[str]] = None,
        quota_project_id: Optional[str] = None,
    ) -> None:
        super().__init__()
        self._wa = credentials if credentials is not None else _native.default()
        self._scopes = list(scopes) if scopes is not None else None
        self._quota_project_id = (
            quota_project_id if quota_project_id is not None else self._wa.quota_project_id
        )
        self._universe: Optional[str] = None

    @property
    def workload_auth_credentials(self) -> _native.Credentials:
        """The workload_auth credentials behind this adapter."""
        return self._wa

    @property
    def universe_domain(self) -> str:
        if self._universe is None:
            self._universe = self._wa.universe_domain()
        return self._universe

    @property
    def requires_scopes(self) -> bool:
        return False

    def _sync(self) -> None:
        """Takes the current token from the cache (lock-free when it holds a fresh one)."""
        token = self._wa.access_token(self._scopes)
        self.token = token.token
        self.expiry = _naive_utc(token.expires_at)

    def refresh(self, request: Any) -> None:
        """Gets a token. When the token this object holds is still the cached one, a caller is
        asking for a new one (an API answered 401), so the cache is invalidated first.
        ``request`` is not used: tokens come through workload_auth's own client."""
        if self.token is not None:
            current = self._wa.access_token(self._scopes)
            if current.token == self.token:
                self._wa.invalidate()
        self._sync()

    def before_request(
        self, request: Any, method: str, url: str, headers: MutableMapping[str, str]
    ) -> None:
        # Always ask the cache: it refreshes ahead of expiry, so a token is never served stale.
        self._sync()
        self.apply(headers)

    def with_quota_project(self, quota_project_id: Optional[str]) -> "Credentials":
        copy = Credentials(self._wa, scopes=self._scopes)
        copy._quota_project_id = quota_project_id
        return copy

    def get_cred_info(self) -> Optional[Mapping[str, str]]:
        return {"credential_source": "workload_auth", "credential_type": self._wa.credential_type}
