#!/usr/bin/env bash
# Lay out the fork's QEMU source tree:
#   1. unpack Debian's source package (with Debian's own patches) once,
#      into $BUILD/qemu-pristine (also used as "stock" QEMU; hard-linked
#      into $BUILD/stock/qemu-src for stock's static build);
#   2. copy it to a staging tree, lay our own files over it (they must be
#      new files: upstream files are changed only by the patch series)
#      and apply patches/qemu/series, failing on any hunk that does not
#      apply cleanly;
#   3. sync the staging tree into $BUILD/qemu-src by content, so files
#      that did not change keep their mtime and ninja rebuilds only what
#      really changed.
# Usage: prepare-qemu-tree.sh DSC BUILD_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dsc=$1
build=$2
top=$(cd "$(dirname "$0")/.." && pwd)

pristine="$build/qemu-pristine"
staging="$build/qemu-staging"
dest="$build/qemu-src"
ver=$(sed -n 's/^Version: //p' "$dsc")

if [ ! -f "$pristine/.version" ] || [ "$(cat "$pristine/.version")" != "$ver" ]; then
    step "unpacking Debian qemu $ver (dpkg-source -x, Debian's patches)"
    rm -rf "$pristine"
    dpkg-source -q -x "$dsc" "$pristine" >/dev/null ||
        die "dpkg-source -x $dsc failed"
    # dpkg-source leaves a copy of the orig tarball beside the tree.
    rm -f "$build"/qemu_*.orig.tar.*
    echo "$ver" > "$pristine/.version"
fi

# Stock QEMU's static build compiles from build/stock/qemu-src: the
# pristine tree hard-linked, so that it sits at the fork's relative path
# from its build directory (../qemu-src) and ccache serves it the fork's
# objects (configure). Nothing modifies a file of either tree in place
# (configure and meson only add files). A new pristine version also drops
# stock's build directory: the links keep the tarball's mtimes, so ninja
# could miss changed files.
stock_src="$build/stock/qemu-src"
if [ ! -f "$stock_src/.version" ] ||
   [ "$(cat "$stock_src/.version")" != "$ver" ]; then
    rm -rf "$stock_src" "$stock_src.tmp" "$build/stock/qemu-cross"
    mkdir -p "$build/stock"
    cp -al "$pristine" "$stock_src.tmp"
    mv "$stock_src.tmp" "$stock_src"
fi

inputs_hash() {
    {
        echo "$ver"
        (cd "$top" && overlay_files . | xargs -r sha256sum)
        (cd "$top/patches/qemu" &&
         sha256sum series $(sed -n 's/^\([^#][^ ]*\).*/\1/p' series))
    } | sha256sum | cut -d' ' -f1
}

want=$(inputs_hash)
if [ -f "$dest/.tbfork-inputs" ] && [ "$(cat "$dest/.tbfork-inputs")" = "$want" ]; then
    info "QEMU tree up to date ($dest)"
    exit 0
fi

step "laying our files over QEMU and applying patches/qemu/series"
rm -rf "$staging"
cp -a "$pristine" "$staging"
rm -f "$staging/.version"
for f in $(overlay_files "$top"); do
    [ -e "$pristine/$f" ] &&
        die "$f exists upstream: change upstream files only via patches/qemu"
    mkdir -p "$staging/$(dirname "$f")"
    cp "$top/$f" "$staging/$f"
done
n=0
# Each line: a patch, then the overlay files of the same change (used by
# `make series`, not here).
while read -r p _; do
    case "$p" in ''|'#'*) continue;; esac
    n=$((n + 1))
    info "applying $p"
    # patch(1), not git apply: inside this repository's work tree git
    # apply would silently skip paths outside the current directory.
    # --fuzz=0: a hunk whose context changed is an error, not a guess.
    (cd "$staging" && patch -p1 --fuzz=0 --forward --batch --quiet \
        --no-backup-if-mismatch -r - < "$top/patches/qemu/$p") ||
        die "patch $p does not apply cleanly to qemu $ver"
done < "$top/patches/qemu/series"
info "$n patches applied"

mkdir -p "$dest"
rsync -rlc --delete --exclude=/.tbfork-inputs "$staging/" "$dest/"
rm -rf "$staging"
echo "$want" > "$dest/.tbfork-inputs"
info "QEMU tree ready: $dest (qemu $ver + $n patches)"
