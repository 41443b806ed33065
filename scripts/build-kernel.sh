#!/usr/bin/env bash
# Apply kernel-patches/series to Debian's linux-source-VERSION, check each
# patch with the tree's own checkpatch.pl --strict (only the missing
# Signed-off-by is tolerated), and unless --check-only cross-build a
# ppc64le powernv vmlinux from kernel-patches/powernv-kvm.config on top of
# allnoconfig (from 6.8 on, with pseries-l1.config: it boots as a pseries
# L1 too). The vmlinux is cached under $TBFORK_CACHE/kernel by the hash
# of source version + series + configuration. Prints the vmlinux path.
# Usage: build-kernel.sh VERSION BUILD_DIR [--check-only]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

ver=$1 build=$2 mode=${3:-build}
top=$(cd "$(dirname "$0")/.." && pwd)
kp="$top/kernel-patches"
pkg="linux-source-$ver"

# The source package: the newest the archive has (bookworm for 6.1,
# bookworm-security/backports for 6.12).
debver=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^  Candidate: //p')
if [ -z "$debver" ] || [ "$debver" = "(none)" ]; then
    apt_update
    debver=$(apt-cache policy "$pkg" | sed -n 's/^  Candidate: //p')
fi
[ -n "$debver" ] && [ "$debver" != "(none)" ] || die "no $pkg in the apt indexes"
debs="$TBFORK_CACHE/linux"
deb="$debs/${pkg}_${debver}_all.deb"
mkdir -p "$debs"
# apt verifies the download against the archive's signed indexes; the
# manifest then guards the cached copy.
if [ -f "$deb" ] && ! grep -q "  linux/$(basename "$deb")\$" \
        "$TBFORK_CACHE/SHA256SUMS" 2>/dev/null; then
    rm -f "$deb"        # not fetched by this script: fetch it again
fi
if [ ! -f "$deb" ]; then
    step "fetching $pkg $debver"
    (cd "$debs" && apt-get download -q -o APT::Sandbox::User=root \
        "$pkg=$debver" >&2) || die "apt-get download $pkg=$debver failed"
    record_sum "$deb"
else
    check_sum "$deb"
fi

# Is kernel version $ver at least $1?
at_least() {
    [ "$(printf '%s\n%s\n' "$1" "$ver" | sort -V | head -1)" = "$1" ]
}
# The series' patches for this version (a second word: the first
# version a patch is for), and the configuration fragments.
patches=()
while read -r p since; do
    case $p in ''|'#'*) continue;; esac
    if [ -z "$since" ] || at_least "$since"; then
        patches+=("$p")
    fi
done < "$kp/series"
[ ${#patches[@]} -gt 0 ] || die "no patches in $kp/series"
frags=("$kp/powernv-kvm.config")
if at_least 6.8; then
    frags+=("$kp/pseries-l1.config")
fi
key=$( { echo "$pkg $debver"; for p in "${patches[@]}"; do cat "$kp/$p"; done
         cat "${frags[@]}"; } | sha256sum | cut -c1-16)
out="$TBFORK_CACHE/kernel/$ver-$key"

src="$build/kernel/$pkg"
step "unpacking $pkg $debver into $src"
rm -rf "$src"
mkdir -p "$build/kernel"
dpkg-deb --fsys-tarfile "$deb" | tar -xO "./usr/src/$pkg.tar.xz" |
    tar -xJ -C "$build/kernel" || die "unpacking $pkg failed"

step "applying kernel-patches/series to $pkg"
for p in "${patches[@]}"; do
    (cd "$src" && patch -p1 --fuzz=0 --no-backup-if-mismatch -s \
        < "$kp/$p") || die "$p does not apply to $pkg $debver"
    info "applied $p"
    # checkpatch from the tree itself; the sign-off is left to the
    # submitter.
    report=$(cd "$src" && perl scripts/checkpatch.pl --strict --no-signoff \
             "$kp/$p" 2>&1) || {
        echo "$report" >&2
        die "checkpatch --strict: $p"
    }
done

if [ "$mode" = --check-only ]; then
    exit 0
fi
if [ -f "$out/vmlinux" ]; then
    check_sum "$out/vmlinux"
    info "patched $pkg kernel cached: $out/vmlinux"
    echo "$out/vmlinux"
    exit 0
fi

obj="$build/kernel/obj-$ver"
rm -rf "$obj"
mkdir -p "$obj"
kmake() {
    make -C "$src" O="$obj" ARCH=powerpc \
        CROSS_COMPILE=powerpc64le-linux-gnu- \
        CC="ccache powerpc64le-linux-gnu-gcc" "$@"
}
step "configuring $pkg: allnoconfig + ${frags[*]##*/}"
kmake -s allnoconfig >/dev/null || die "allnoconfig failed"
(cd "$src" && ARCH=powerpc scripts/kconfig/merge_config.sh -m -O "$obj" \
    "$obj/.config" "${frags[@]}" > "$obj/merge.log" 2>&1) ||
    die "merge_config failed (see $obj/merge.log)"
kmake -s olddefconfig >/dev/null || die "olddefconfig failed"
# Every =y of the fragments must have survived the dependency checks.
while read -r line; do
    case $line in
    CONFIG_*=y)
        grep -qx "$line" "$obj/.config" ||
            die "$line did not make it into the configuration"
        ;;
    esac
done < <(cat "${frags[@]}")

step "building $pkg vmlinux (ppc64le powernv, -j$(nproc))"
s=$(date +%s)
kmake -j"$(nproc)" vmlinux > "$obj/build.log" 2>&1 || {
    grep -E 'error|Error' "$obj/build.log" | head -20 >&2
    die "kernel build failed (see $obj/build.log)"
}
info "built in $(( $(date +%s) - s ))s"
mkdir -p "$out"
cp "$obj/vmlinux" "$out/vmlinux"
record_sum "$out/vmlinux"
echo "$out/vmlinux"
