#!/usr/bin/env bash
# Run the test tiers and print one closing line: "check: N passed, N
# failed, N skipped", counted from each runner's JUnit or TAP output and
# exit status (scripts/count-results.py).
#   unit        the arithmetic's unit tests (QEMU's tests/unit, and our
#               ASan+UBSan build of them) and its fuzzer
#   build       the fork built without pseries (monitor stubs link);
#               make install's tree starts pseries without -L
#   series      make-series.sh --build: the upstream series generated,
#               checkpatch-clean, every prefix built (in the background at
#               idle priority while other tiers run, like the kernel's)
#   functional  QEMU functional tests (tests/functional/test_ppc64_tb_*.py)
#               run by QEMU's meson in the native build
#   avocado     the same functional tests run by Avocado 113.0 (installed
#               into build/avocado/venv by scripts/avocado-venv.sh), selected
#               by their tags (arch:ppc64, machine:pseries, migration)
#   kvm         tests/kvm/test_kvm_tb_migration.py: KVM-HV in emulated
#               POWER9/POWER8 hosts, the fork's and stock QEMU's static
#               ppc64le builds migrating KVM guests inside them
#   libvirt     tests/libvirt/test_libvirt_tb.py: two libvirt hosts in
#               namespaces drive a Debian guest on the installed fork and
#               on stock QEMU through every virsh operation that stops it
#   kernel      kernel-patches/ applied to Debian's 6.1 and 6.12 and
#               checkpatch-clean; 6.1 built and booted as the hosts'
#               kernel for tests/kvm/test_kvm_kernel_patches.py
# Usage: check.sh BUILD_DIR [TIER...]
set -uo pipefail
. "$(dirname "$0")/lib.sh"
build=$(cd "$1" && pwd) || die "no build directory $1"
shift
# The tests run from the fork's tree: no __pycache__ in it (make-series.sh
# compares that tree with the series').
export PYTHONDONTWRITEBYTECODE=1
tiers=${*:-unit build functional avocado libvirt kvm kernel series}
passed=0 failed=0 skipped=0

# count KIND FILE RC: add a runner's results (scripts/count-results.py:
# meson's JUnit XML or Avocado's xUnit, or a TAP stream, and the runner's
# exit status).
count() {
    local p f s
    read -r p f s < <(/usr/bin/python3 "$top/scripts/count-results.py" "$@")
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
        "$build/kvm/host.gz" "$build/stock/qemu-cross/qemu-system-ppc64" ||
        die "host initramfs failed"
}

