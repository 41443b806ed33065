#!/usr/bin/env bash
# Run the test tiers and print one closing line: "check: N passed, N failed".
#   unit        our standalone C tests (plain, ASan+UBSan) and the fuzzer
#   functional  QEMU functional tests (tests/functional/test_ppc64_tb_*.py)
#               run by QEMU's meson in the native build
#   kvm         tests/kvm/test_kvm_tb_migration.py: KVM-HV in emulated
#               POWER9/POWER8 hosts, the fork's and stock QEMU's static
#               ppc64le builds migrating KVM guests inside them
#   kernel      kernel-patches/ applied to Debian's 6.1 and 6.12 and
#               checkpatch-clean; 6.1 built and booted as the hosts'
#               kernel for tests/kvm/test_kvm_kernel_patches.py
# Usage: check.sh BUILD_DIR [TIER...]
set -uo pipefail
. "$(dirname "$0")/lib.sh"
build=$1
shift
tiers=${*:-unit functional kvm kernel}
passed=0 failed=0 skipped=0

# Count results from meson test's console lines: a TAP test counts its
# subtests, any other test counts once.
count() {
    local log=$1 p f s
    read -r p f s < <(/usr/bin/python3 - "$log" "$2" <<'EOF'
import re, sys
p = f = s = 0
seen = set()
# A failed TAP test: count its "ok" and "not ok" subtests from meson's
# text log.
ok = not_ok = 0
if len(sys.argv) > 2:
    for line in open(sys.argv[2]):
        ok += bool(re.match(r'ok \d+', line))
        not_ok += bool(re.match(r'not ok \d+', line))
for line in open(sys.argv[1]):
    if line.startswith('Summary of Failures'):
        break
    m = re.match(r'\s*\d+/\d+ .*? (OK|EXPECTEDFAIL|SKIP|FAIL|ERROR|TIMEOUT|'
                 r'UNEXPECTEDPASS)\s+[\d.]+s(.*)', line)
    if not m:
        continue
    res, rest = m.group(1), m.group(2)
    name = line.split(res)[0].strip()
    if name in seen:
        continue
    seen.add(name)
    sub = re.search(r'(\d+) subtests passed', rest)
    if res in ('OK', 'EXPECTEDFAIL'):
        p += int(sub.group(1)) if sub else 1
    elif res == 'SKIP':
        s += 1
    else:
        f += max(1, not_ok)
        p += ok
print(p, f, s)
EOF
    )
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
    info "$p passed, $f failed, $s skipped"
}

top=$(cd "$(dirname "$0")/.." && pwd)

# The KVM-HV host initramfs: the fork's and stock's static QEMUs. Built
# once per run (the kvm and kernel tiers share it).
kvm_initrd_built=
kvm_initrd() {
    [ -z "$kvm_initrd_built" ] || return 0
    kvm_initrd_built=1
    mkdir -p "$build/kvm"
    bash "$top/scripts/kvm-host-initrd.sh" \
        "$build/qemu-cross/qemu-system-ppc64" "$top/tests/kvm/host-init" \
        "$build/kvm/host.gz" "$build/stock-cross/qemu-system-ppc64" ||
        die "host initramfs failed"
}

# kvm_tap MODULE HOST_KERNEL NAME: run a tests/kvm module (TAP on
# stdout), print its results table, add to the counts.
kvm_tap() {
    local mod=$1 kernel=$2 name=$3 dir="$build/kvm/$3" p f s
    rm -rf "$dir"
    mkdir -p "$dir"
    (cd "$top/tests/kvm" &&
     TBFORK_OUTER_QEMU="$build/qemu-native/qemu-system-ppc64" \
     TBFORK_HOST_KERNEL="$kernel" \
     TBFORK_HOST_INITRD="$build/kvm/host.gz" \
     TBFORK_KVM_WORKDIR="$dir/work" \
     TBFORK_KVM_RESULTS="$dir/results.json" \
     PYTHONPATH="$build/qemu-src/python:$top/tests/functional" \
     timeout 3600 /usr/bin/python3 "$mod.py") \
        > "$dir/check.log" 2> "$dir/check.err"
    # TAP: "ok N test.id", "ok N test.id # SKIP why", "not ok N test.id"
    sed 's/^/    /' "$dir/check.log"
    s=$(grep -cE '^ok [0-9]+ .* # SKIP' "$dir/check.log")
    p=$(( $(grep -cE '^ok [0-9]+ ' "$dir/check.log") - s ))
    f=$(grep -cE '^not ok [0-9]+ ' "$dir/check.log")
    [ "$p" -gt 0 ] || f=$((f + 1))
    if [ -f "$dir/results.json" ]; then
        /usr/bin/python3 "$top/tests/kvm/report.py" "$dir/results.json" \
            > "$dir/results.md"
        sed 's/^/    /' "$dir/results.md"
    fi
    [ "$f" = 0 ] || grep -E -A30 '^(FAIL|ERROR):' "$dir/check.err" |
        head -80 | sed 's/^/    /'
    info "$p passed, $f failed, $s skipped (logs: $dir/check.{log,err})"
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# The kernel tier's preparation (unpack, apply, checkpatch, a ~10 min
# build on CI's 2 cores) needs no test to have run: when other tiers run
# first, it starts now in the background at idle CPU priority, taking
# only the CPU time the tests leave (an emulated host's TCG keeps one
# core busy, the other mostly idle; SCHED_IDLE yields to them at once).
kernel_bg_dir="$build/kernel-bg"
kernel_bg_pid=
case " $tiers " in
*" kernel "*)
    if [ "$(echo $tiers)" != kernel ]; then
        rm -rf "$kernel_bg_dir"
        mkdir -p "$kernel_bg_dir"
        step "kernel tier's kernel builds in the background (log: $kernel_bg_dir/prep.log)"
        (
            for ver in 6.12 6.1; do
                mode=; [ "$ver" = 6.1 ] || mode=--check-only
                chrt --idle 0 nice -n 19 \
                    bash "$top/scripts/build-kernel.sh" "$ver" "$build" $mode \
                    > "$kernel_bg_dir/$ver.out" 2>> "$kernel_bg_dir/prep.log"
                echo $? > "$kernel_bg_dir/$ver.rc"
            done
        ) &
        kernel_bg_pid=$!
    fi
    ;;
