#!/bin/sh
# mmdebstrap essential hook for the libvirt tier's Debian guest
# (scripts/debian-guest.sh), before the kernel and initramfs-tools are
# installed: the initramfs holds only what a pseries guest on virtio
# needs. MODULES=most (Debian's default) copies every storage and
# network driver, and each of the three initramfs builds then takes
# minutes under qemu-user; the files go to /usr/share/initramfs-tools,
# whose conf.d and modules.d mkinitramfs reads (not dpkg conffiles).
set -eu
R=$1
d="$R/usr/share/initramfs-tools"
mkdir -p "$d/conf.d" "$d/modules.d"
echo MODULES=list > "$d/conf.d/tbguest"
printf '%s\n' virtio_pci virtio_blk virtio_console ext4 > "$d/modules.d/tbguest"
