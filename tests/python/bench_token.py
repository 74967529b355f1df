"""Cached access token: workload_auth's `Credentials.token()` against google-auth's idiom for a
cached token (`if not creds.valid: creds.refresh(req)` then `creds.token`) on compute_engine
credentials, both against the same emulator, in the same run.

    python tests/python/bench_token.py            (starts the emulator itself)

Prints the time per call of each and the ratio (target: workload_auth <= 0.5x google-auth).
test_token_speed.py runs the same measurement as a test.
"""

import os
import subprocess
import sys
import timeit
from typing import Dict

ROUNDS = 7


def measure(metadata_host: str, number: int = 200_000) -> Dict[str, float]:
    """Nanoseconds per cached-token call of each surface (best of ROUNDS)."""
    os.environ["GCE_METADATA_HOST"] = metadata_host
    os.environ["GCE_METADATA_IP"] = metadata_host
    import google.auth.compute_engine
    import google.auth.transport.requests

    import workload_auth

    ours = workload_auth.default(metadata_host=metadata_host)
    ours.token()  # fill the cache

    theirs = google.auth.compute_engine.Credentials()
    request = google.auth.transport.requests.Request()
    theirs.refresh(request)

    def google_idiom() -> str:
        if not theirs.valid:
            theirs.refresh(request)
        return theirs.token  # type: ignore[no-any-return]

    results = {}
    for name, fn in [("workload_auth token()", ours.token), ("google-auth idiom", google_idiom)]:
        fn()
        best = min(timeit.repeat(fn, number=number, repeat=ROUNDS))
        results[name] = best / number * 1e9
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
    ours = results["workload_auth token()"]
    theirs = results["google-auth idiom"]
    for name, ns in results.items():
        print(f"{name:24} {ns:8.1f} ns/call")
    print(f"ratio workload_auth / google-auth: {ours / theirs:.2f}x (target <= 0.5x)")


if __name__ == "__main__":
    main()
