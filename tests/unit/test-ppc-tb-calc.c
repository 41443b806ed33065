/*
 * Unit tests for the POWER timebase migration arithmetic.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/timer.h"
#include "qemu/host-utils.h"
#include "qemu/int128.h"
#include "hw/ppc/ppc_tb_calc.h"

#define FREQ_P9 512000000ULL
#define NS_PER_SEC ((uint64_t)NANOSECONDS_PER_SECOND)
#define GRANULE (1ULL << TBCALC_KVM_GRANULE_SHIFT)

/* Reference conversion with QEMU's Int128 (any host). */
static uint64_t ref_muldiv(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t lo, hi;
    Int128 q;

    mulu64(&lo, &hi, a, b);
    q = int128_divu(int128_make128(lo, hi), int128_make64(c));
    return int128_gethi(q) ? UINT64_MAX : int128_getlo(q);
}

/* What the kernel does with a requested offset: round up to a granule. */
static uint64_t kernel_round_up(uint64_t offset, unsigned granule_shift)
{
    uint64_t mask = (1ULL << granule_shift) - 1;

    return (offset + mask) & ~mask;
}

static void test_ns_to_ticks_basic(void)
{
    g_assert_cmpuint(tbcalc_ns_to_ticks(0, FREQ_P9), ==, 0);
    g_assert_cmpuint(tbcalc_ns_to_ticks(NS_PER_SEC, FREQ_P9), ==, FREQ_P9);
    g_assert_cmpuint(tbcalc_ns_to_ticks(1, FREQ_P9), ==, 0);
    g_assert_cmpuint(tbcalc_ns_to_ticks(2, FREQ_P9), ==, 1);
    g_assert_cmpuint(tbcalc_ns_to_ticks(1000, FREQ_P9), ==, 512);
    g_assert_cmpuint(tbcalc_ticks_to_ns(FREQ_P9, FREQ_P9), ==, NS_PER_SEC);
    g_assert_cmpuint(tbcalc_ticks_to_ns(512, FREQ_P9), ==, 1000);
    g_assert_cmpuint(tbcalc_ticks_to_ns(1, 0), ==, 0);
}

static void test_ns_to_ticks_extremes(void)
{
    /* Overflow of the naive ns * freq happens beyond ~36 s at 512 MHz. */
    uint64_t ns = 3600ULL * NS_PER_SEC;

    g_assert_cmpuint(tbcalc_ns_to_ticks(ns, FREQ_P9), ==, 3600ULL * FREQ_P9);
    g_assert_cmpuint(tbcalc_ns_to_ticks(UINT64_MAX, FREQ_P9), ==,
                     ref_muldiv(UINT64_MAX, FREQ_P9, NS_PER_SEC));
    /* Results that do not fit saturate instead of wrapping. */
    g_assert_cmpuint(tbcalc_ns_to_ticks(UINT64_MAX, UINT64_MAX), ==,
                     UINT64_MAX);
    g_assert_cmpuint(tbcalc_ticks_to_ns(UINT64_MAX, 1), ==, UINT64_MAX);
    g_assert_cmpuint(tbcalc_ticks_to_ns(UINT64_MAX, UINT64_MAX), ==,
                     NS_PER_SEC);
    g_assert_cmpuint(tbcalc_ns_to_ticks(UINT64_MAX, 1), ==,
                     UINT64_MAX / NS_PER_SEC);
}

static void test_ns_to_ticks_random(void)
{
    GRand *r = g_rand_new_with_seed(20261125);
    int i;

    for (i = 0; i < 200000; i++) {
        uint64_t a = ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);
        uint64_t f = ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);

        a >>= g_rand_int_range(r, 0, 64);
        f >>= g_rand_int_range(r, 0, 64);
        if (f == 0) {
            f = 1;
        }
        g_assert_cmpuint(tbcalc_ns_to_ticks(a, f), ==,
                         ref_muldiv(a, f, NS_PER_SEC));
        g_assert_cmpuint(tbcalc_ticks_to_ns(a, f), ==,
                         ref_muldiv(a, NS_PER_SEC, f));
    }
    g_rand_free(r);
}

static TBCalcInput base_input(void)
{
    TBCalcInput in = {
        .saved_tb = 0x123456789abcULL,
        .saved_realtime_ns = 1764000000LL * NS_PER_SEC,
        .tb_freq = FREQ_P9,
        .cap_ns = 10 * NS_PER_SEC,
        .policy = PPC_TIMEBASE_POLICY_DOWNTIME,
    };

    in.now_realtime_ns = in.saved_realtime_ns + NS_PER_SEC;
    return in;
}

