# Shared helpers for the project's shell glue (sourced, not run).

# Everything downloaded or built from outside lives under one directory.
: "${TBFORK_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/qemu-tb-fork}"
export TBFORK_CACHE

_t0=$(date +%s)
step() { printf '==> [%4ss] %s\n' "$(( $(date +%s) - _t0 ))" "$*" >&2; }
info() { printf '    %s\n' "$*" >&2; }
warn() { printf '\n!!! WARNING: %s\n\n' "$*" >&2; }
die() { printf '\n*** ERROR (%s): %s\n' "${0##*/}" "$*" >&2; exit 1; }

# apt-get update, tolerating a mirror that is mid-sync for one index:
# retry, then go on if only some indexes failed (the packages we need
# are checked afterwards anyway).
apt_update() {
    local i
    for i in 1 2 3; do
        step "apt-get update (try $i)"
        if apt-get update -q >/tmp/tbfork-apt-update.log 2>&1; then
            return 0
        fi
        sleep $((i * 5))
    done
    grep -E '^(E|W):' /tmp/tbfork-apt-update.log >&2 || true
    warn "apt-get update reported errors; continuing with the indexes it got"
}

# Record a file's sha256 in the cache's manifest (one line per path).
record_sum() {
    local f=$1 sums="$TBFORK_CACHE/SHA256SUMS" rel
    rel=${f#"$TBFORK_CACHE"/}
    mkdir -p "$TBFORK_CACHE"
    touch "$sums"
    grep -v "  $rel\$" "$sums" > "$sums.tmp" || true
    (cd "$TBFORK_CACHE" && sha256sum "$rel") >> "$sums.tmp"
    sort -k2 "$sums.tmp" > "$sums"
    rm -f "$sums.tmp"
}

# Verify a cached file against the manifest; fails if it changed.
check_sum() {
    local f=$1 rel
    rel=${f#"$TBFORK_CACHE"/}
    (cd "$TBFORK_CACHE" && grep "  $rel\$" SHA256SUMS | sha256sum -c --quiet -) ||
        die "checksum mismatch for cached $rel (delete it to refetch)"
}

# The fork's own directories, laid over the QEMU tree as QEMU would have
# them (prepare-qemu-tree.sh); everything else there is upstream's.
TBFORK_OVERLAY="hw target migration include qapi docs configs tests/unit tests/functional"

# overlay_files TOP: the fork's own files under TOP, sorted, relative.
overlay_files() {
    local d
    for d in $TBFORK_OVERLAY; do
        [ -d "$1/$d" ] && (cd "$1" && find "$d" -type f)
    done | sort
}
