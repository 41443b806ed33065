# qemu-tb-fork entry points. `make demo` and `make check` work from a
# fresh clone on a fresh Debian 12 machine: they configure, fetch and
# build whatever is missing first.
#
#   make            build the native and cross QEMU, tools, guest artifacts
#   make demo       live-migrate a TCG guest running the TB probe
#   make check      every test tier that fits CI (unit, fuzz, functional)
#   make check-unit / check-functional / check-kvm   one tier
#   make check-kernel   kernel-patches/: apply, checkpatch, build, boot
#   make clean      remove build/ (the download cache stays)

SHELL := /bin/bash
.DEFAULT_GOAL := all
TOP := $(CURDIR)
BUILD ?= $(TOP)/build

# Re-run configure when it or the setup scripts change.
CONFIGURE_DEPS := configure scripts/lib.sh scripts/setup-host.sh \
    scripts/fetch-qemu-source.sh scripts/make-sysroot.sh

$(BUILD)/config.mak: $(CONFIGURE_DEPS)
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
STOCK_CROSS := $(BUILD)/stock-cross/qemu-system-ppc64
GUEST := $(TBFORK_CACHE)/guest
TBPROBE := $(BUILD)/tbprobe
PYTHON := /usr/bin/python3

.PHONY: all qemu-tree qemu-native qemu-cross stock-cross tools guest demo \
    check check-unit check-functional check-kvm check-kernel clean
all: qemu-native $(if $(filter yes,$(CROSS)),qemu-cross stock-cross) tools guest

# Always re-laid: a no-op (hash check) when nothing changed.
qemu-tree: $(BUILD)/config.mak
	@bash scripts/prepare-qemu-tree.sh "$(QEMU_DSC)" "$(BUILD)"

qemu-native: qemu-tree
	@bash scripts/build-qemu.sh "native qemu" $(BUILD)/qemu-native \
	    qemu-system-ppc64 qemu-img

qemu-cross: qemu-tree
	@bash scripts/build-qemu.sh "static ppc64le qemu (KVM)" \
	    $(BUILD)/qemu-cross qemu-system-ppc64
	@file -L $(QEMU_CROSS) | grep -q 'statically linked' && \
	    file -L $(QEMU_CROSS) | grep -q 'PowerPC' || \
	    { echo '*** ERROR: $(QEMU_CROSS) is not a static ppc64le binary'; exit 1; }

# Stock QEMU (Debian's source, no fork patches) built the same way, for
# the KVM-HV harness's side-by-side runs.
stock-cross: qemu-tree
	@bash scripts/build-qemu.sh "stock static ppc64le qemu (KVM)" \
	    $(BUILD)/stock-cross qemu-system-ppc64
	@file -L $(STOCK_CROSS) | grep -q 'statically linked' || \
	    { echo '*** ERROR: $(STOCK_CROSS) is not a static binary'; exit 1; }

tools: $(BUILD)/config.mak
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

check-unit: tools
	@bash scripts/check.sh $(BUILD) unit

check-functional: qemu-native guest
	@bash scripts/check.sh $(BUILD) functional

check-kvm: qemu-native qemu-cross stock-cross guest
	@bash scripts/check.sh $(BUILD) kvm

# kernel-patches/: apply to 6.1 and 6.12, checkpatch, build 6.1, boot it.
check-kernel: qemu-native qemu-cross stock-cross guest
	@bash scripts/check.sh $(BUILD) kernel

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
