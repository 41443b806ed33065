#!/usr/bin/env bash
# KVM smoke test: boot an emulated POWER9 host (powernv9, TCG, the fork
# as the outer emulator) running Debian's kernel with kvm-hv, live-migrate
# a KVM pseries guest running the TB probe between two of the fork's
# static ppc64le QEMUs inside it, and check what the destination's
# `info timebase` and the probe report. Prints "kvm-smoke: N passed, N
# failed".
# Usage: smoke.sh OUTER_QEMU HOST_INITRD LOG
set -uo pipefail
outer=$1 initrd=$2 log=$3
kernel="$TBFORK_CACHE/guest/vmlinux"
passed=0 failed=0

echo "==> booting emulated POWER9 KVM-HV host (powernv9, TCG); log: $log"
s=$(date +%s)
timeout 900 "$outer" -M powernv9 -cpu power9 -m 4G -smp 1 -nographic \
    -L /usr/share/qemu -kernel "$kernel" -initrd "$initrd" \
    -append "console=hvc0 quiet" > "$log" 2>&1
rc=$?
echo "    host ran for $(( $(date +%s) - s ))s (exit $rc)"

section() { sed -n "/^KVMHOST begin $1/,/^KVMHOST end $1/p" "$log" | tr -d '\r'; }
check() {
    local what=$1; shift
    if "$@"; then
        passed=$((passed + 1)); echo "    ok: $what"
    else
        failed=$((failed + 1)); echo "    FAILED: $what"
    fi
}
# grep -c, not -q: under pipefail an early exit would SIGPIPE the reader.
has() { [ "$(section "$1" | grep -c -- "$2")" -gt 0 ]; }
lacks() { [ "$(section "$1" | grep -c -- "$2")" -eq 0 ]; }

check "host finished (KVMHOST done)" grep -q '^KVMHOST done' "$log"
check "kvm-hv loaded in the emulated host" grep -q 'KVMHOST kvm-hv loaded' "$log"
check "migration completed" has src.mon 'Migration status: completed'
check "destination info timebase under KVM" \
    has dst.mon 'timebase: 512000000 Hz, kvm, policy downtime'
check "adjusted from the subsection" \
    has dst.mon 'last adjustment: migration (spapr/timebase-sync subsection)'
check "KVM_REG_PPC_TB_OFFSET set and read back" \
    has dst.mon 'KVM: requested offset'
check "requested offset equals the read-back one" bash -c \
    "sed -n \"/^KVMHOST begin dst.mon/,/^KVMHOST end/p\" '$log' |
     grep -qE 'KVM: requested offset (0x[0-9a-f]+), read back \\1,'"
check "the user pause gave the source a non-zero TB offset" \
    has src.mon 'reason: user-paused'
check "the destination programmed a non-zero offset" \
    lacks dst.mon 'KVM: requested offset 0x0000000000000000'
check "rounding residue within half a 2^24-tick granule" bash -c \
    "sed -n \"/^KVMHOST begin dst.mon/,/^KVMHOST end/p\" '$log' |
     awk '/rounding residue/ { for (i = 1; i <= NF; i++)
          if (\$i == \"residue\") r = \$(i + 1) }
          END { if (r == \"\") exit 1; if (r < 0) r = -r; exit !(r <= 8388608) }'"
check "probe running on the destination" has dst.log 'TBP sum'
check "no backwards TB step on the source" lacks src.log 'TBP back'
check "no backwards TB step on the destination" lacks dst.log 'TBP back'
section dst.mon | grep -E 'last adjustment|saved TB|measured|delta|KVM:' |
    sed 's/^/    /'
echo "kvm-smoke: $passed passed, $failed failed"
[ "$failed" = 0 ]
