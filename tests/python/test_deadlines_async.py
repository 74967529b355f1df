"""Deadlines (``timeout=``) on blocking calls, and the asyncio API, against the emulator behind a
proxy that delays answers."""

import asyncio
import math
import time

import pytest

import workload_auth
from conftest import FaultyProxy

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


@pytest.mark.parametrize("bad", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf])
def test_a_deadline_must_be_a_positive_finite_number(proxy: FaultyProxy, bad: float) -> None:
    wa = workload_auth.default(metadata_host=proxy.host)
    for call in (
        lambda: wa.token(timeout=bad),
        lambda: wa.token([SCOPE], timeout=bad),
        lambda: wa.access_token(timeout=bad),
        lambda: wa.id_token("https://a.example.test", timeout=bad),
        lambda: wa.headers(timeout=bad),
        lambda: wa.project_id(timeout=bad),
        lambda: wa.universe_domain(timeout=bad),
        lambda: wa.service_account_email(timeout=bad),
    ):
        with pytest.raises(ValueError):
            call()
    with pytest.raises(ValueError):
        workload_auth.default(metadata_host=proxy.host, timeout=bad)
    assert proxy.token_fetches() == 0
    with pytest.raises(TypeError):
        wa.token(timeout="1")  # type: ignore[arg-type]
    # default() takes a deadline too (it may probe for the metadata server).
    assert workload_auth.default(metadata_host=proxy.host, timeout=5).credential_type == (
        "metadata_server"
    )


def test_a_deadline_is_honoured_within_50_ms(proxy: FaultyProxy) -> None:
    wa = workload_auth.default(metadata_host=proxy.host)
    proxy.faults.append(("delay", 2.0))
    started = time.monotonic()
    with pytest.raises(workload_auth.DeadlineExceededError) as late:
        wa.token(timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.35, elapsed
    error = late.value
    assert isinstance(error, TimeoutError) and isinstance(error, workload_auth.TransportError)
    assert error.transient
    # The fetch went on in the background and fills the cache: no second fetch.
    time.sleep(2.0)
    started = time.monotonic()
    assert wa.token(timeout=0.3)
    assert time.monotonic() - started < 0.05
    assert proxy.token_fetches() == 1
    # ID tokens and other calls take the same deadline.
    proxy.faults.append(("delay", 2.0))
    started = time.monotonic()
    with pytest.raises(workload_auth.DeadlineExceededError):
        wa.id_token("https://deadline.example.test", timeout=0.2)
    assert time.monotonic() - started < 0.25


def test_token_async_does_not_block_the_loop(proxy: FaultyProxy) -> None:
    wa = workload_auth.default(metadata_host=proxy.host)
    proxy.faults.append(("delay", 0.5))

    async def main() -> tuple:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        started = time.monotonic()
        token = await wa.token_async()
        cold = time.monotonic() - started
        headers = await wa.request_headers_async()
        id_token = await wa.id_token_async("https://async.example.test")
        stop = True
        await task
        return token, headers, id_token, ticks, cold

    token, headers, id_token, ticks, cold = asyncio.run(main())
    assert cold >= 0.5
    assert ticks >= 25, ticks  # the loop kept running during the 0.5 s fetch
    assert token == wa.token()  # the same cache
    assert headers["authorization"] == f"Bearer {token}"
    assert id_token == wa.id_token("https://async.example.test")
    assert proxy.token_fetches() == 1


def test_async_deadlines_and_bad_arguments(proxy: FaultyProxy) -> None:
    wa = workload_auth.default(metadata_host=proxy.host)
    proxy.faults.append(("delay", 2.0))

    async def main() -> None:
        with pytest.raises(ValueError):
            wa.token_async(timeout=0)
        with pytest.raises(TypeError):
            wa.token_async({"a": 1})  # type: ignore[arg-type]
        started = time.monotonic()
        with pytest.raises(workload_auth.DeadlineExceededError):
            await wa.token_async(timeout=0.2)
        assert time.monotonic() - started < 0.25

    asyncio.run(main())
    with pytest.raises(RuntimeError):
        wa.token_async()  # no running loop


def test_google_auth_aio_credentials_share_the_cache(proxy: FaultyProxy) -> None:
    pytest.importorskip("google.auth.aio")
    from google.auth.aio import credentials as aio_credentials

    from workload_auth import google_auth

    wa = workload_auth.default(metadata_host=proxy.host, quota_project="billing")
    creds = google_auth.AsyncCredentials(wa)
    assert isinstance(creds, aio_credentials.Credentials)
    proxy.faults.append(("delay", 0.4))

    async def main() -> tuple:
        ticks = 0
        stop = False

        async def ticker() -> None:
            nonlocal ticks
            while not stop:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        headers: dict = {}
        await creds.before_request(None, "GET", proxy.url, headers)
        first = creds.token
        await creds.refresh(None)  # holding the valid cached token: an API refused it
        stop = True
        await task
        return headers, first, ticks

    headers, first, ticks = asyncio.run(main())
    assert ticks >= 20, ticks
    assert headers["authorization"] == f"Bearer {first}"
    assert headers["x-goog-user-project"] == "billing"
    assert creds.token != first and creds.token == wa.token()
    assert proxy.token_fetches() == 2
