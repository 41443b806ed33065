#!/usr/bin/env bash
# Build the initramfs of an emulated POWER9 KVM-HV host: busybox, the
# kvm/kvm-hv modules of Debian's ppc64el kernel, the fork's static
# ppc64le QEMU, VOF firmware, and the guest kernel and initramfs.
# Usage: kvm-host-initrd.sh QEMU_PPC64LE_STATIC INIT_SCRIPT OUT.gz
set -euo pipefail
. "$(dirname "$0")/lib.sh"

qemu=$1 init=$2 out=$3
guest="$TBFORK_CACHE/guest"
[ -f "$guest/vmlinux" ] || die "no guest artifacts in $guest (make guest)"
file -L "$qemu" | grep -q 'statically linked' ||
    die "$qemu is not a static binary"

step "building KVM-HV host initramfs ($out)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/root"
mkdir -p "$r"/{bin,proc,sys,dev,tmp,guest,fw,mod}
cp "$guest/busybox" "$r/bin/busybox"
for a in sh mount cat echo sleep insmod ls grep ip poweroff; do
    ln -s busybox "$r/bin/$a"
done
cp "$guest"/modules/kvm.ko "$guest"/modules/kvm-hv.ko "$r/mod/"
cp "$qemu" "$r/bin/qemu-system-ppc64"
cp /usr/share/qemu/vof.bin "$r/fw/"
cp "$guest/vmlinux" "$guest/guest-initrd.gz" "$r/guest/"
cp "$init" "$r/init"
chmod +x "$r/init"
mkdir -p "$(dirname "$out")"
(cd "$r" && find . | sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 > "$out"
info "host initramfs: $(du -h "$out" | cut -f1)"