static void test_decide_applied(void)
{
    TBCalcInput in = base_input();
    TBCalcResult res;

    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_APPLIED);
    g_assert_cmpuint(res.delta_ticks, ==, FREQ_P9);
    g_assert_cmpuint(res.target_tb, ==, in.saved_tb + FREQ_P9);
    g_assert_cmpint(res.measured_ns, ==, NS_PER_SEC);
    g_assert_cmpuint(res.applied_ns, ==, NS_PER_SEC);
}

static void test_decide_cap(void)
{
    TBCalcInput in = base_input();
    TBCalcResult res;

    in.now_realtime_ns = in.saved_realtime_ns + 3600 * NS_PER_SEC;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_CAPPED);
    g_assert_cmpuint(res.applied_ns, ==, in.cap_ns);
    g_assert_cmpuint(res.delta_ticks, ==, 10 * FREQ_P9);
    g_assert_cmpint(res.measured_ns, ==, 3600 * NS_PER_SEC);

    /* Exactly at the cap is not capped; cap 0 means no cap. */
    in.now_realtime_ns = in.saved_realtime_ns + in.cap_ns;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_APPLIED);
    in.cap_ns = 0;
    in.now_realtime_ns = in.saved_realtime_ns + 3600 * NS_PER_SEC;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_APPLIED);
    g_assert_cmpuint(res.delta_ticks, ==, 3600 * FREQ_P9);
}

static void test_decide_clamp_backwards(void)
{
    TBCalcInput in = base_input();
    TBCalcResult res;

    in.now_realtime_ns = in.saved_realtime_ns - 3600 * NS_PER_SEC;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_CLOCK_BACKWARDS);
    g_assert_cmpuint(res.delta_ticks, ==, 0);
    g_assert_cmpuint(res.target_tb, ==, in.saved_tb);
    g_assert_cmpint(res.measured_ns, ==, -3600 * (int64_t)NS_PER_SEC);

    /* Extreme clocks must not overflow into a "forward" delta. */
    in.saved_realtime_ns = INT64_MAX;
    in.now_realtime_ns = INT64_MIN;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_CLOCK_BACKWARDS);
    g_assert_cmpuint(res.delta_ticks, ==, 0);
}

static void test_decide_policies(void)
{
    TBCalcInput in = base_input();
    TBCalcResult res;

    in.policy = PPC_TIMEBASE_POLICY_FREEZE;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_POLICY_FREEZE);
    g_assert_cmpuint(res.target_tb, ==, in.saved_tb);

    in.policy = PPC_TIMEBASE_POLICY_DOWNTIME;
    in.user_paused = true;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_USER_PAUSED);
    g_assert_cmpuint(res.delta_ticks, ==, 0);

    in.policy = PPC_TIMEBASE_POLICY_WALLCLOCK;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_APPLIED);
    g_assert_cmpuint(res.delta_ticks, ==, FREQ_P9);

    in.saved_realtime_ns = 0;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_NO_REALTIME);
    g_assert_cmpuint(res.delta_ticks, ==, 0);

    in.policy = PPC_TIMEBASE_POLICY__MAX;
    g_assert_false(tbcalc_decide(&in, &res));
    g_assert_cmpuint(res.target_tb, ==, in.saved_tb);
    in.policy = PPC_TIMEBASE_POLICY_DOWNTIME;
    in.tb_freq = 0;
    g_assert_false(tbcalc_decide(&in, &res));
}

static void test_decide_tb_wrap(void)
{
    TBCalcInput in = base_input();
    TBCalcResult res;

    /* The TB is a free-running 64-bit counter: it wraps, modularly. */
    in.saved_tb = UINT64_MAX - FREQ_P9 / 2;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_cmpuint(res.delta_ticks, ==, FREQ_P9);
    g_assert_cmpuint(res.target_tb, ==, FREQ_P9 / 2 - 1);
    g_assert_cmpuint(res.target_tb - in.saved_tb, ==, FREQ_P9);
}

