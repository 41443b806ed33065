#!/usr/bin/env bash
# Write the fork as upstream-style patch series (build/series):
#   tb/      the timebase migration series, with its cover letter
#   fixes/   the upstream bug fixes (patches with a Fixes: tag or
#            Cc: qemu-stable), apart
#   fork/    what only the fork needs (patches marked "Fork only:"),
#            on top of tb/
# generated from a git tree of Debian's pristine QEMU
# (build/series/qemu-src, branches "tb", "fork" and "fixes"): each patch of
# patches/qemu/series applied with `git am`, the fork's own files of the
# same change (named after it in the series file) added to its commit.
# Then checks that:
#   - every one of the fork's files belongs to exactly one patch;
#   - the three together give exactly the fork's tree (build/qemu-src);
#   - every patch of tb/ and fixes/ passes QEMU's scripts/checkpatch.pl
#     with no error and no warning (fork/: no error; its binary test
#     streams cannot carry an SPDX line);
#   - with --build: every prefix of the series builds (incrementally,
#     in build/series/qemu-native, QEMU's warnings as errors).
# Usage: make-series.sh BUILD_DIR [--build]
set -euo pipefail
. "$(dirname "$0")/lib.sh"

build=$1
do_build=${2:-}
top=$(cd "$(dirname "$0")/.." && pwd)
pristine="$build/qemu-pristine"
out="$build/series"
tree="$out/qemu-src"
series="$top/patches/qemu/series"
ver=$(cat "$pristine/.version")
[ -d "$build/qemu-src" ] || die "no fork tree in $build/qemu-src: run make first"

git_() { git -C "$tree" -c user.name="qemu-tb-fork developers" \
             -c user.email=devel@qemu-tb-fork.invalid "$@"; }

step "series: git tree of Debian qemu $ver ($tree)"
rm -rf "$out"
mkdir -p "$out"
# roms/ (firmware sources, 269 MB) is neither patched nor built here
rsync -a --exclude=/roms --exclude=/.version "$pristine/" "$tree/"
git_ init -q -b base
git_ add -A
git_ commit -q -m "Debian qemu $ver (dpkg-source -x, Debian's patches applied)"
base=$(git_ rev-parse HEAD)
git_ branch tb
git_ branch fixes
fork_started=

# Apply each patch to its branch, with the fork's files of that change.
: > "$out/assigned"
while read -r p files; do
    case "$p" in ''|'#'*) continue;; esac
    if grep -qE '^(Fixes: |Cc: qemu-stable@nongnu.org)' "$top/patches/qemu/$p"; then
        branch=fixes
    elif grep -q '^Fork only:' "$top/patches/qemu/$p"; then
        branch=fork
        # tb's patches come first in the series; fork/ builds on them
        [ -n "$fork_started" ] || git_ branch fork tb
        fork_started=1
    else
        [ -z "$fork_started" ] ||
            die "series: $p (upstream) after a fork-only patch"
        branch=tb
    fi
    git_ checkout -q "$branch"
    git_ am -q --whitespace=nowarn "$top/patches/qemu/$p" ||
        die "git am $p failed on branch $branch"
    for f in $files; do
        [ -e "$top/$f" ] || die "series: $p names $f, which does not exist"
        mkdir -p "$tree/$(dirname "$f")"
        cp -a "$top/$f" "$tree/$(dirname "$f")/"
        git_ add "$f"
        (cd "$top" && find "$f" -type f) >> "$out/assigned"
    done
    if [ -n "$files" ]; then
        git_ commit -q --amend --no-edit
    fi
    info "$branch: $(git_ log -1 --format=%s)"
done < "$series"

sort "$out/assigned" | uniq -d > "$out/twice"
[ ! -s "$out/twice" ] ||
    die "series: files named by two patches: $(tr '\n' ' ' < "$out/twice")"
unassigned=$(comm -23 <(overlay_files "$top") <(sort "$out/assigned"))
[ -z "$unassigned" ] ||
    die "series: the fork's files in no patch: $(echo $unassigned)"
info "every one of the fork's $(overlay_files "$top" | wc -l) files is in one patch"

# The three together are the fork's tree.
[ -n "$fork_started" ] || git_ branch fork tb
git_ checkout -q -b all fork
git_ cherry-pick "$base..fixes" >/dev/null ||
    die "series: the fixes do not apply on top of the timebase series"
# QEMU's configure writes tests/qemu-iotests/scratch into the source tree
# (tests/qemu-iotests/meson.build lists the iotests with `check -n`, which
# creates its TEST_DIR), and Python the tests' __pycache__ unless told
# not to: products of configuring and testing, not part of the tree.
rc=0
diff -r -q -x .git -x .tbfork-inputs -x roms -x __pycache__ \
    "$tree" "$build/qemu-src" > "$out/tree.diff.all" || rc=$?
