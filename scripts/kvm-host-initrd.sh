#!/usr/bin/env bash
# Build the initramfs of an emulated POWER KVM-HV host: busybox, the
# kvm/kvm-hv and virtio modules of Debian's ppc64el kernel (the guest's
# 6.1, or those in MODULES_DIR for another host kernel), the fork's static
# ppc64le QEMU, VOF firmware, the guest kernel and initramfs, and what
# makes an L1 hypervisor's initramfs from them (tests/kvm/mk-l1-initrd).
# With STOCK_QEMU, that static build of unpatched QEMU goes in as
# /bin/qemu-stock, for side-by-side runs.
# Usage: kvm-host-initrd.sh QEMU_PPC64LE_STATIC INIT_SCRIPT OUT.gz \
#            [STOCK_QEMU [MODULES_DIR]]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

qemu=$1 init=$2 out=$3 stock=${4:-}
guest="$TBFORK_CACHE/guest"
modules=${5:-$guest/modules}
[ -f "$guest/vmlinux" ] || die "no guest artifacts in $guest (make guest)"
file -L "$qemu" | grep -q 'statically linked' ||
    die "$qemu is not a static binary"

step "building KVM-HV host initramfs ($out)"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
r="$tmp/root"
mkdir -p "$r"/{bin,proc,sys,dev,tmp,guest,fw,mod}
cp "$guest/busybox" "$r/bin/busybox"
for a in sh mount cat echo sleep insmod ls grep ip poweroff date \
         kill ps mkdir rm dmesg uname ping cp ln find cpio mkfifo tee wc \
         zcat; do
    ln -s busybox "$r/bin/$a"
done
cp "$modules"/*.ko "$r/mod/"
cp "$qemu" "$r/bin/qemu-system-ppc64"
for tool in clockstep tbregs; do
    powerpc64le-linux-gnu-gcc -O2 -Wall -Wextra -Werror -static \
        -o "$r/bin/$tool" "$(dirname "$0")/../tests/kvm/$tool.c" ||
        die "building $tool failed"
done
if [ -n "$stock" ]; then
    file -L "$stock" | grep -q 'statically linked' ||
        die "$stock is not a static binary"
    cp "$stock" "$r/bin/qemu-stock"
fi
cp /usr/share/qemu/vof.bin "$r/fw/"
cp "$guest/vmlinux" "$guest/guest-initrd.gz" "$r/guest/"
cp "$init" "$r/init"
chmod +x "$r/init"
# An L1 hypervisor's initramfs, made in the host from these files
kvm="$(dirname "$0")/../tests/kvm"
cp "$kvm/mk-l1-initrd" "$kvm/l1-init" "$r/bin/"
chmod +x "$r/bin/mk-l1-initrd" "$r/bin/l1-init"
mkdir -p "$(dirname "$out")"
(cd "$r" && find . | sort | cpio -o -H newc --quiet -R 0:0) | gzip -1 > "$out"
info "host initramfs: $(du -h "$out" | cut -f1)"
