# qemu-tb-fork entry points. `make demo` and `make check` work from a
# fresh clone on a fresh Debian 12 machine: they configure, fetch and
# build whatever is missing first.
#
#   make            build the native QEMU (and one without pseries), the
#                   static ppc64le fork and stock QEMUs, tools, guest
#   make demo       live-migrate a TCG guest running the TB probe
#   make series     the upstream-style patch series, in build/series
#   make check      every tier, in this order (scripts/check.sh):
#                     unit        arithmetic unit tests (plain, ASan+UBSan),
#                                 fuzzer
#                     build       the QEMU without pseries links
#                     functional  TCG migration tests (QEMU's harness)
#                     avocado     the same tests run by Avocado 113.0
#                     libvirt     two libvirt hosts drive a Debian guest
#                                 on the installed fork and on stock
#                     kvm         KVM-HV in emulated POWER hosts
#                     kernel      kernel-patches/: apply, checkpatch,
#                                 build, boot, tests
#                     series      make series, checkpatch, every prefix
#                                 of the series builds (in the background)
#   make check-unit / check-functional / check-avocado / check-libvirt /
#        check-kvm / check-kernel / check-series   one tier
#   make install    qemu-system-ppc64 and qemu-img into $(DESTDIR)$(PREFIX)
#                   (PREFIX=/usr/local), finding Debian's firmware
#   make clean      remove build/ (the download cache stays)

SHELL := /bin/bash
.DEFAULT_GOAL := all
TOP := $(CURDIR)
BUILD ?= $(TOP)/build

# Re-run configure when it or the setup scripts change.
CONFIGURE_DEPS := configure scripts/lib.sh scripts/setup-host.sh \
    scripts/fetch-qemu-source.sh scripts/make-sysroot.sh

# Host packages and apt sources first (root): configure only checks them.
# TBFORK_SETUP_HOST=no skips it (packages installed by other means).
TBFORK_SETUP_HOST ?= yes
$(BUILD)/config.mak: $(CONFIGURE_DEPS)
	@if [ "$(TBFORK_SETUP_HOST)" != no ]; then \
	    bash scripts/setup-host.sh || exit 1; \
	fi
	@if [ -f $@ ]; then \
	    args=$$(sed -n 's/^CONFIGURE_ARGS := //p' $@); \
	    ./configure $$args; \
	else \
	    ./configure; \
	fi

-include $(BUILD)/config.mak
export TBFORK_CACHE CCACHE_DIR

QEMU_NATIVE := $(BUILD)/qemu-native/qemu-system-ppc64
QEMU_CROSS := $(BUILD)/qemu-cross/qemu-system-ppc64
STOCK_CROSS := $(BUILD)/stock/qemu-cross/qemu-system-ppc64
GUEST := $(TBFORK_CACHE)/guest
TBPROBE := $(BUILD)/tbprobe
PYTHON := /usr/bin/python3

.PHONY: all qemu-tree qemu-native qemu-nopseries qemu-cross stock-cross \
    tools guest demo series check check-unit check-functional check-avocado \
    check-libvirt \
    check-kvm check-kernel check-series clean install
all: qemu-native qemu-nopseries \
    $(if $(filter yes,$(CROSS)),qemu-cross stock-cross) tools guest

# Always re-laid: a no-op (hash check) when nothing changed.
qemu-tree: $(BUILD)/config.mak
	@bash scripts/prepare-qemu-tree.sh "$(QEMU_DSC)" "$(BUILD)"

qemu-native: qemu-tree
	@bash scripts/build-qemu.sh "native qemu" $(BUILD)/qemu-native \
	    qemu-system-ppc64 qemu-img tests/unit/test-ppc-tb-calc

# The fork without the pseries machine (configs/devices/ppc64-softmmu/
# no-pseries.mak): proves that the monitor commands' stubs link.
qemu-nopseries: qemu-tree
	@bash scripts/build-qemu.sh "native qemu without pseries" \
	    $(BUILD)/qemu-nopseries qemu-system-ppc64

