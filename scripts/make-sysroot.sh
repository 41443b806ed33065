#!/usr/bin/env bash
# Build a ppc64le sysroot for the static cross build of QEMU from
# Debian's ppc64el -dev debs. Multiarch apt installs of these can fail on
# version skew with the host, so we `apt-get download` them and extract
# them with dpkg-deb; libc comes from the cross toolchain
# (libc6-dev-ppc64el-cross). Also writes a pkg-config wrapper.
# With FROM_SYSROOT, a copy of that one instead (same files, its own
# paths in the links and the wrapper): stock QEMU's static build gets the
# fork's sysroot at its own relative path.
# Usage: make-sysroot.sh SYSROOT_DIR [FROM_SYSROOT]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

sysroot=$1 from=${2:-}
DEBS="libglib2.0-dev libglib2.0-0 libpcre2-dev libpcre2-8-0 zlib1g-dev zlib1g
  libfdt-dev libfdt1 libffi-dev libffi8 libmount-dev libmount1 libblkid-dev
  libblkid1 libselinux1-dev libselinux1 libsepol-dev"
stamp="$sysroot/.debs"
want=$(echo $DEBS)

# pkg_config_wrapper: pkg-config for the sysroot (static link).
pkg_config_wrapper() {
    rm -f "$sysroot/pkg-config"
    cat > "$sysroot/pkg-config" <<EOF
#!/bin/sh
# pkg-config for the ppc64el sysroot (static link).
export PKG_CONFIG_SYSROOT_DIR="$sysroot"
export PKG_CONFIG_LIBDIR="$sysroot/usr/lib/powerpc64le-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig"
unset PKG_CONFIG_PATH
exec pkg-config "\$@"
EOF
    chmod +x "$sysroot/pkg-config"
}

if [ -n "$from" ]; then
    [ -f "$from/.debs" ] || die "no sysroot in $from"
    if [ -f "$stamp" ] && [ "$stamp" -nt "$from/.debs" ]; then
        info "ppc64el sysroot up to date ($sysroot, a copy of $from)"
        exit 0
    fi
    step "copying the ppc64el sysroot $from to $sysroot"
    rm -rf "$sysroot"
    cp -a "$from" "$sysroot"
    # Links into the sysroot are absolute (below): into the copy.
    find "$sysroot" -type l | while read -r l; do
        t=$(readlink "$l")
        case "$t" in "$from"/*) ln -sfn "$sysroot${t#"$from"}" "$l";; esac
    done
    pkg_config_wrapper
    rm -f "$stamp"
    cp "$from/.debs" "$stamp"
    info "sysroot ready: $sysroot"
    exit 0
fi

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    info "ppc64el sysroot up to date ($sysroot)"
    exit 0
fi

step "building ppc64el sysroot from Debian debs"
debdir="$TBFORK_CACHE/debs-ppc64el"
mkdir -p "$debdir"
rm -rf "$sysroot"
mkdir -p "$sysroot"
for p in $DEBS; do
    (cd "$debdir" && apt-get download -q -o APT::Sandbox::User=root \
        "$p:ppc64el" >/dev/null 2>&1) ||
        die "apt-get download $p:ppc64el failed"
done
for d in "$debdir"/*.deb; do
    record_sum "$d"
    dpkg-deb -x "$d" "$sysroot"
done
# libc, crt files and kernel headers of the cross toolchain.
mkdir -p "$sysroot/usr"
cp -a /usr/powerpc64le-linux-gnu/include/. "$sysroot/usr/include/"
mkdir -p "$sysroot/usr/lib/powerpc64le-linux-gnu"
cp -a /usr/powerpc64le-linux-gnu/lib/. "$sysroot/usr/lib/powerpc64le-linux-gnu/"
# Absolute symlinks in the debs point into the host: make them relative.
find "$sysroot" -type l | while read -r l; do
    t=$(readlink "$l")
    case "$t" in /*) ln -sfn "$sysroot$t" "$l";; esac
done

pkg_config_wrapper
echo "$want" > "$stamp"
info "sysroot ready: $sysroot"
