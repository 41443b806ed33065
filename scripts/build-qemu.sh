#!/usr/bin/env bash
# Run ninja in a QEMU build directory, printing progress (every 10%)
# instead of every compile line, and the full log's tail on failure.
# Usage: build-qemu.sh LABEL BUILD_DIR TARGET...
set -euo pipefail
. "$(dirname "$0")/lib.sh"
label=$1 dir=$2
shift 2
log="$dir/ninja.log.txt"
step "building $label ($*)"
set +e
ninja -C "$dir" "$@" 2>&1 | tee "$log" | awk '
    /^\[[0-9]+\/[0-9]+\]/ {
        split(substr($1, 2), a, "/"); pct = int(a[1] * 100 / a[2]);
        if (pct >= last + 10) { last = pct - pct % 10;
            printf "    %s: %d%% (%d/%d)\n", label, pct, a[1], a[2]; fflush() }
        next }
    /no work to do/ { print "    " label ": up to date"; next }' label="$label"
rc=${PIPESTATUS[0]}
set -e
if [ "$rc" != 0 ]; then
    grep -B2 -A20 -m3 'FAILED:\|error:' "$log" | head -60 >&2
    die "$label build failed (full log: $log)"
fi
info "$label built in $(( $(date +%s) - _t0 ))s"