# kvm_tap MODULE HOST_KERNEL NAME: run a tests/kvm module (TAP on
# stdout), print its results table, add to the counts. From the caller's
# environment: KVM_INITRD, the hosts' initramfs (the shared one by
# default); KVM_INNER_OPTS, machine options of every inner QEMU; and any
# TBFORK_* the module reads.
kvm_tap() {
    local mod=$1 kernel=$2 name=$3 dir="$build/kvm/$3" p f s rc
    rm -rf "$dir"
    mkdir -p "$dir"
    # TAP on stdout, shown as each scenario ends; tracebacks in check.err
    (cd "$top/tests/kvm" &&
     TBFORK_OUTER_QEMU="$build/qemu-native/qemu-system-ppc64" \
     TBFORK_STOCK_QEMU=/usr/bin/qemu-system-ppc64 \
     TBFORK_HOST_KERNEL="$kernel" \
     TBFORK_HOST_INITRD="${KVM_INITRD:-$build/kvm/host.gz}" \
     TBFORK_INNER_MACHINE_OPTS="${KVM_INNER_OPTS:-}" \
     TBFORK_KVM_WORKDIR="$dir/work" \
     TBFORK_KVM_RESULTS="$dir/results.json" \
     PYTHONPATH="$build/qemu-src/python:$top/tests/functional" \
     timeout -k 120 3600 /usr/bin/python3 "$mod.py") 2> "$dir/check.err" |
        tee "$dir/check.log" | sed -u 's/^/    /'
    rc=${PIPESTATUS[0]}
    read -r p f s < <(/usr/bin/python3 "$top/scripts/count-results.py" \
                      tap "$dir/check.log" "$rc")
    if [ -f "$dir/results.json" ]; then
        /usr/bin/python3 "$top/tests/kvm/report.py" "$dir/results.json" \
            > "$dir/results.md"
        sed 's/^/    /' "$dir/results.md"
    fi
    # pycotap writes a failed test's traceback alone, no FAIL: header
    [ "$f" = 0 ] || grep -E -A30 '^Traceback' "$dir/check.err" |
        head -120 | sed 's/^/    /'
    info "$p passed, $f failed, $s skipped (logs: $dir/check.{log,err})"
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# kvm_power10: the POWER10 and POWER9 -> POWER10 scenarios on Debian's
# 6.12 kernels (bookworm-backports), both flavours: powerpc64le (4 KiB
# pages) and powerpc64le-64k, each with a host initramfs of its modules.
kvm_power10() {
    local flavour kdir
    local -A kernel initrd
    for flavour in powerpc64le powerpc64le-64k; do
        if ! kdir=$(bash "$top/scripts/host-kernel.sh" "$flavour"); then
            warn "kvm: Debian's 6.12 $flavour kernel could not be fetched"
            failed=$((failed + 1))
            return
        fi
        kernel[$flavour]=$kdir/vmlinux
        initrd[$flavour]=$build/kvm/host-$flavour.gz
        if ! bash "$top/scripts/kvm-host-initrd.sh" \
                "$build/qemu-cross/qemu-system-ppc64" \
                "$top/tests/kvm/host-init" "${initrd[$flavour]}" \
                "$build/stock/qemu-cross/qemu-system-ppc64" \
                "$kdir/modules"; then
            warn "kvm: the host initramfs for 6.12 $flavour failed"
            failed=$((failed + 1))
            return
        fi
    done
    # QEMU refuses 64 KiB guest pages (its default cap) on a 4 KiB host,
    # and a cap higher in the stream than on the destination.
    TBFORK_P10_4K_KERNEL=${kernel[powerpc64le]} \
        TBFORK_P10_4K_INITRD=${initrd[powerpc64le]} \
        TBFORK_P10_64K_KERNEL=${kernel[powerpc64le-64k]} \
        TBFORK_P10_64K_INITRD=${initrd[powerpc64le-64k]} \
        KVM_INITRD=${initrd[powerpc64le-64k]} \
        KVM_INNER_OPTS=cap-hpt-max-page-size=4k \
        kvm_tap test_kvm_power10 "${kernel[powerpc64le-64k]}" power10
}

# The libvirt tier's Debian guest (mmdebstrap, its packages configured
# under qemu-user: minutes of CPU, cached by hash) needs no test either:
# first in the background queue when other tiers run first.
guest_bg_dir="$build/debian-guest-bg"
guest_bg_pid=
case " $tiers " in
*" libvirt "*)
    if [ "$(echo $tiers)" != libvirt ]; then
        rm -rf "$guest_bg_dir"
        mkdir -p "$guest_bg_dir"
        step "libvirt tier's Debian guest in the background (log: $guest_bg_dir/log)"
        (
            ionice -c 3 chrt --idle 0 nice -n 19 \
                bash "$top/scripts/debian-guest.sh" "$build/tbprobe" \
                > "$guest_bg_dir/dir" 2> "$guest_bg_dir/log"
            echo $? > "$guest_bg_dir/rc"
        ) &
        guest_bg_pid=$!
    fi
    ;;
esac

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
            # after the Debian guest's build: one background job at a time
            while [ -n "$guest_bg_pid" ] &&
                  kill -0 "$guest_bg_pid" 2>/dev/null; do
                sleep 10
            done
            for ver in 6.1 6.12; do
                ionice -c 3 chrt --idle 0 nice -n 19 \
                    bash "$top/scripts/build-kernel.sh" "$ver" "$build" \
                    > "$kernel_bg_dir/$ver.out" 2>> "$kernel_bg_dir/prep.log"
                echo $? > "$kernel_bg_dir/$ver.rc"
            done
        ) &
        kernel_bg_pid=$!
    fi
    ;;
