#!/usr/bin/env bash
# A real distribution guest for the libvirt tier: Debian 12 (bookworm)
# ppc64el with systemd, qemu-guest-agent and the TB probe as a service,
# built from Debian's archive with mmdebstrap (second stage under
# qemu-user-static through binfmt_misc), cached under
# $TBFORK_CACHE/debian-guest/<hash of this script, its hooks and the probe>:
#   vmlinux, initrd.img   the guest's own kernel and initramfs (<kernel>,
#                         <initrd>: no bootloader, VOF or SLOF alike)
#   base.qcow2            its root file system (ext4, label "root");
#                         each domain gets an overlay on it
#   VERSIONS              kernel, systemd and agent versions used
# Prints the directory on stdout.
# Usage: debian-guest.sh TBPROBE_BINARY
set -euo pipefail
. "$(dirname "$0")/lib.sh"

probe=$1
top=$(cd "$(dirname "$0")/.." && pwd)
mirror=${TBFORK_DEBIAN_MIRROR:-http://deb.debian.org/debian}
[ -x "$probe" ] || die "no TB probe binary at $probe (make $probe)"
hash=$(cat "$0" "$top"/tests/libvirt/guest-*.sh "$probe" | sha256sum | cut -c1-16)
out="$TBFORK_CACHE/debian-guest/$hash"
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi
# One build at a time (the tier's background job and a make check-libvirt
# beside it): the second waits and takes the first's result.
mkdir -p "$TBFORK_CACHE/debian-guest"
exec 9> "$TBFORK_CACHE/debian-guest/.lock"
flock -w 3600 9 || die "another build of the guest held $TBFORK_CACHE/debian-guest/.lock for an hour"
if [ -f "$out/done" ]; then
    echo "$out"
    exit 0
fi

# Debian's packages configure under emulation: binfmt_misc must know
# ppc64le binaries (not mounted on a host without systemd).
if ! mountpoint -q /proc/sys/fs/binfmt_misc; then
    step "mounting binfmt_misc"
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc ||
        die "cannot mount binfmt_misc (needed to run ppc64el binaries)"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-ppc64le ]; then
    update-binfmts --enable qemu-ppc64le ||
        die "update-binfmts --enable qemu-ppc64le failed (qemu-user-static, binfmt-support)"
fi
arch-test ppc64el >/dev/null || die "arch-test: ppc64el binaries do not run here"

work="$out.tmp"
# --one-file-system: a failed mmdebstrap may leave /proc, /sys or /dev
# mounted in the root file system
rm -rf --one-file-system "$work" "$out"
mkdir -p "$work"
trap 'rm -rf --one-file-system "$work"' EXIT

step "building the Debian 12 ppc64el guest with mmdebstrap (a few minutes)"
# The security suite is left out: its ppc64el index fails its size check
# on this mirror (as in setup-host.sh's apt update); the guest is a test
# fixture on an isolated network, not a server.
mmdebstrap --mode=root --arch=ppc64el --variant=minbase \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --include=systemd-sysv,udev,kmod,qemu-guest-agent,linux-image-powerpc64le,initramfs-tools,e2fsprogs,procps \
    --setup-hook='mkdir -p "$1/usr/local/bin"' \
    --essential-hook="sh '$top/tests/libvirt/guest-initramfs.sh' \"\$1\"" \
    --customize-hook="upload $probe /usr/local/bin/tbprobe" \
    --customize-hook="sh '$top/tests/libvirt/guest-customize.sh' \"\$1\"" \
    bookworm "$work/rootfs" "deb $mirror bookworm main" \
    > "$work/mmdebstrap.log" 2>&1 9>&- ||
    { tail -30 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }

step "packing the root file system (ext4 -> qcow2)"
kver=$(ls "$work/rootfs/lib/modules" | head -1)
[ -n "$kver" ] || die "no kernel installed in the guest"
cp "$work/rootfs/boot/vmlinux-$kver" "$work/vmlinux"
cp "$work/rootfs/boot/initrd.img-$kver" "$work/initrd.img"
truncate -s 2G "$work/root.raw"
mkfs.ext4 -q -F -L root -d "$work/rootfs" "$work/root.raw" ||
    die "mkfs.ext4 -d failed"
qemu-img convert -f raw -O qcow2 "$work/root.raw" "$work/base.qcow2"
{
    echo "kernel $kver"
    chroot "$work/rootfs" dpkg-query -W systemd qemu-guest-agent \
        linux-image-powerpc64le
    echo "tbprobe $(sha256sum < "$probe" | cut -c1-16)"
} > "$work/VERSIONS"
rm -rf "$work/rootfs" "$work/root.raw"
mkdir -p "$out"
mv "$work/vmlinux" "$work/initrd.img" "$work/base.qcow2" "$work/VERSIONS" \
    "$work/mmdebstrap.log" "$out/"
touch "$out/done"
# Older builds of this guest go (each is ~600 MB).
for d in "$TBFORK_CACHE"/debian-guest/*; do
    [ "$d" = "$out" ] || rm -rf --one-file-system "$d"
done
info "Debian guest ready: $out ($(head -1 "$out/VERSIONS"))"
echo "$out"
