#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, checks formatting, lints
# and docs, builds everything, then runs every suite in a network namespace whose only interface is
# loopback (when run as root), so no test can reach anything but the local emulator.
#
#   bash scripts/test.sh          (what .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

step() { printf '\n==> %s\n' "$*"; }

# ---- system packages: OpenSSL's command line (interop tests), iproute2 (namespaces), valgrind and
# cmake (C tests)
need_apt=()
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v ip >/dev/null || need_apt+=(iproute2)
command -v unshare >/dev/null || need_apt+=(util-linux)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v cc >/dev/null || need_apt+=(gcc)
command -v c++ >/dev/null || need_apt+=(g++)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v cmake >/dev/null || need_apt+=(cmake)
if [ ${#need_apt[@]} -gt 0 ]; then
  step "installing ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

# ---- Python: a private virtualenv with the reference library and the test tools
venv="$root/target/venv"
if [ ! -x "$venv/bin/python" ]; then
  step "creating $venv"
  python3 -m venv "$venv"
fi
step "installing Python test dependencies"
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/python/requirements.txt
export PATH="$venv/bin:$PATH"
export VIRTUAL_ENV="$venv"
# pyright's wrapper downloads pyright on first use: do it now, not in the offline test run.
"$venv/bin/pyright" --version >/dev/null
# The Python package as it ships: the release wheel maturin (from requirements.txt) builds (abi3,
# manylinux-tagged, the extension stripped), checked by auditwheel, then installed from the .whl,
# so that pytest imports the installed package (tests/python/test_packaging.py checks it does).
step "maturin build --release (the Python wheel)"
rm -rf target/wheels
"$venv/bin/maturin" build --release --locked -m bindings/python/Cargo.toml --out target/wheels
wheels=(target/wheels/workload_auth-*.whl)
"$venv/bin/auditwheel" show "${wheels[0]}"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps \
  "${wheels[0]}"

# ---- static checks
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo clippy (the fuzz targets' entry points, feature \`fuzzing\`)"
cargo clippy -p workload-auth-adc -p workload-auth-metadata --locked \
  --features workload-auth-adc/fuzzing,workload-auth-metadata/fuzzing -- -D warnings
step "cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

# ---- build everything while the network is still there, then test without it
step "building tests"
cargo test --workspace --all-targets --locked --no-run --quiet
# The emulator binary the Python suite runs (tests/python/conftest.py).
cargo build -p workload-auth-cli --locked --quiet

step "a user's crate: workload-auth alone, default features (tests/rust-user)"
cargo build -p workload-auth-user-check --locked --quiet
user_tree=$(cargo tree -p workload-auth-user-check -e normal --prefix none --locked --offline | sort -u)
if grep -E '^(tonic|axum|h2|prost-types) ' <<<"$user_tree"; then
  echo "workload-auth's default features pull in the gRPC stack (above)" >&2
  exit 1
fi
echo "$(wc -l <<<"$user_tree") crates in its tree"

# Packaged together, each path dependency resolved from the others' packages. Not verified here
# (that compiles every crate again from its package): the tests above built the same sources.
step "cargo package (every published crate)"
published=(workload-auth-core workload-auth-metadata workload-auth-adc workload-auth-mtls
  workload-auth-workload-api workload-auth-emulator workload-auth workload-auth-cli)
cargo package "${published[@]/#/-p}" --no-verify --locked --offline --quiet

offline() {
  if [ "$(id -u)" = 0 ] && unshare -n true 2>/dev/null; then
    unshare -n sh -c 'ip link set lo up && exec "$@"' offline "$@"
  else
    echo "note: not root, so the suites run without a private network namespace" >&2
    "$@"
  fi
}

step "cargo test (loopback-only network)"
offline cargo test --workspace --all-targets --offline --locked
offline cargo test --workspace --doc --offline --locked

step "pytest tests/python (loopback-only network)"
offline "$venv/bin/python" -m pytest tests/python -q -p no:cacheprovider
