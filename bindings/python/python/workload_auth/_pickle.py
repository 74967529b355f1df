"""Unpickling of ``workload_auth.Credentials``: rebuilt from their source (a file path, or
``default()`` and its arguments), never from a pickled token or key."""

from typing import Any, Mapping

from . import _native


def restore_credentials(format: Any, state: Mapping[str, Any]) -> _native.Credentials:
    """Builds the credentials a pickle describes; a pickle in another format raises
    ``InvalidArgumentError`` (a ``ValueError``) that says which versions are involved."""
    if not isinstance(state, dict):
        state = {}
    return _native.Credentials._from_pickle(format, state)
