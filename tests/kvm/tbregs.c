/*
 * tbregs: how a KVM-HV host kernel takes KVM_REG_PPC_TB_OFFSET and
 * KVM_REG_PPC_DEC_EXPIRY in either order, on fresh vCPUs that never ran
 * (what a VMM does when it loads a migrated vCPU).
 *
 *   tbregs OFFSET EXPIRY
 *
 * OFFSET: the TB offset to set (signed ticks, need not be a multiple of
 * 2^24); EXPIRY: a decrementer expiry in guest TB ticks. One VM, three
 * vCPUs, one line each (all values in ticks, signed):
 *
 *   TBREGS order=offset-then-expiry offset=O expiry=E tb0=T0 tb1=T1
 *   TBREGS order=expiry-then-offset offset=O expiry=E tb0=T0 tb1=T1
 *   TBREGS order=offset-only offset=O expiry=E tb0=T0 tb1=T1
 *
 * O and E are what KVM_GET_ONE_REG reads back after the sets; T0 and T1
 * the host TB just before and after them. Errors: "TBREGS error WHAT
 * errno=N" and exit status 1.
 *
 * The kernel rounds the offset up to a multiple of 2^24 (TBU40), and a
 * TB_OFFSET set on a vCPU whose DEC_EXPIRY is 0 makes that expiry the
 * guest's current TB (an expired decrementer rather than one 2^64 ticks
 * away). An expiry set before or after the offset is kept as given.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/kvm.h>

static uint64_t mftb(void)
{
    uint64_t tb;

    __asm__ volatile("mfspr %0, 268" : "=r"(tb));
    return tb;
}

static void fail(const char *what)
{
    printf("TBREGS error %s errno=%d\n", what, errno);
    exit(1);
}

static void set_reg(int vcpu, uint64_t id, int64_t value)
{
    struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&value };

    if (ioctl(vcpu, KVM_SET_ONE_REG, &reg) < 0) {
        fail(id == KVM_REG_PPC_TB_OFFSET ? "set-tb-offset" :
             "set-dec-expiry");
    }
}

static int64_t get_reg(int vcpu, uint64_t id)
{
    int64_t value;
    struct kvm_one_reg reg = { .id = id, .addr = (uintptr_t)&value };

    if (ioctl(vcpu, KVM_GET_ONE_REG, &reg) < 0) {
        fail(id == KVM_REG_PPC_TB_OFFSET ? "get-tb-offset" :
             "get-dec-expiry");
    }
    return value;
}

int main(int argc, char **argv)
{
    static const char *const orders[] = {
        "offset-then-expiry", "expiry-then-offset", "offset-only",
    };
    int64_t offset, expiry;
    int kvm, vm, i;

    if (argc != 3) {
        fprintf(stderr, "usage: tbregs OFFSET EXPIRY\n");
        return 2;
    }
    offset = strtoll(argv[1], NULL, 0);
    expiry = strtoll(argv[2], NULL, 0);
    setvbuf(stdout, NULL, _IOLBF, 0);

    kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (kvm < 0) {
        fail("open-dev-kvm");
    }
    vm = ioctl(kvm, KVM_CREATE_VM, KVM_VM_PPC_HV);
    if (vm < 0) {
        fail("create-vm");
    }
    for (i = 0; i < 3; i++) {
        int vcpu = ioctl(vm, KVM_CREATE_VCPU, i);
        uint64_t tb0, tb1;

        if (vcpu < 0) {
            fail("create-vcpu");
        }
        tb0 = mftb();
        switch (i) {
        case 0:
            set_reg(vcpu, KVM_REG_PPC_TB_OFFSET, offset);
            set_reg(vcpu, KVM_REG_PPC_DEC_EXPIRY, expiry);
            break;
        case 1:
            set_reg(vcpu, KVM_REG_PPC_DEC_EXPIRY, expiry);
            set_reg(vcpu, KVM_REG_PPC_TB_OFFSET, offset);
            break;
        default:
            set_reg(vcpu, KVM_REG_PPC_TB_OFFSET, offset);
            break;
        }
        tb1 = mftb();
        printf("TBREGS order=%s offset=%" PRId64 " expiry=%" PRId64
               " tb0=%" PRId64 " tb1=%" PRId64 "\n", orders[i],
               get_reg(vcpu, KVM_REG_PPC_TB_OFFSET),
               get_reg(vcpu, KVM_REG_PPC_DEC_EXPIRY),
               (int64_t)tb0, (int64_t)tb1);
    }
    return 0;
}
