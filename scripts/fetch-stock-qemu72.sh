#!/usr/bin/env bash
# Fetch stock QEMU 7.2 (Debian bookworm's qemu-system-ppc) for the
# compatibility tests: `apt-get download` the deb and extract it under
# $TBFORK_CACHE/stock-7.2, since the installed qemu-system-ppc is the
# 10.0 backport. Bookworm's libraries are the host's, so the extracted
# binary runs as is. Prints the qemu-system-ppc64 path on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dir="$TBFORK_CACHE/stock-7.2"
bin="$dir/root/usr/bin/qemu-system-ppc64"
# The newest 7.2 build the archive offers (bookworm or its security
# updates): apt-cache madison lists versions newest first.
ver=$(apt-cache madison qemu-system-ppc | awk -F' [|] ' '$2 ~ /^1:7\.2\+/ {print $2}' |
      sed 's/ //g' | head -n 1)
[ -n "$ver" ] || die "no qemu-system-ppc 7.2 in the apt indexes (bookworm)"
stamp="$dir/VERSION"
if [ -x "$bin" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$ver" ]; then
    check_sum "$bin"
    echo "$bin"
    exit 0
fi
step "fetching stock QEMU $ver (bookworm qemu-system-ppc)"
rm -rf "$dir"
mkdir -p "$dir"
(cd "$dir" && apt-get download -q -o APT::Sandbox::User=root \
    "qemu-system-ppc=$ver" >&2) || die "apt-get download qemu-system-ppc=$ver failed"
dpkg-deb -x "$dir"/qemu-system-ppc_*.deb "$dir/root" || die "extracting the 7.2 deb failed"
rm -f "$dir"/qemu-system-ppc_*.deb
"$bin" -version >&2 || die "stock QEMU 7.2 does not run here"
echo "$ver" > "$stamp"
record_sum "$bin"
echo "$bin"
