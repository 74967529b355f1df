#!/usr/bin/env bash
# Installs the workload-auth C library: the shared and static libraries, include/workload_auth.h
# and a pkg-config file (workload_auth.pc, from workload_auth.pc.in).
#
#   bindings/c/install.sh [--prefix DIR] [--libdir DIR] [--profile release|debug] [--no-build]
#                         [--artifacts DIR]
#
# Defaults: --prefix /usr/local, --libdir PREFIX/lib, --profile release. Without --no-build it runs
# `cargo build -p workload-auth-c` for the profile first. The libraries are taken from --artifacts,
# else from $CARGO_TARGET_DIR (default: target/ at the workspace root)/PROFILE. Then:
#   cc app.c $(pkg-config --cflags --libs workload_auth)
# (add PREFIX/lib/pkgconfig to PKG_CONFIG_PATH when PREFIX is not a standard location).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

prefix=/usr/local
libdir=
profile=release
build=1
artifacts=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=$2; shift 2 ;;
    --libdir) libdir=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --artifacts) artifacts=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
libdir=${libdir:-$prefix/lib}
includedir=$prefix/include
target=${CARGO_TARGET_DIR:-$root/target}
case "$profile" in
  release) out=$target/release; flags=(--release) ;;
  debug) out=$target/debug; flags=() ;;
  *) echo "install.sh: --profile is release or debug" >&2; exit 2 ;;
esac

if [ "$build" = 1 ]; then
  (cd "$root" && cargo build -p workload-auth-c "${flags[@]}")
fi

# `cargo build` puts the libraries in $out; `cargo test` only in $out/deps.
find_artifact() {
  local dirs=("$out" "$out/deps")
  if [ -n "$artifacts" ]; then dirs=("$artifacts"); fi
  for dir in "${dirs[@]}"; do
    if [ -f "$dir/$1" ]; then echo "$dir/$1"; return 0; fi
  done
  echo "install.sh: $1 not found under $out (build it: cargo build -p workload-auth-c)" >&2
  return 1
}
shared=$(find_artifact libworkload_auth.so)
static=$(find_artifact libworkload_auth.a)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)

install -d "$libdir/pkgconfig" "$includedir"
install -m 0755 "$shared" "$libdir/libworkload_auth.so"
install -m 0644 "$static" "$libdir/libworkload_auth.a"
install -m 0644 "$root/include/workload_auth.h" "$includedir/workload_auth.h"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" "$here/workload_auth.pc.in" > "$libdir/pkgconfig/workload_auth.pc"
echo "installed workload-auth $version: $libdir/libworkload_auth.{so,a}, $includedir/workload_auth.h, $libdir/pkgconfig/workload_auth.pc"
