#!/usr/bin/env bash
# Install Avocado 113.0 into a venv (the avocado tier's runner) and print
# its `avocado` path. From ../shared/deps/avocado-framework-113.0.tar.gz
# beside the repository when it is there (it installs offline: Avocado
# needs nothing beyond the standard library and setuptools), otherwise
# from PyPI (`pip install avocado-framework==113.0`). Exits 3 with the
# reason on stderr when the tarball is absent and PyPI unreachable, so
# that the tier skips; any other failure is an error.
# Usage: avocado-venv.sh VENV_DIR
set -euo pipefail
. "$(dirname "$0")/lib.sh"
venv=$1
version=113.0
tarball="$(cd "$(dirname "$0")/.." && pwd)/../shared/deps/avocado-framework-$version.tar.gz"

if [ -x "$venv/bin/avocado" ] &&
   [ "$("$venv/bin/avocado" --version 2>/dev/null)" = "Avocado $version" ]; then
    echo "$venv/bin/avocado"
    exit 0
fi

step "installing Avocado $version into $venv"
rm -rf "$venv"
# System site packages: setuptools and wheel (to build the sdist without
# network) come from Debian (scripts/setup-host.sh).
/usr/bin/python3 -m venv --system-site-packages "$venv" >&2 ||
    die "python3 -m venv $venv failed (python3-venv installed?)"
log="$venv/install.log"
if [ -f "$tarball" ]; then
    info "from $tarball (offline)"
    "$venv/bin/pip" install --no-index --no-build-isolation --no-deps \
        "$tarball" > "$log" 2>&1 ||
        { tail -20 "$log" >&2; die "installing $tarball failed (log: $log)"; }
else
    info "no $tarball: from PyPI"
    if ! "$venv/bin/pip" install --timeout 20 --retries 1 \
            "avocado-framework==$version" > "$log" 2>&1; then
        tail -3 "$log" >&2
        # Skip only when the index could not be reached; any other
        # error (a build failure, no such version) is a failure.
        grep -q -E 'NewConnectionError|ConnectTimeout|ReadTimeout|Name or service not known|Temporary failure in name resolution|Network is unreachable|ProxyError' "$log" ||
            die "pip install avocado-framework==$version failed (log: $log)"
        rm -rf "$venv"
        echo "Avocado $version: not in ../shared/deps and PyPI unreachable" \
             "(pip install avocado-framework==$version)" >&2
        exit 3
    fi
fi
[ "$("$venv/bin/avocado" --version)" = "Avocado $version" ] ||
    die "$venv/bin/avocado is not Avocado $version"
info "Avocado $version installed"
echo "$venv/bin/avocado"
