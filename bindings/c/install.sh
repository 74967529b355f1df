#!/usr/bin/env bash
# Installs the workload-auth C library; run bindings/c/install.sh --help for its usage.
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bindings/c/install.sh [--prefix DIR] [--libdir DIR] [--profile release|dist|debug]
                             [--no-build] [--artifacts DIR]

Installs the workload-auth C library:
  LIBDIR/libworkload_auth.so.VERSION        the shared library (SONAME libworkload_auth.so.MAJOR)
  LIBDIR/libworkload_auth.so.MAJOR, .so     symbolic links to it
  LIBDIR/libworkload_auth.a                 the static library
  PREFIX/include/workload_auth.h            the C header (and workload_auth.hpp, for C++)
  LIBDIR/pkgconfig/workload_auth.pc         pkg-config file
  LIBDIR/cmake/workload_auth/               CMake package (find_package(workload_auth))
  PREFIX/share/workload_auth/valgrind.supp  valgrind suppressions for programs using the library

Options:
  --prefix DIR      installation prefix (default /usr/local)
  --libdir DIR      library directory (default PREFIX/lib)
  --profile NAME    cargo profile to build and install (default release; dist is release
                    without debug information, stripped)
  --no-build        do not run `cargo build -p workload-auth-c` first
  --artifacts DIR   take the libraries cargo built (libworkload_auth_c.so and .a) from DIR
                    instead of the cargo target directory ($CARGO_TARGET_DIR, default target/
                    at the workspace root, then PROFILE/)
  -h, --help        print this help

Then build programs with
  cc app.c $(pkg-config --cflags --libs workload_auth)
(add LIBDIR/pkgconfig to PKG_CONFIG_PATH when PREFIX is not a standard location), or with CMake:
  find_package(workload_auth 0.1 REQUIRED)
  target_link_libraries(app PRIVATE workload_auth::workload_auth)
(-DCMAKE_PREFIX_PATH=PREFIX when PREFIX is not a standard location). The pkg-config flags embed
LIBDIR as the program's run-time search path, so it runs without LD_LIBRARY_PATH.
For a system-wide LIBDIR (such as /usr/local/lib), run `ldconfig` after installing instead.
USAGE
}
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
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
libdir=${libdir:-$prefix/lib}
includedir=$prefix/include
target=${CARGO_TARGET_DIR:-$root/target}
case "$profile" in
  release) out=$target/release; flags=(--release) ;;
  dist) out=$target/dist; flags=(--profile dist) ;;
  debug) out=$target/debug; flags=() ;;
  *) echo "install.sh: --profile is release, dist or debug" >&2; exit 2 ;;
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
# Cargo names them after the Rust library (workload_auth_c); they are installed under the C name.
shared=$(find_artifact libworkload_auth_c.so)
static=$(find_artifact libworkload_auth_c.a)
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)

major=${version%%.*}
install -d "$libdir/pkgconfig" "$libdir/cmake/workload_auth" "$includedir" "$prefix/share/workload_auth"
install -m 0755 "$shared" "$libdir/libworkload_auth.so.$version"
ln -sfn "libworkload_auth.so.$version" "$libdir/libworkload_auth.so.$major"
ln -sfn "libworkload_auth.so.$major" "$libdir/libworkload_auth.so"
install -m 0644 "$static" "$libdir/libworkload_auth.a"
install -m 0644 "$root/include/workload_auth.h" "$includedir/workload_auth.h"
if [ -f "$root/include/workload_auth.hpp" ]; then
  install -m 0644 "$root/include/workload_auth.hpp" "$includedir/workload_auth.hpp"
fi
install -m 0644 "$here/valgrind.supp" "$prefix/share/workload_auth/valgrind.supp"
sed -e "s|@PREFIX@|$prefix|" -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" \
    -e "s|@VERSION@|$version|" "$here/workload_auth.pc.in" > "$libdir/pkgconfig/workload_auth.pc"
for cmake in workload_auth-config workload_auth-config-version; do
  sed -e "s|@LIBDIR@|$libdir|" -e "s|@INCLUDEDIR@|$includedir|" -e "s|@VERSION@|$version|" \
      -e "s|@MAJOR@|$major|" "$here/$cmake.cmake.in" > "$libdir/cmake/workload_auth/$cmake.cmake"
done
echo "installed workload-auth $version: $libdir/libworkload_auth.{so.$version,so.$major,so,a}, $includedir/workload_auth.h, $libdir/pkgconfig/workload_auth.pc, $libdir/cmake/workload_auth"
case "$libdir" in
  /usr/lib|/usr/lib64|/usr/local/lib|/usr/local/lib64|/lib|/lib64)
    echo "run ldconfig to update the dynamic linker's cache" ;;
esac