esac

# The series' prefix builds (~5 min of CPU) need no test either: in the
# background too, at idle priority, when other tiers run.
series_bg_pid=
case " $tiers " in
*" series "*)
    if [ "$(echo $tiers)" != series ]; then
        rm -f "$build/series.rc"
        step "series prefix builds in the background (log: $build/series.log)"
        (
            # after the kernel's (or else the guest's) background build,
            # one at a time: the timing tests feel even idle-priority
            # work when there are two
            pred=${kernel_bg_pid:-$guest_bg_pid}
            while [ -n "$pred" ] && kill -0 "$pred" 2>/dev/null; do
                sleep 10
            done
            ionice -c 3 chrt --idle 0 nice -n 19 \
                bash "$top/scripts/make-series.sh" "$build" --build \
                > "$build/series.log" 2>&1
            echo $? > "$build/series.rc"
        ) &
        series_bg_pid=$!
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
    if [ "$ver" = 6.1 ]; then
        # the log of both builds, once
        sed 's/^/  | /' "$kernel_bg_dir/prep.log" >&2
    fi
    cat "$kernel_bg_dir/$ver.out"
    return "$(cat "$kernel_bg_dir/$ver.rc" 2>/dev/null || echo 1)"
}

# debian_guest: the libvirt tier's guest directory on stdout, from the
# background job when one ran (its log printed here).
debian_guest() {
    if [ -z "$guest_bg_pid" ]; then
        bash "$top/scripts/debian-guest.sh" "$build/tbprobe"
        return
    fi
    # called in $(...): a subshell cannot wait for its parent's job
    if kill -0 "$guest_bg_pid" 2>/dev/null; then
        info "waiting for the background Debian guest build"
        while kill -0 "$guest_bg_pid" 2>/dev/null; do
            sleep 5
        done
    fi
    sed 's/^/  | /' "$guest_bg_dir/log" >&2
    cat "$guest_bg_dir/dir"
    return "$(cat "$guest_bg_dir/rc" 2>/dev/null || echo 1)"
}

