"""A cached token through the Python API costs less than google-auth's own idiom for one
(bench_token.py reports the figures; the target there is <= 0.5x). It measures the installed
build: scripts/test.sh installs the release wheel; a debug build (`maturin develop`) is several
times slower and may not pass."""

from bench_token import measure
from conftest import Emulator


def test_cached_token_is_cheaper_than_the_google_auth_idiom(metadata_env: Emulator) -> None:
    results = measure(metadata_env.host, number=20_000)
    ours = results["workload_auth token()"]
    theirs = results["google-auth idiom"]
    print(f"workload_auth {ours:.0f} ns, google-auth {theirs:.0f} ns, ratio {ours / theirs:.2f}")
    # Loose enough for a busy CI machine; the benchmark itself checks the 0.5x target.
    assert ours < theirs, results
