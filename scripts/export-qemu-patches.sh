#!/usr/bin/env bash
# The way back from `make series`: after editing the commits of the git
# tree it made (build/series/qemu-src, branch "all": the tb patches, the
# fork-only ones, then the fixes; e.g. `git rebase -i` there), write them
# back into this repository:
#   - patches/qemu/NNNN-*.patch: each commit as git format-patch, without
#     the fork's own files (files under the overlay directories that
#     Debian's source does not have);
#   - those files, as the branch's last commit has them, copied back;
#   - patches/qemu/series: the patches in order, each followed by the
#     fork's files its commit adds or changes.
# Then `make qemu-tree` and `make series` check the result.
# Usage: export-qemu-patches.sh BUILD_DIR [BRANCH]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

build=$1
branch=${2:-all}
top=$(cd "$(dirname "$0")/.." && pwd)
tree="$build/series/qemu-src"
pristine="$build/qemu-pristine"
[ -d "$tree/.git" ] || die "no $tree: run make series first"
base=$(git -C "$tree" rev-list --max-parents=0 "$branch")

# Is PATH one of the fork's own files (overlay directory, not upstream)?
fork_file() {
    local d
    [ ! -e "$pristine/$1" ] || return 1
    for d in $TBFORK_OVERLAY; do
        case "$1" in "$d"/*) return 0;; esac
    done
    return 1
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The series file's header comment stays.
sed -n '/^#/p' "$top/patches/qemu/series" > "$out/series"
echo >> "$out/series"
excludes=()
lines=()
for c in $(git -C "$tree" rev-list --reverse "$base..$branch"); do
    own=
    for f in $(git -C "$tree" diff-tree --no-commit-id --name-only -r "$c"); do
        if fork_file "$f"; then
            own="$own $f"
            excludes+=(":(exclude)$f")
        fi
    done
    # A directory of data files is named as such.
    lines+=("$(for f in $own; do echo " $f"; done |
               sed 's|^ \(tests/functional/data/[^/]*/\).*| \1|' |
               awk '!seen[$0]++' | tr -d '\n')")
done
# One format-patch for the range: numbered [PATCH n/N], the fork's own
# files left out (each belongs to one commit, so excluding them all is
# the same as per commit).
git -C "$tree" format-patch -q --no-signature --zero-commit \
    --filename-max-length=72 -o "$out" "$base..$branch" -- . "${excludes[@]}"
n=0
for p in "$out"/0*.patch; do
    echo "$(basename "$p")${lines[$n]}" >> "$out/series"
    n=$((n + 1))
done
[ "$n" = "${#lines[@]}" ] ||
    die "format-patch wrote $n patches for ${#lines[@]} commits"
for f in $(for l in "${lines[@]}"; do echo $l; done); do
    [ -d "$tree/$f" ] && continue
    mkdir -p "$top/$(dirname "$f")"
    git -C "$tree" show "$branch:$f" > "$top/$f"
done
rm -f "$top"/patches/qemu/0*.patch
cp "$out"/0*.patch "$top/patches/qemu/"
cp "$out/series" "$top/patches/qemu/series"
info "exported $n patches from $tree ($branch) to patches/qemu"
