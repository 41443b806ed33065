#!/usr/bin/env bash
# Install the fork's qemu-system-ppc64 and qemu-img under PREFIX (staged
# under DESTDIR), where libvirt's <emulator> can name them. QEMU finds
# its data relative to its binary (PREFIX/bin/../share/qemu-firmware,
# ../share/qemu), so the tree may be moved after installing. Firmware
# (vof.bin, slof.bin) is Debian's: the build installs no blobs, and
# PREFIX/share/qemu-firmware links to /usr/share/qemu (qemu-system-data,
# installed by setup-host.sh).
# Usage: install-qemu.sh BUILD_DIR DESTDIR PREFIX
set -euo pipefail
. "$(dirname "$0")/lib.sh"
native=$1/qemu-native destdir=$2 prefix=$3

case "$prefix" in /*) ;; *) die "PREFIX must be absolute: $prefix";; esac
[ "$prefix" != /usr ] || [ -n "$destdir" ] ||
    die "PREFIX=/usr would replace Debian's qemu-system-ppc64; pick another"
[ -f /usr/share/qemu/vof.bin ] ||
    die "no /usr/share/qemu/vof.bin (Debian's qemu-system-data)"
root="$destdir$prefix"
step "installing the fork's QEMU into $root"
for b in qemu-system-ppc64 qemu-img; do
    install -D -m 755 "$native/$b" "$root/bin/$b"
done
mkdir -p "$root/share"
ln -sfn /usr/share/qemu "$root/share/qemu-firmware"
info "$root/bin/qemu-system-ppc64 (firmware: $root/share/qemu-firmware -> /usr/share/qemu)"
