#!/usr/bin/env bash
# Install everything this project needs on a Debian 12 (bookworm) host:
# apt sources (bookworm-backports, deb-src for bookworm and trixie, the
# ppc64el architecture for guest/sysroot debs) and the host packages.
# Idempotent: when every package is already installed it only checks.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

SOURCES=/etc/apt/sources.list.d/qemu-tb-fork.sources

# Host packages (bc and perl: the kernel build and checkpatch; python3-venv,
# -setuptools and -wheel: Avocado installed offline into a venv;
# mmdebstrap, arch-test, qemu-user-static, binfmt-support: the libvirt
# tier's Debian guest built for ppc64el here; python3-libvirt: its
# measurements). meson >= 1.5,
# pycotap and the stock QEMU we compare
# against come from bookworm-backports.
BPO_PKGS="meson python3-pycotap qemu-system-ppc qemu-system-data qemu-utils
  qemu-system-x86"
# libvirt 11.3, Debian's pairing for QEMU 10.0 (the libvirt tier): named
# per package, since -t bookworm-backports would pull systemd from there
# too. Without libvirt-daemon-system (systemd units, users): the tier
# starts its daemons itself. qemu-system-x86 satisfies driver-qemu's
# "qemu-kvm | qemu-system" without every architecture.
LIBVIRT_BPO_PKGS="libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients"
PKGS="build-essential ninja-build pkg-config ccache dpkg-dev rsync
  libglib2.0-dev libfdt-dev libpixman-1-dev zlib1g-dev libzstd-dev
  python3-venv python3-setuptools python3-wheel flex bison
  gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
  cpio xz-utils zstd file clang llvm libclang-rt-14-dev
  python3-matplotlib bc perl
  python3-libvirt mmdebstrap arch-test qemu-user-static binfmt-support
  iproute2 util-linux e2fsprogs"

want_sources() {
    cat <<'EOF'
# Written by qemu-tb-fork scripts/setup-host.sh
Types: deb deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates trixie trixie-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
}

missing_pkgs() {
    local p
    for p in $BPO_PKGS $LIBVIRT_BPO_PKGS $PKGS; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null |
            grep -q '^install ok installed' || echo "$p"
    done
}

need_update=0
if [ ! -f "$SOURCES" ] || ! want_sources | cmp -s - "$SOURCES"; then
    step "adding apt sources ($SOURCES)"
    want_sources > "$SOURCES"
    need_update=1
fi
if ! dpkg --print-foreign-architectures | grep -qx ppc64el; then
    step "adding dpkg architecture ppc64el (guest and sysroot debs)"
    dpkg --add-architecture ppc64el
    need_update=1
fi

missing=$(missing_pkgs)
# (Output captured first: grep -q under pipefail would SIGPIPE apt-cache.)
srcs=$(apt-cache showsrc qemu 2>/dev/null || true)
if [ -n "$missing" ] || [ "$need_update" = 1 ] ||
   ! grep -q '^Version: 1:10\.0\.' <<< "$srcs"; then
    apt_update
fi
missing=$(missing_pkgs)
if [ -n "$missing" ]; then
    step "installing host packages: $(echo $missing)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends -t bookworm-backports \
        $BPO_PKGS >/dev/null || die "apt-get install (backports) failed"
    apt-get install -y --no-install-recommends \
        $(printf '%s/bookworm-backports ' $LIBVIRT_BPO_PKGS) >/dev/null ||
        die "apt-get install (libvirt from backports) failed"
    apt-get install -y --no-install-recommends $PKGS >/dev/null ||
        die "apt-get install failed"
    missing=$(missing_pkgs)
    [ -z "$missing" ] || die "still missing after install: $missing"
fi
meson_ver=$(meson --version)
case "$meson_ver" in
    0.*|1.[0-4].*) die "meson $meson_ver is too old (need >= 1.5)";;
esac
info "host ready: meson $meson_ver, $(qemu-system-ppc64 --version | head -1)"
