#!/usr/bin/env bash
# Fetch Debian's qemu source package (QEMU 10.0) into the cache.
# apt verifies every file against the Sources index, whose Release file
# is signed by the Debian archive key. Prints the .dsc path on stdout.
#
# The version is pinned (QEMU_DEB_VERSION). When the archive no longer
# carries it, a newer 10.0.x point release is accepted with a loud
# warning; anything else fails.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

pinned=${QEMU_DEB_VERSION:?QEMU_DEB_VERSION not set}

dsc_name() { local v=${1#*:}; echo "qemu_$v.dsc"; }

fetch() {
    local ver=$1 dir="$TBFORK_CACHE/qemu-source/${1#*:}"
    local dsc f
    dsc="$dir/$(dsc_name "$ver")"
    if [ -f "$dir/.complete" ]; then
        for f in "$dir"/qemu_*; do check_sum "$f"; done
        echo "$dsc"
        return 0
    fi
    step "fetching Debian source package qemu=$ver (about 40 MB)"
    rm -rf "$dir"
    mkdir -p "$dir"
    # apt's sandbox user cannot write into root's cache directory.
    (cd "$dir" && apt-get source -q --download-only \
        -o APT::Sandbox::User=root "qemu=$ver" > "$dir.log" 2>&1) || {
        grep -E '^(E|W):' "$dir.log" >&2
        return 1
    }
    rm -f "$dir.log"
    for f in "$dir"/qemu_*; do record_sum "$f"; done
    touch "$dir/.complete"
    echo "$dsc"
}

# Versions the apt indexes know (captured first: grep -q under pipefail
# would SIGPIPE apt-cache).
versions() { apt-cache showsrc qemu 2>/dev/null | sed -n 's/^Version: //p'; }
known=$(versions)
if ! grep -qx "$pinned" <<< "$known"; then
    apt_update
    known=$(versions)
fi

if grep -qx "$pinned" <<< "$known"; then
    dsc=$(fetch "$pinned") || die "apt-get source qemu=$pinned failed"
    info "QEMU source: Debian qemu $pinned (pinned)"
    echo "$dsc"
    exit 0
fi

# The pinned version is gone from the archive: take the newest 10.0.x.
best=
for v in $known; do
    case "$v" in 1:10.0.*) ;; *) continue;; esac
    if [ -z "$best" ] || dpkg --compare-versions "$v" gt "$best"; then
        best=$v
    fi
done
[ -n "$best" ] || die "no qemu 10.0.x source package in the apt indexes"
dpkg --compare-versions "$best" gt "$pinned" ||
    die "pinned qemu $pinned not available and no newer 10.0.x (best: $best)"
warn "pinned qemu $pinned is not in the archive any more.
!!! USING NEWER POINT RELEASE qemu $best INSTEAD.
!!! The patch series was written against $pinned; update QEMU_DEB_VERSION
!!! in configure once the series is checked against $best."
dsc=$(fetch "$best") || die "could not fetch qemu $best"
info "QEMU source: Debian qemu $best (NOT the pinned $pinned)"
echo "$dsc"