/* Random inputs: the decision never moves the TB backwards. */
static void test_decide_property(void)
{
    GRand *r = g_rand_new_with_seed(4242);
    int i;

    for (i = 0; i < 200000; i++) {
        TBCalcInput in = base_input();
        TBCalcInput later;
        TBCalcResult res, res_later;
        int64_t step;

        in.saved_tb = ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);
        in.saved_realtime_ns = (int64_t)(((uint64_t)g_rand_int(r) << 32) |
                                         g_rand_int(r));
        in.now_realtime_ns = in.saved_realtime_ns +
            g_rand_int_range(r, -2000000, 2000000) * (int64_t)1000;
        in.tb_freq = g_rand_int_range(r, 1, G_MAXINT32);
        in.cap_ns = g_rand_boolean(r) ? 0 :
            (uint64_t)g_rand_int(r) * 1000;
        in.user_paused = g_rand_boolean(r);
        in.policy = g_rand_int_range(r, 0, PPC_TIMEBASE_POLICY__MAX);

        g_assert_true(tbcalc_decide(&in, &res));
        g_assert_cmpuint(res.target_tb - in.saved_tb, ==, res.delta_ticks);
        if (in.cap_ns) {
            g_assert_cmpuint(res.applied_ns, <=, in.cap_ns);
        }
        g_assert_cmpuint(res.delta_ticks, ==,
                         tbcalc_ns_to_ticks(res.applied_ns, in.tb_freq));
        if (res.reason == PPC_TIMEBASE_ADJUST_REASON_APPLIED) {
            g_assert_cmpint(res.measured_ns, >=, 0);
            g_assert_cmpuint(res.applied_ns, ==, res.measured_ns);
        }

        /* Resuming later never gives a smaller TB (monotonic in now). */
        later = in;
        step = g_rand_int_range(r, 0, 1000000);
        if (in.now_realtime_ns <= INT64_MAX - step) {
            later.now_realtime_ns += step;
            g_assert_true(tbcalc_decide(&later, &res_later));
            g_assert_cmpuint(res_later.delta_ticks, >=, res.delta_ticks);
        }
    }
    g_rand_free(r);
}

static void test_raise_to_floor(void)
{
    TBCalcInput in = base_input();
    TBCalcResult res, before;

    /* A floor at or below the target changes nothing. */
    g_assert_true(tbcalc_decide(&in, &res));
    before = res;
    g_assert_false(tbcalc_raise_to_floor(&res, in.saved_tb, in.saved_tb,
                                         in.tb_freq));
    g_assert_false(tbcalc_raise_to_floor(&res, in.saved_tb, res.target_tb,
                                         in.tb_freq));
    g_assert_cmpuint(res.target_tb, ==, before.target_tb);
    g_assert_cmpuint(res.delta_ticks, ==, before.delta_ticks);
    g_assert_cmpuint(res.applied_ns, ==, before.applied_ns);
    g_assert_cmpint(res.reason, ==, before.reason);

    /* A floor an hour above: the TB starts from it. */
    g_assert_true(tbcalc_raise_to_floor(&res, in.saved_tb,
                                        in.saved_tb + 3600 * FREQ_P9,
                                        in.tb_freq));
    g_assert_cmpint(res.reason, ==, PPC_TIMEBASE_ADJUST_REASON_FLOOR);
    g_assert_cmpuint(res.target_tb, ==, in.saved_tb + 3600 * FREQ_P9);
    g_assert_cmpuint(res.delta_ticks, ==, 3600 * FREQ_P9);
    g_assert_cmpuint(res.applied_ns, ==, 3600 * NS_PER_SEC);

    /* Frozen by policy, the floor still holds; across the TB's wrap too. */
    in.policy = PPC_TIMEBASE_POLICY_FREEZE;
    in.saved_tb = UINT64_MAX - 10;
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_true(tbcalc_raise_to_floor(&res, in.saved_tb, 5, in.tb_freq));
    g_assert_cmpuint(res.target_tb, ==, 5);
    g_assert_cmpuint(res.delta_ticks, ==, 16);
    /* A "floor" half the TB range away is behind, not ahead. */
    g_assert_true(tbcalc_decide(&in, &res));
    g_assert_false(tbcalc_raise_to_floor(&res, in.saved_tb,
                                         in.saved_tb - (1ULL << 62),
                                         in.tb_freq));
    g_assert_cmpuint(res.target_tb, ==, in.saved_tb);
}

static void test_kvm_round_up(void)
{
    g_assert_cmpuint(kernel_round_up(0, 24), ==, 0);
    g_assert_cmpuint(kernel_round_up(1, 24), ==, GRANULE);
    g_assert_cmpuint(kernel_round_up(GRANULE, 24), ==, GRANULE);
    g_assert_cmpuint(kernel_round_up(GRANULE + 1, 24), ==, 2 * GRANULE);
    /* Negative offsets (two's complement) round towards zero. */
    g_assert_cmpuint(kernel_round_up(-GRANULE - 1, 24), ==, -GRANULE);
}