[ "$rc" -le 1 ] || die "series: comparing the trees failed (diff exit $rc)"
grep -v -E '^Only in [^ ]*/tests/qemu-iotests: scratch$' \
    "$out/tree.diff.all" > "$out/tree.diff" || [ $? = 1 ]
if [ -s "$out/tree.diff" ]; then
    cat "$out/tree.diff" >&2
    die "series: tb + fork + fixes differ from the fork's tree ($build/qemu-src)"
fi
info "tb + fork + fixes = the fork's tree"

# format-patch, with the cover letters of patches/qemu/cover-*.txt
write_series() {
    local name=$1 from=$2 branch=$3 cover="$top/patches/qemu/cover-$1.txt"
    local dir="$out/$name" subject n
    git_ format-patch -q --cover-letter --thread=shallow --no-signature \
        --zero-commit -o "$dir" "$from..$branch"
    subject=$(head -1 "$cover")
    n=$(git_ rev-list --count "$from..$branch")
    /usr/bin/python3 - "$dir/0000-cover-letter.patch" "$cover" <<'EOF'
import sys
letter, cover = sys.argv[1], sys.argv[2]
text = open(letter).read()
lines = open(cover).read().split('\n')
subject, blurb = lines[0], '\n'.join(lines[2:]).rstrip() + '\n'
assert '*** SUBJECT HERE ***' in text and '*** BLURB HERE ***' in text
text = text.replace('*** SUBJECT HERE ***', subject)
text = text.replace('*** BLURB HERE ***', blurb)
open(letter, 'w').write(text)
EOF
    info "$dir: $n patches and a cover letter (\"$subject\")"
}
write_series tb "$base" tb
write_series fixes "$base" fixes
write_series fork tb fork

# What was written applies with git am to Debian's pristine tree, and
# gives the branches' trees.
am_check() {
    local name=$1 from=$2 branch=$3
    git_ checkout -q -B "am-$name" "$from"
    git_ am -q --whitespace=nowarn $(ls "$out/$name"/0*.patch |
                                     grep -v 0000-cover-letter) ||
        die "series: $out/$name does not apply with git am"
    git_ diff --quiet "$branch" "am-$name" ||
        die "series: $out/$name applied gives another tree than $branch"
}
am_check tb "$base" tb
am_check fork am-tb fork
am_check fixes "$base" fixes
git_ checkout -q all
info "each series applies with git am (fork/ on tb/) and gives its branch"

step "series: QEMU's checkpatch on every patch"
bad=0
for f in "$out"/tb/0*.patch "$out"/fixes/0*.patch "$out"/fork/0*.patch; do
    case "$f" in */0000-cover-letter.patch) continue;; esac
    (cd "$tree" && perl scripts/checkpatch.pl -q "$f") > "$f.checkpatch" 2>&1
    # -q prints nothing for a clean patch; fork/ may have warnings
    case "$f" in
    */fork/*) grep -q '^ERROR' "$f.checkpatch" || continue ;;
    *) [ -s "$f.checkpatch" ] || continue ;;
    esac
    warn "checkpatch: $(basename "$f")"
    sed 's/^/    /' "$f.checkpatch" >&2
    bad=1
done
[ "$bad" = 0 ] || die "series: checkpatch found problems"
info "checkpatch: tb/ and fixes/ clean, fork/ no error"

if [ "$do_build" = --build ]; then
    # Configured as the fork's native build; ccache (its base directory
    # is $build) shares the objects whose sources did not change.
    args=$(cat "$build/qemu-native/.tbfork-args")
    step "series: configure $out/qemu-native"
    mkdir -p "$out/qemu-native"
    (cd "$out/qemu-native" && "$tree/configure" $args > configure.log 2>&1) ||
        die "series: configure failed ($out/qemu-native/configure.log)"
    for range in "$base..tb" "tb..fork" "$base..fixes"; do
        branch=${range#*..}
        for c in $(git_ rev-list --reverse "$range"); do
            git_ checkout -q "$c"
            targets=qemu-system-ppc64
            [ ! -e "$tree/tests/unit/test-ppc-tb-calc.c" ] ||
                targets="$targets tests/unit/test-ppc-tb-calc"
            bash "$top/scripts/build-qemu.sh" \
                "$branch $(git_ rev-list --count "$base..$c"): $(git_ log -1 --format=%s "$c")" \
                "$out/qemu-native" $targets
        done
    done
    git_ checkout -q all
    info "every prefix of the series builds"
fi