# libvirt_hosts_down DIR: the libvirt tier's daemons, domains and
# namespaces gone, whatever state a run (even one killed) left them in.
libvirt_hosts_down() {
    [ -d "$1/work/libvirt/hosts" ] || return 0
    (cd "$top/tests/libvirt" && /usr/bin/python3 -c \
        'import sys; from lvhosts import LibvirtPair
LibvirtPair(sys.argv[1]).stop()' "$1/work/libvirt") ||
        warn "libvirt: stopping the hosts of $1/work failed"
}

# run_libvirt: the fork installed (make install's script) under
# build/libvirt/fork, the Debian guest, then tests/libvirt (TAP), its
# results table printed.
run_libvirt() {
    local dir="$build/libvirt" guest rc p f s
    if ! guest=$(debian_guest); then
        warn "libvirt: the Debian guest could not be built"
        failed=$((failed + 1))
        return
    fi
    libvirt_hosts_down "$dir"
    rm -rf "$dir/fork" "$dir/work" "$dir/results.json"
    mkdir -p "$dir"
    if ! bash "$top/scripts/install-qemu.sh" "$build" "" "$dir/fork" \
            > "$dir/install.log" 2>&1; then
        cat "$dir/install.log" | sed 's/^/    /'
        warn "libvirt: make install failed"
        failed=$((failed + 1))
        return
    fi
    (cd "$top/tests/libvirt" &&
     TBFORK_LIBVIRT_FORK="$dir/fork/bin/qemu-system-ppc64" \
     TBFORK_STOCK_QEMU=/usr/bin/qemu-system-ppc64 \
     TBFORK_DEBIAN_GUEST="$guest" \
     TBFORK_LIBVIRT_WORKDIR="$dir/work" \
     TBFORK_LIBVIRT_RESULTS="$dir/results.json" \
     PYTHONPATH="$build/qemu-src/python:$top/tests/functional" \
     timeout -k 120 2400 /usr/bin/python3 test_libvirt_tb.py) 2> "$dir/check.err" |
        tee "$dir/check.log" | sed -u 's/^/    /'
    rc=${PIPESTATUS[0]}
    libvirt_hosts_down "$dir"
    read -r p f s < <(/usr/bin/python3 "$top/scripts/count-results.py" \
                      tap "$dir/check.log" "$rc")
    if [ -f "$dir/results.json" ]; then
        /usr/bin/python3 "$top/tests/libvirt/report.py" "$dir/results.json" \
            > "$dir/results.md"
        sed 's/^/    /' "$dir/results.md"
    fi
    # pycotap writes a failed test's traceback alone, no FAIL: header
    [ "$f" = 0 ] || grep -E -A30 '^Traceback' "$dir/check.err" |
        head -120 | sed 's/^/    /'
    info "$p passed, $f failed, $s skipped (logs: $dir/check.{log,err}, $dir/work)"
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

# The functional migration tests: one set of files for both runners.
functional_dir="$build/qemu-src/tests/functional"
functional_files() { (cd "$functional_dir" && echo test_ppc64_tb_*.py); }

# The functional tests' environment (meson's `--setup thorough` gives
# them the same): the guest artifacts and the QEMUs to compare with.
functional_env() {
    TBFORK_GUEST="$TBFORK_CACHE/guest" TBFORK_QEMU72="$qemu72" \
    TBFORK_STOCK_QEMU=/usr/bin/qemu-system-ppc64 "$@"
}
qemu72=
stock_qemu72() {
    [ -n "$qemu72" ] && return 0
    # Stock QEMU 7.2 for the compatibility tests (10.0.2 is installed by
    # setup-host.sh).
    qemu72=$(bash "$(dirname "$0")/fetch-stock-qemu72.sh") ||
        die "fetching stock QEMU 7.2 failed"
}

# qmp_quit QEMU ARGS: QEMU starts with ARGS (-S, no display) and quits
# when asked over QMP: exit status 0.
qmp_quit() {
    local qemu=$1
    shift
    printf '%s\n' '{"execute": "qmp_capabilities"}' '{"execute": "quit"}' |
        timeout 60 "$qemu" "$@" -S -display none -nodefaults -qmp stdio
}

# avo ROOT ARGS: Avocado in the functional tests' directory, with
# qemu_test's environment (meson's test() sets the same) and the tests'
# logs under ROOT (their QEMU_BUILD_ROOT, so that meson's stay).
avo() {
    local root=$1
    shift
    (cd "$functional_dir" &&
     QEMU_BUILD_ROOT="$root" \
     QEMU_TEST_QEMU_BINARY="$build/qemu-native/qemu-system-ppc64" \
     QEMU_TEST_QEMU_IMG="$build/qemu-native/qemu-img" \
     PYTHONPATH="$build/qemu-src/python:$functional_dir" \
     functional_env "$build/avocado/venv/bin/avocado" "$@")
}

# run_avocado: the functional migration tests (the same files meson runs)
# under Avocado, one at a time (the timing checks need both cores),
# selected by their docstring tags; Avocado's job results (JSON, xUnit,
# per-test logs) in build/avocado/results, the tests' own logs under
# build/avocado/root.
run_avocado() {
    local dir="$build/avocado" rc all selected defined files res t
    local tags=arch:ppc64,machine:pseries,migration
    mkdir -p "$dir"
    bash "$top/scripts/avocado-venv.sh" "$dir/venv" > /dev/null \
        2> "$dir/install.err"
    rc=$?
    sed 's/^/    /' "$dir/install.err"
    if [ "$rc" = 3 ]; then
        warn "tier avocado skipped: $(tail -1 "$dir/install.err")"
        skipped=$((skipped + 1))
        return
    elif [ "$rc" != 0 ]; then
        warn "tier avocado: installing Avocado failed"
        failed=$((failed + 1))
        return
    fi
    stock_qemu72
    rm -rf "$dir/root" "$dir/results"
    mkdir -p "$dir/root" "$dir/results"
    files=$(functional_files)
    # Every test of these files (those meson runs), and the tags select
    # them all.
    defined=$(cd "$functional_dir" && cat $files | grep -c '^    def test_')
    all=$(avo "$dir/root" list $files | grep -c '^python-unittest ')
    selected=$(avo "$dir/root" list -t "$tags" $files |
               grep -c '^python-unittest ')
    if [ "$defined" = 0 ] || [ "$all" != "$defined" ] ||
       [ "$selected" != "$defined" ]; then
        warn "avocado: $defined tests in $files, Avocado finds $all, the" \
             "tags $tags select $selected"
        failed=$((failed + 1))
        return
    fi
    info "$("$dir/venv/bin/avocado" --version): $selected tests tagged $tags"
    # 900 s per test at most, as the test classes give meson.
    printf '[task.timeout]\nrunning = 900\n' > "$dir/avocado.conf"
    # Each test's result as it ends (not the STARTED lines).
    avo "$dir/root" --config "$dir/avocado.conf" run --disable-sysinfo \
        --max-parallel-tasks=1 --job-timeout 1800 \
        --job-results-dir "$dir/results" -t "$tags" $files 2>&1 |
        tee "$dir/run.log" |
        grep --line-buffered -E \
            '^ \([0-9]+/[0-9]+\) .*: +[A-Z]+|^RESULTS|^JOB TIME' |
        grep --line-buffered -v ': STARTED$' |
        sed -u 's/^/    /'
    rc=${PIPESTATUS[0]}
    count junit "$dir/results/latest/results.xml" "$rc"
    # Failed tests' output (unittest's traceback), so that CI's output
    # names what failed.
    res="$dir/results/latest/test-results"
    for t in "$res"/by-status/FAIL/* "$res"/by-status/ERROR/* \
             "$res"/by-status/INTERRUPTED/*; do
        [ -e "$t" ] || continue
        echo "    --- ${t##*/}"
        head -40 "$t/stdout" | sed 's/^/    /'
    done
}

for tier in $tiers; do
    case $tier in
    unit)
        step "tier unit: arithmetic unit tests (QEMU's tests/unit, and under ASan+UBSan), fuzzer"
        meson test -C "$build/qemu-native" --no-rebuild --print-errorlogs \
            test-ppc-tb-calc > "$build/qemu-native/check-unit.log" 2>&1
        rc=$?
        grep -E '^ *[0-9]+/[0-9]+ ' "$build/qemu-native/check-unit.log" |
            sed 's/^/    /'
        count junit "$build/qemu-native/meson-logs/testlog.junit.xml" "$rc"
        meson test -C "$build/tools" --print-errorlogs --no-rebuild \
            > "$build/tools/check.log" 2>&1
        rc=$?
        grep -E '^ *[0-9]+/[0-9]+ ' "$build/tools/check.log" | sed 's/^/    /'
        count junit "$build/tools/meson-logs/testlog.junit.xml" "$rc"
        ;;
    build)
        # Built by `make check` before the tests: counted here.
        step "tier build: the fork without pseries links (no-pseries.mak)"
        machines=$("$build/qemu-nopseries/qemu-system-ppc64" -M help 2>&1)
        if grep -q '^powernv9 ' <<< "$machines" &&
           ! grep -q '^pseries' <<< "$machines"; then
            info "qemu-system-ppc64 without pseries built (powernv, no pseries)"
            passed=$((passed + 1))
        else
            warn "no qemu-system-ppc64 without pseries in $build/qemu-nopseries"
            failed=$((failed + 1))
        fi
        # make install's tree (staged): the installed binary starts
        # pseries with Debian's VOF and SLOF and no -L (libvirt passes
        # none).
        inst="$build/install-check"
        rm -rf "$inst"
        if bash "$top/scripts/install-qemu.sh" "$build" "$inst" /usr/local \
               > "$inst.log" 2>&1 &&
           qmp_quit "$inst/usr/local/bin/qemu-system-ppc64" \
               -M pseries,x-vof=on >> "$inst.log" 2>&1 &&
           qmp_quit "$inst/usr/local/bin/qemu-system-ppc64" \
               -M pseries >> "$inst.log" 2>&1; then
            info "make install: pseries starts with VOF and SLOF, no -L"
            passed=$((passed + 1))
        else
            tail -5 "$inst.log" | sed 's/^/    /'
            warn "make install: the installed QEMU does not start (log: $inst.log)"
            failed=$((failed + 1))
        fi
        ;;
    series)
        step "tier series: the upstream form (build/series), every prefix built"
        if [ -n "$series_bg_pid" ]; then
            info "waiting for the background series build"
            wait "$series_bg_pid"
            rc=$(cat "$build/series.rc" 2>/dev/null || echo 1)
        else
            bash "$top/scripts/make-series.sh" "$build" --build \
                > "$build/series.log" 2>&1
            rc=$?
        fi
        if [ "$rc" = 0 ]; then
            grep -E '^(==>|    (tb|fixes|fork|every|checkpatch))' \
                "$build/series.log" | grep -v '%' | sed 's/^/    /'
            passed=$((passed + 1))
        else
            tail -40 "$build/series.log" | sed 's/^/    /'
            warn "series: see $build/series.log"
            failed=$((failed + 1))
        fi
        ;;
    functional)
        step "tier functional: migration tests between QEMU processes (TCG)"
        tests=$(functional_files | tr ' ' '\n' |
                sed 's/^test_\(.*\)\.py$/func-ppc64-\1/')
        stock_qemu72
        # --verbose: each subtest's result as it ends (a run is ~10 min);
        # one test program at a time: the timing checks need both cores.
        functional_env meson test -C "$build/qemu-native" \
            --setup thorough --verbose --num-processes 1 --no-rebuild \
            $tests 2>&1 |
            tee "$build/qemu-native/check.log" |
            grep --line-buffered -E '^▶ [0-9]+/[0-9]+ |^ *[0-9]+/[0-9]+ ' |
            sed -u 's/^/    /'
        rc=${PIPESTATUS[0]}
        count junit "$build/qemu-native/meson-logs/testlog-thorough.junit.xml" \
            "$rc"
        # Failed subtests' tracebacks, so that CI's output names what failed.
        awk '/^-+ stderr -+$/ { p = 1; next } /^\(test program exited/ { p = 0 }
             p' "$build/qemu-native/meson-logs/testlog-thorough.txt" |
            head -150 | sed 's/^/    /'
        ;;
    avocado)
        step "tier avocado: the functional migration tests run by Avocado"
        run_avocado
        ;;
    libvirt)
        step "tier libvirt: two libvirt hosts, a Debian guest, every virsh stop"
        run_libvirt
        ;;
    kvm)
        step "tier kvm: KVM-HV harness (emulated POWER hosts, fork and stock)"
        kvm_initrd
        kvm_tap test_kvm_tb_migration "$TBFORK_CACHE/guest/vmlinux" kvm
        kvm_power10
        ;;
    kernel)
        step "tier kernel: kernel-patches/ on Debian's 6.1 and 6.12, booted"
        # Each: apply, checkpatch, build (cached), boot as the hosts'
        # kernel: 6.1 on POWER9 and POWER8, 6.12 on POWER10.
        kvm_initrd
        for ver in 6.1 6.12; do
            if vmlinux=$(kernel_prep "$ver"); then
                info "kernel-patches apply to $ver, pass checkpatch, build"
                passed=$((passed + 1))
                TBFORK_PATCHED_KERNEL=$ver \
                    kvm_tap test_kvm_kernel_patches "$vmlinux" "kernel-$ver"
            else
                warn "kernel-patches: $ver failed"
                failed=$((failed + 1))
            fi
        done
        ;;
    *)
        die "unknown tier $tier"
        ;;
    esac
done
[ "$failed" = 0 ] || warn "some tests failed: see the logs named above"
echo "check: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