static void test_kvm_offset_nearest(void)
{
    uint64_t host = 0x100000000000ULL;
    uint64_t target = host + 5 * GRANULE + 100;
    int64_t residue;
    uint64_t off;

    /* Just above a multiple: round down (100 ticks early) is nearer. */
    off = tbcalc_kvm_offset(target, target - 1000, host, 24, &residue);
    g_assert_cmpuint(off, ==, 5 * GRANULE);
    g_assert_cmpint(residue, ==, -100);

    /* ... unless that would go under the floor: round up instead. */
    off = tbcalc_kvm_offset(target, target - 10, host, 24, &residue);
    g_assert_cmpuint(off, ==, 6 * GRANULE);
    g_assert_cmpint(residue, ==, (int64_t)GRANULE - 100);

    /* Just below a multiple: round up is nearer. */
    target = host + 5 * GRANULE - 100;
    off = tbcalc_kvm_offset(target, target - GRANULE, host, 24, &residue);
    g_assert_cmpuint(off, ==, 5 * GRANULE);
    g_assert_cmpint(residue, ==, 100);

    /* Exact multiple: no residue. */
    target = host + 7 * GRANULE;
    off = tbcalc_kvm_offset(target, target, host, 24, &residue);
    g_assert_cmpuint(off, ==, 7 * GRANULE);
    g_assert_cmpint(residue, ==, 0);

    /* Negative offsets: a guest whose TB is behind the host's. */
    target = host - 3 * GRANULE + 10;
    off = tbcalc_kvm_offset(target, 0, host, 24, &residue);
    g_assert_cmpuint(off, ==, -3 * GRANULE);
    g_assert_cmpint(residue, ==, -10);
}

/* Random inputs: the kernel keeps what we ask, floor and bounds hold. */
static void test_kvm_offset_property(void)
{
    GRand *r = g_rand_new_with_seed(2024);
    int i;

    for (i = 0; i < 200000; i++) {
        uint64_t host = ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);
        uint64_t target = ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);
        uint64_t slack = g_rand_boolean(r) ?
            (uint64_t)g_rand_int_range(r, 0, GRANULE) :
            ((uint64_t)g_rand_int(r) << 8);
        uint64_t floor_tb = target - slack;
        int64_t residue;
        uint64_t off, guest;

        off = tbcalc_kvm_offset(target, floor_tb, host, 24, &residue);
        guest = host + off;
        g_assert_cmpuint(off & (GRANULE - 1), ==, 0);
        g_assert_cmpuint(kernel_round_up(off, 24), ==, off);
        g_assert_cmpint((int64_t)(guest - target), ==, residue);
        g_assert_cmpint((int64_t)(guest - floor_tb), >=, 0);
        g_assert_cmpint(residue, <, (int64_t)GRANULE);
        g_assert_cmpint(residue, >, -(int64_t)GRANULE);
        if (slack >= GRANULE / 2) {
            /* The nearer multiple is always allowed: half a granule. */
            g_assert_cmpint(residue, <=, (int64_t)GRANULE / 2);
            g_assert_cmpint(residue, >=, -(int64_t)GRANULE / 2);
        }
    }
    g_rand_free(r);
}

static void test_pick_pair(void)
{
    TBCalcSample s[] = {
        { .tb_before = 1000, .realtime_ns = 10, .tb_after = 1400 },
        { .tb_before = 2000, .realtime_ns = 20, .tb_after = 2101 },
        { .tb_before = 3000, .realtime_ns = 30, .tb_after = 2000 },
        { .tb_before = 4000, .realtime_ns = 40, .tb_after = 4300 },
    };
    TBCalcPair p;

    g_assert_true(tbcalc_pick_pair(s, G_N_ELEMENTS(s), &p));
    g_assert_cmpuint(p.tb, ==, 2050);
    g_assert_cmpint(p.realtime_ns, ==, 20);
    g_assert_cmpuint(p.err_ticks, ==, 51);
    g_assert_false(tbcalc_pick_pair(&s[2], 1, &p));
    g_assert_false(tbcalc_pick_pair(s, 0, &p));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/ppc-tb-calc/ns-to-ticks/basic", test_ns_to_ticks_basic);
    g_test_add_func("/ppc-tb-calc/ns-to-ticks/extremes",
                    test_ns_to_ticks_extremes);
    g_test_add_func("/ppc-tb-calc/ns-to-ticks/random",
                    test_ns_to_ticks_random);
    g_test_add_func("/ppc-tb-calc/decide/applied", test_decide_applied);
    g_test_add_func("/ppc-tb-calc/decide/cap", test_decide_cap);
    g_test_add_func("/ppc-tb-calc/decide/clamp-backwards",
                    test_decide_clamp_backwards);
    g_test_add_func("/ppc-tb-calc/decide/policies", test_decide_policies);
    g_test_add_func("/ppc-tb-calc/decide/tb-wrap", test_decide_tb_wrap);
    g_test_add_func("/ppc-tb-calc/decide/property", test_decide_property);
    g_test_add_func("/ppc-tb-calc/decide/raise-to-floor",
                    test_raise_to_floor);
    g_test_add_func("/ppc-tb-calc/kvm/round-up", test_kvm_round_up);
    g_test_add_func("/ppc-tb-calc/kvm/nearest", test_kvm_offset_nearest);
    g_test_add_func("/ppc-tb-calc/kvm/property", test_kvm_offset_property);
    g_test_add_func("/ppc-tb-calc/pick-pair", test_pick_pair);
    return g_test_run();
}
