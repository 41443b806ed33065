#!/usr/bin/env bash
# Debian's ppc64el 6.12 kernel (bookworm-backports) for the KVM-HV
# harness's emulated POWER10 hosts, in one of its two flavours:
#   powerpc64le       4 KiB pages
#   powerpc64le-64k   64 KiB pages (what POWER distributions ship)
# Cached under $TBFORK_CACHE/host-kernel/<image package>_<version>:
#   vmlinux    the kernel
#   modules/   kvm-hv and what tests/kvm/host-init loads, those not
#              built in (on 6.12: kvm, kvm-hv, virtio_net and its two
#              failover modules; the virtio core and console are built
#              in), decompressed (Debian ships .ko.xz, busybox's insmod
#              takes plain ELF)
# Prints the directory on stdout.
# Usage: host-kernel.sh FLAVOUR
set -euo pipefail
. "$(dirname "$0")/lib.sh"

flavour=${1:?usage: host-kernel.sh powerpc64le|powerpc64le-64k}
case "$flavour" in
powerpc64le|powerpc64le-64k) ;;
*) die "unknown flavour $flavour (powerpc64le or powerpc64le-64k)" ;;
esac
meta="linux-image-$flavour"

# bpo_version PKG: PKG's ppc64el version in bookworm-backports, if any.
bpo_version() {
    apt-cache madison "$1:ppc64el" 2>/dev/null |
        awk -F' [|] ' '$3 ~ /bookworm-backports\// {print $2; exit}'
}
ver=$(bpo_version "$meta")
if [ -z "$ver" ]; then
    apt_update
    ver=$(bpo_version "$meta")
fi
[ -n "$ver" ] || die "no $meta:ppc64el in bookworm-backports (setup-host.sh adds it)"
pkg=$( (apt-cache depends "$meta:ppc64el=$ver" || true) |
      sed -n 's/^  Depends: \(linux-image-[^:]*\).*/\1/p' | head -1)
[ -n "$pkg" ] || die "cannot resolve $meta:ppc64el=$ver"
pver=$(bpo_version "$pkg")
[ -n "$pver" ] || die "no $pkg:ppc64el in bookworm-backports"

# What the host init loads, in its order, then kvm and kvm-hv.
modules="virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev
virtio_pci virtio_console failover net_failover virtio_net kvm kvm-hv"
out="$TBFORK_CACHE/host-kernel/${pkg}_$pver"
if [ -f "$out/done" ] &&
   [ "$(sed -n 2p "$out/VERSION")" = "$(echo $modules)" ]; then
    echo "$out"
    exit 0
fi

debs="$TBFORK_CACHE/debs-ppc64el"
mkdir -p "$debs"
deb=$(ls "$debs/${pkg}_${pver#*:}_ppc64el.deb" 2>/dev/null || true)
if [ -z "$deb" ]; then
    step "downloading $pkg:ppc64el $pver"
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root \
        "$pkg:ppc64el=$pver" >/dev/null 2>&1) ||
        die "apt-get download $pkg:ppc64el=$pver failed"
    deb="$debs/${pkg}_${pver#*:}_ppc64el.deb"
    [ -f "$deb" ] || die "apt-get download left no $deb"
    record_sum "$deb"
else
    check_sum "$deb"
fi

step "extracting the host kernel and kvm-hv from $(basename "$deb")"
rm -rf "$out"
mkdir -p "$out/modules"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$deb" "$tmp/k"
cp "$tmp"/k/boot/vmlinux-* "$out/vmlinux"
for m in $modules; do
    f=$(find "$tmp/k/lib/modules" \( -name "$m.ko.xz" -o -name "$m.ko" \) |
        head -1)
    if [ -z "$f" ]; then
        grep -q "/$m.ko\$" "$tmp"/k/lib/modules/*/modules.builtin ||
            die "$m is neither a module nor built in in $pkg"
        continue
    fi
    case "$f" in
    *.xz) xz -dc "$f" > "$out/modules/$m.ko" ;;
    *) cp "$f" "$out/modules/$m.ko" ;;
    esac
done
printf '%s %s\n%s\n' "$pkg" "$pver" "$(echo $modules)" > "$out/VERSION"
touch "$out/done"
info "host kernel ready: $out ($pkg $pver)"
echo "$out"
