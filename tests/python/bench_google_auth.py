"""The google-auth drop-in against google-auth itself, against the same emulator, in one run:

- ``before_request`` with a cached token: ``workload_auth.google_auth.Credentials`` vs google-auth's
  ``compute_engine.Credentials``;
- a token in a running event loop: ``await creds.token_async()`` vs
  ``await asyncio.to_thread(google-auth refresh)`` (what async code does with google-auth);
- ``sign_bytes`` through IAM signBlob: ours vs google-auth's ``iam.Signer``.

    python tests/python/bench_google_auth.py      (starts the emulator itself)

Prints the time per call of each and the ratio ours / google-auth (below 1: ours is faster).
"""

import asyncio
import os
import subprocess
import sys
import time
import timeit
from typing import Callable, Dict, Tuple

ROUNDS = 5


def best_of(fn: Callable[[], object], number: int) -> float:
    fn()
    return min(timeit.repeat(fn, number=number, repeat=ROUNDS)) / number * 1e6


def measure(host: str) -> Dict[str, Tuple[float, float]]:
    """Microseconds per call, (ours, google-auth), per operation."""
    os.environ["GCE_METADATA_HOST"] = host
    os.environ["GCE_METADATA_IP"] = host
    import google.auth.compute_engine
    import google.auth.iam
    import google.auth.transport.requests

    import workload_auth
    from workload_auth import google_auth

    url = f"http://{host}"
    request = google.auth.transport.requests.Request()
    ours = google_auth.Credentials(workload_auth.default(metadata_host=host), iam_endpoint=url)
    theirs = google.auth.compute_engine.Credentials()
    results = {}

    def ours_before() -> None:
        ours.before_request(request, "GET", url, {})

    def theirs_before() -> None:
        theirs.before_request(request, "GET", url, {})

    results["before_request (cached token)"] = (
        best_of(ours_before, 20_000),
        best_of(theirs_before, 20_000),
    )

    wa = ours.workload_auth_credentials

    async def ours_async(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await wa.token_async()
        return (time.perf_counter() - started) / n * 1e6

    async def theirs_async(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            await asyncio.to_thread(theirs.refresh, request)
        return (time.perf_counter() - started) / n * 1e6

    results["token in a running loop"] = (
        min(asyncio.run(ours_async(2_000)) for _ in range(ROUNDS)),
        min(asyncio.run(theirs_async(200)) for _ in range(ROUNDS)),
    )

    # google-auth's IAM signer, pointed at the emulator's signBlob.
    google.auth.iam._IAM_SIGN_ENDPOINT = url + "/v1/projects/-/serviceAccounts/{}:signBlob"
    signer = google.auth.iam.Signer(request, theirs, ours.signer_email)
    results["sign_bytes (IAM signBlob)"] = (
        best_of(lambda: ours.sign_bytes(b"payload"), 200),
        best_of(lambda: signer.sign(b"payload"), 200),
    )
    return results


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, here)
    from conftest import _emulator_binary  # the same binary the tests use

    process = subprocess.Popen(
        [str(_emulator_binary()), "emulator", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        host = process.stdout.readline().strip().removeprefix("listening on ")
        results = measure(host)
    finally:
        process.terminate()
        process.wait()
    for name, (ours, theirs) in results.items():
        print(
            f"{name:32} workload_auth {ours:9.1f} us  google-auth {theirs:9.1f} us  "
            f"ratio {ours / theirs:.3f}x"
        )


if __name__ == "__main__":
    main()
