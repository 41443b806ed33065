#!/usr/bin/env bash
# Guest artifacts, fetched or built by the project and cached under
# $TBFORK_CACHE/guest with their sha256 in $TBFORK_CACHE/SHA256SUMS:
#   vmlinux          Debian's ppc64el kernel (powerpc64le flavour)
#   modules/         its kvm.ko and kvm-hv.ko (for the KVM-HV hosts)
#   busybox          busybox-static:ppc64el
#   guest-initrd.gz  busybox + tbprobe + an init that runs the probe
# and a small manifest (guest/VERSIONS) naming what was used.
# Usage: guest-artifacts.sh TBPROBE_BINARY
# Prints nothing on stdout; the artifacts are in $TBFORK_CACHE/guest.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

out="$TBFORK_CACHE/guest"
probe=$1
top=$(cd "$(dirname "$0")/.." && pwd)
debs="$TBFORK_CACHE/debs-ppc64el"
mkdir -p "$out" "$debs"

# Download one ppc64el deb (newest the indexes know) into the cache and
# print its path. The kernel comes through the meta-package, so the
# current ABI is used; the manifest records which.
fetch_deb() {
    local pkg=$1 ver f
    ver=$(apt-cache policy "$pkg:ppc64el" | sed -n 's/^  Candidate: //p')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || {
        apt_update
        ver=$(apt-cache policy "$pkg:ppc64el" | sed -n 's/^  Candidate: //p')
    }
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no $pkg:ppc64el in apt"
    f=$(ls "$debs/${pkg}_"*"${ver#*:}_ppc64el.deb" 2>/dev/null | head -1 || true)
    if [ -z "$f" ]; then
        step "downloading $pkg:ppc64el $ver"
        (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root \
            "$pkg:ppc64el=$ver" >/dev/null 2>&1) ||
            die "apt-get download $pkg:ppc64el=$ver failed"
        f=$(ls "$debs/${pkg}_"*"${ver#*:}_ppc64el.deb" | head -1)
        record_sum "$f"
    else
        check_sum "$f"
    fi
    echo "$f"
}

kpkg=$(apt-cache depends linux-image-powerpc64le:ppc64el 2>/dev/null |
       sed -n 's/^  Depends: \(linux-image-[^:]*\).*/\1/p' | head -1)
[ -n "$kpkg" ] || { apt_update;
    kpkg=$(apt-cache depends linux-image-powerpc64le:ppc64el |
           sed -n 's/^  Depends: \(linux-image-[^:]*\).*/\1/p' | head -1); }
[ -n "$kpkg" ] || die "cannot resolve linux-image-powerpc64le:ppc64el"
kdeb=$(fetch_deb "$kpkg")
bdeb=$(fetch_deb busybox-static)

# Modules the KVM-HV hosts load: kvm-hv, and virtio-serial and
# virtio-net for the harness's control ports and the hosts' network.
host_modules="kvm kvm-hv virtio virtio_ring virtio_pci_modern_dev
    virtio_pci_legacy_dev virtio_pci virtio_console failover net_failover
    virtio_net"

manifest="$(basename "$kdeb")
modules $(echo $host_modules)
$(basename "$bdeb")
tbprobe $(sha256sum < "$probe" | cut -c1-16)
init $(sha256sum < "$top/tests/guest/init" | cut -c1-16)"
if [ -f "$out/VERSIONS" ] && [ "$(cat "$out/VERSIONS")" = "$manifest" ] &&
   [ -f "$out/guest-initrd.gz" ]; then
    info "guest artifacts up to date ($out)"
    exit 0
fi

# Not up to date any more until everything below is rebuilt.
rm -f "$out/VERSIONS"
step "extracting kernel and modules from $(basename "$kdeb")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
dpkg-deb -x "$kdeb" "$tmp/k"
cp "$tmp"/k/boot/vmlinux-* "$out/vmlinux"
rm -rf "$out/modules"
mkdir -p "$out/modules"
for m in $host_modules; do
    f=$(find "$tmp/k/lib/modules" -name "$m.ko")
    [ -n "$f" ] || die "no $m module in $kpkg"
    cp "$f" "$out/modules/"
done

step "extracting busybox from $(basename "$bdeb")"
dpkg-deb -x "$bdeb" "$tmp/b"
cp "$tmp/b/bin/busybox" "$out/busybox"

step "building guest initramfs (busybox + tbprobe)"
r="$tmp/root"
mkdir -p "$r"/{bin,sbin,proc,sys,dev,tmp}
cp "$out/busybox" "$r/bin/busybox"
for a in sh mount cat echo sleep poweroff mkdir ls dmesg; do
    ln -s busybox "$r/bin/$a"
done
cp "$probe" "$r/bin/tbprobe"
cp "$top/tests/guest/init" "$r/init"
chmod +x "$r/init" "$r/bin/tbprobe"
(cd "$r" && find . | sort | cpio -o -H newc --quiet -R 0:0) |
    gzip -9n > "$out/guest-initrd.gz"
for f in vmlinux busybox guest-initrd.gz; do record_sum "$out/$f"; done
echo "$manifest" > "$out/VERSIONS"
info "guest artifacts ready in $out:"
sed 's/^/      /' "$out/VERSIONS" >&2