qemu-cross: qemu-tree
	@bash scripts/build-qemu.sh "static ppc64le qemu (KVM)" \
	    $(BUILD)/qemu-cross qemu-system-ppc64
	@file -L $(QEMU_CROSS) | grep -q 'statically linked' && \
	    file -L $(QEMU_CROSS) | grep -q 'PowerPC' || \
	    { echo '*** ERROR: $(QEMU_CROSS) is not a static ppc64le binary'; exit 1; }

# Stock QEMU (Debian's source, no fork patches) built the same way, for
# the KVM-HV harness's side-by-side runs.
# After the fork's: ccache serves it the fork's objects.
stock-cross: qemu-tree | qemu-cross
	@bash scripts/build-qemu.sh "stock static ppc64le qemu (KVM)" \
	    $(BUILD)/stock/qemu-cross qemu-system-ppc64
	@file -L $(STOCK_CROSS) | grep -q 'statically linked' || \
	    { echo '*** ERROR: $(STOCK_CROSS) is not a static binary'; exit 1; }

# Built against qemu-native's generated headers (QAPI enums).
tools: qemu-native
	@ninja -C $(BUILD)/tools >/dev/null || \
	    { ninja -C $(BUILD)/tools; echo '*** ERROR: tools build failed'; exit 1; }

$(TBPROBE): tests/guest/tbprobe.c
	powerpc64le-linux-gnu-gcc -O2 -Wall -Wextra -Werror -static -o $@ $<

guest: $(TBPROBE) $(BUILD)/config.mak
	@bash scripts/guest-artifacts.sh $(TBPROBE)

demo: qemu-native guest
	@$(PYTHON) scripts/demo.py --qemu $(QEMU_NATIVE) --guest $(GUEST) \
	    --qemu-python $(BUILD)/qemu-src/python

check: all
	@bash scripts/check.sh $(BUILD)

# The upstream form: build/series/{tb,fixes} (scripts/make-series.sh).
series: qemu-tree
	@bash scripts/make-series.sh $(BUILD)

# The same, and every prefix of both series built (incrementally).
check-series: qemu-native
	@bash scripts/check.sh $(BUILD) series

check-unit: tools
	@bash scripts/check.sh $(BUILD) unit

check-functional: qemu-native guest
	@bash scripts/check.sh $(BUILD) functional

# The functional migration tests again, run by Avocado 113.0.
check-avocado: qemu-native guest
	@bash scripts/check.sh $(BUILD) avocado

# libvirt drives the installed fork and stock QEMU: a Debian guest
# (scripts/debian-guest.sh) through every virsh operation that stops it.
check-libvirt: qemu-native $(TBPROBE)
	@bash scripts/check.sh $(BUILD) libvirt

check-kvm: qemu-native qemu-cross stock-cross guest
	@bash scripts/check.sh $(BUILD) kvm

# kernel-patches/: apply to 6.1 and 6.12, checkpatch, build 6.1, boot it.
check-kernel: qemu-native qemu-cross stock-cross guest
	@bash scripts/check.sh $(BUILD) kernel

# The fork installed where libvirt's <emulator> can name it; it finds
# Debian's firmware without -L (scripts/install-qemu.sh).
PREFIX ?= /usr/local
DESTDIR ?=
install: qemu-native
	@bash scripts/install-qemu.sh $(BUILD) "$(DESTDIR)" "$(PREFIX)"

clean:
	rm -rf $(BUILD)

# Benchmark (not a test): stock 10.0.2 vs fork, BENCH_N migrations per
# forced-stop configuration (default 20) and BENCH_LOAD_N per load
# configuration (guest RAM x precopy/postcopy, no forced stop; default
# 3), written to build/bench/bench.{md,png} and bench-load.png.
BENCH_N ?= 20
BENCH_LOAD_N ?= 3
.PHONY: bench
bench: qemu-native guest
	@$(PYTHON) scripts/bench.py -n $(BENCH_N) --load-n $(BENCH_LOAD_N) \
	    --fork $(QEMU_NATIVE) \
	    --guest $(GUEST) --qemu-python $(BUILD)/qemu-src/python \
	    --out $(BUILD)/bench
