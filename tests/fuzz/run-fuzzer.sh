#!/bin/sh
# Run a libFuzzer binary for a bounded time with a fixed seed; a crash
# or invariant failure (abort) fails the test.
set -eu
fuzzer=$1
secs=${FUZZ_SECONDS:-20}
corpus=$(mktemp -d)
trap 'rm -rf "$corpus"' EXIT
exec "$fuzzer" -seed=1 -error_exitcode=1 -max_total_time="$secs" -print_final_stats=1 \
    -artifact_prefix="${TMPDIR:-/tmp}/" "$corpus"
