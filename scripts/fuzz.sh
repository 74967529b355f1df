#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (libFuzzer with AddressSanitizer) for a bounded time each, then
# prints a table of executions and crashes. Exits non-zero if any target crashed, leaked, timed
# out or failed to build.
#
#   bash scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Starts from the committed seeds in fuzz/corpus/TARGET; what libFuzzer finds is kept in
# fuzz/scratch/TARGET (ignored by git) and reused by the next run. A crashing input is saved
# under fuzz/artifacts/TARGET/; reproduce it with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...
# One libFuzzer process per target, one target at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
case $seconds in
  '' | *[!0-9]*) echo "usage: $0 [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# cargo-fuzz needs nightly-only compiler flags (sanitizers); on a stable toolchain this lets the
# stable compiler accept them.
export RUSTC_BOOTSTRAP=1

echo "==> building the fuzz targets (release, debug assertions, AddressSanitizer)"
cargo fuzz build

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p fuzz/scratch/logs
failed=()
rows=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/scratch/$target"
  log="fuzz/scratch/logs/$target.log"
  echo "==> $target: ${seconds}s"
  status=0
  # -timeout: an input that takes over 10 s is a hang (a crash); -rss_limit_mb: 2 GB is a leak.
  cargo fuzz run "$target" "fuzz/scratch/$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    </dev/null >"$log" 2>&1 || status=$?
  # The c_api and certificate_config targets' scratch files (one set per fuzzing process).
  rm -rf "${TMPDIR:-/tmp}"/wa-fuzz-* /dev/shm/wa-fuzz-* 2>/dev/null || true
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  # Without the final stats (a crash), the last progress line has the count.
  [ -n "$runs" ] || runs=$(sed -n 's/^#\([0-9][0-9]*\).*/\1/p' "$log" | tail -n 1)
  crashes=0
  if [ "$status" -ne 0 ]; then
    crashes=1
    failed+=("$target")
    tail -n 40 "$log" >&2
  fi
  rows+=("$(printf '%-40s %6s %12s %8s' "$target" "$seconds" "${runs:-?}" "$crashes")")
done

echo
printf '%-40s %6s %12s %8s\n' target seconds executions crashes
printf '%s\n' "${rows[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs under fuzz/artifacts/, logs under fuzz/scratch/logs/)" >&2
  exit 1
fi
