"""After fork() the child's first call works (gunicorn --preload, multiprocessing's fork start
method); pickling rebuilds credentials from their source and never carries a token or a key."""

import json
import multiprocessing
import os
import pathlib
import pickle
from typing import Any

import pytest

import workload_auth
from conftest import Emulator

SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"


def _child_tokens(creds: workload_auth.Credentials, queue: Any) -> None:
    try:
        queue.put(("ok", creds.token(timeout=10), creds.token([SCOPE], timeout=10)))
    except BaseException as e:  # pragma: no cover - reported to the parent
        queue.put(("error", repr(e), ""))


def test_multiprocessing_fork_children_get_tokens(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    parent_token = creds.token()  # the parent's runtime and cache are warm before the fork
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_child_tokens, args=(creds, queue)) for _ in range(3)]
    for child in children:
        child.start()
    results = [queue.get(timeout=30) for _ in children]
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    for status, token, scoped in results:
        assert status == "ok", token
        assert token and scoped and token != scoped
    # The parent is unaffected.
    assert creds.token() == parent_token


def test_gunicorn_style_preload_fork(emulator: Emulator) -> None:
    # Loaded (and used) in the master, then forked workers use it.
    creds = workload_auth.default(metadata_host=emulator.host)
    creds.token()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        code = 1
        try:
            os.close(read)
            token = creds.token(timeout=10)
            os.write(write, token.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    data = os.read(read, 65536)
    os.close(read)
    assert os.waitstatus_to_exitcode(status) == 0
    assert data.startswith(b"ya29.") or len(data) > 10


def test_pickling_rebuilds_from_the_source(emulator: Emulator, tmp_path: pathlib.Path) -> None:
    creds = workload_auth.default(metadata_host=emulator.host, quota_project="billing")
    token = creds.token()
    data = pickle.dumps(creds)
    assert token.encode() not in data
    clone = pickle.loads(data)
    assert isinstance(clone, workload_auth.Credentials)
    assert clone.quota_project_id == "billing"
    assert clone.credential_type == "metadata_server"
    assert clone.token()  # works, from its own cache

    user = {
        "type": "authorized_user",
        "client_id": "c",
        "client_secret": "very-secret-value",
        "refresh_token": "1//refresh-secret",
        "token_uri": f"{emulator.url}/token",
    }
    path = tmp_path / "user.json"
    path.write_text(json.dumps(user))
    from_file = workload_auth.Credentials.from_authorized_user_file(path)
    data = pickle.dumps(from_file)
    assert b"very-secret-value" not in data and b"refresh-secret" not in data
    assert pickle.loads(data).credential_type == "authorized_user"
    # Credentials from JSON in memory may hold a key: they refuse to be pickled.
    with pytest.raises(TypeError):
        pickle.dumps(workload_auth.Credentials.from_json(user))


def test_a_pickle_from_another_version_is_refused_clearly(emulator: Emulator) -> None:
    creds = workload_auth.default(metadata_host=emulator.host)
    restore, (fmt, state) = creds.__reduce__()
    with pytest.raises(ValueError) as refused:
        restore(fmt + 1, dict(state, version="0.0.1"))
    assert "format" in str(refused.value) and "0.0.1" in str(refused.value)
    with pytest.raises(ValueError):
        restore(fmt, dict(state, factory="from_json"))
    assert restore(fmt, state).credential_type == "metadata_server"


def test_the_google_auth_adapter_pickles_without_its_token(emulator: Emulator) -> None:
    pytest.importorskip("google.auth")
    from google.auth.transport.requests import Request

    from workload_auth import google_auth

    creds = google_auth.Credentials(
        workload_auth.default(metadata_host=emulator.host), scopes=[SCOPE], quota_project_id="q"
    )
    creds.refresh(Request())
    assert creds.token
    data = pickle.dumps(creds)
    assert creds.token.encode() not in data
    clone = pickle.loads(data)
    assert clone.token is None and clone.scopes == [SCOPE] and clone.quota_project_id == "q"
    headers: dict = {}
    clone.before_request(Request(), "GET", emulator.url, headers)
    assert headers["authorization"].startswith("Bearer ") and headers["x-goog-user-project"] == "q"


def test_a_fork_during_a_fetch_in_flight(proxy: Any) -> None:
    # A parent thread is inside a (delayed) token fetch when the process forks: the child must
    # not wait for that fetch, whose thread and runtime it does not have.
    import threading

    creds = workload_auth.default(metadata_host=proxy.host)
    proxy.faults.append(("delay", 1.5))
    fetching = threading.Thread(target=creds.token)
    fetching.start()
    import time

    time.sleep(0.3)  # the parent's fetch is now waiting on the proxy
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_tokens, args=(creds, queue))
    child.start()
    status, token, scoped = queue.get(timeout=30)
    child.join(timeout=30)
    fetching.join(timeout=30)
    assert status == "ok", token
    assert token and scoped
    assert child.exitcode == 0