esac

# kernel_prep VER [--check-only]: build-kernel.sh's output and status,
# from the background job when one ran (its log printed here).
kernel_prep() {
    local ver=$1
    if [ -z "$kernel_bg_pid" ]; then
        bash "$top/scripts/build-kernel.sh" "$ver" "$build" ${2:-}
        return
    fi
    if kill -0 "$kernel_bg_pid" 2>/dev/null; then
        info "waiting for the background kernel build"
        wait "$kernel_bg_pid"
    fi
    if [ "$ver" = 6.12 ]; then
        sed 's/^/  | /' "$kernel_bg_dir/prep.log" >&2
    fi
    cat "$kernel_bg_dir/$ver.out"
    return "$(cat "$kernel_bg_dir/$ver.rc" 2>/dev/null || echo 1)"
}

for tier in $tiers; do
    case $tier in
    unit)
        step "tier unit: arithmetic unit tests (plain, ASan+UBSan), fuzzer"
        meson test -C "$build/tools" --print-errorlogs --no-rebuild \
            > "$build/tools/check.log" 2>&1
        grep -E '^ *[0-9]+/[0-9]+ ' "$build/tools/check.log" | sed 's/^/    /'
        count "$build/tools/check.log" "$build/tools/meson-logs/testlog.txt"
        ;;
    functional)
        step "tier functional: migration tests between QEMU processes (TCG)"
        tests=$(cd "$build/qemu-src/tests/functional" &&
                ls test_ppc64_tb_*.py | sed 's/^test_\(.*\)\.py$/func-ppc64-\1/')
        # Stock QEMU 7.2 for the compatibility tests (10.0.2 is installed
        # by setup-host.sh).
        qemu72=$(bash "$(dirname "$0")/fetch-stock-qemu72.sh") ||
            die "fetching stock QEMU 7.2 failed"
        TBFORK_GUEST="$TBFORK_CACHE/guest" TBFORK_QEMU72="$qemu72" \
            meson test -C "$build/qemu-native" --setup thorough --print-errorlogs \
            --no-rebuild $tests > "$build/qemu-native/check.log" 2>&1
        grep -E '^ *[0-9]+/[0-9]+ ' "$build/qemu-native/check.log" |
            sed 's/^/    /'
        count "$build/qemu-native/check.log" \
            "$build/qemu-native/meson-logs/testlog-thorough.txt"
        # Failed subtests and their tracebacks (--print-errorlogs put
        # them in the log), so that CI's output names what failed.
        grep -E '^not ok ' \
            "$build/qemu-native/meson-logs/testlog-thorough.txt" |
            sed 's/^/    /'
        awk '/^stderr:/ { p = 1; next } /^\(test program exited/ { p = 0 }
             p' "$build/qemu-native/check.log" | head -150 | sed 's/^/    /'
        ;;
    kvm)
        step "tier kvm: KVM-HV harness (emulated POWER hosts, fork and stock)"
        kvm_initrd
        kvm_tap test_kvm_tb_migration "$TBFORK_CACHE/guest/vmlinux" kvm
        ;;
    kernel)
        step "tier kernel: kernel-patches/ on Debian's 6.1 and 6.12, booted"
        # 6.12: apply and checkpatch; 6.1: the same, then build (cached).
        if kernel_prep 6.12 --check-only; then
            info "kernel-patches apply to 6.12 and pass checkpatch --strict"
            passed=$((passed + 1))
        else
            warn "kernel-patches: 6.12 failed"
            failed=$((failed + 1))
        fi
        if vmlinux=$(kernel_prep 6.1); then
            info "kernel-patches apply to 6.1, pass checkpatch, build"
            passed=$((passed + 1))
            kvm_initrd
            kvm_tap test_kvm_kernel_patches "$vmlinux" kernel
        else
            warn "kernel-patches: 6.1 failed"
            failed=$((failed + 1))
        fi
        ;;
    *)
        die "unknown tier $tier"
        ;;
    esac
done
[ "$failed" = 0 ] || warn "some tests failed: see the logs named above"
echo "check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
