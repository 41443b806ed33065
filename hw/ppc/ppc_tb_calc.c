/*
 * POWER timebase migration arithmetic.
 * See include/hw/ppc/ppc_tb_calc.h and docs/system/ppc/timebase-migration.rst.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/host-utils.h"
#include "qemu/timer.h"
#include "hw/ppc/ppc_tb_calc.h"

/* floor(a * b / c) for c > 0, saturating at UINT64_MAX. */
static uint64_t muldiv_sat(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t lo, hi;

    mulu64(&lo, &hi, a, b);
    if (hi >= c) {
        return UINT64_MAX;      /* the quotient does not fit in 64 bits */
    }
    divu128(&lo, &hi, c);
    return lo;
}

uint64_t tbcalc_ns_to_ticks(uint64_t ns, uint64_t freq)
{
    return muldiv_sat(ns, freq, NANOSECONDS_PER_SECOND);
}

uint64_t tbcalc_ticks_to_ns(uint64_t ticks, uint64_t freq)
{
    if (freq == 0) {
        return 0;
    }
    return muldiv_sat(ticks, NANOSECONDS_PER_SECOND, freq);
}

static void freeze(const TBCalcInput *in, TBCalcResult *out,
                   PpcTimebaseAdjustReason reason)
{
    out->target_tb = in->saved_tb;
    out->delta_ticks = 0;
    out->applied_ns = 0;
    out->reason = reason;
}

bool tbcalc_decide(const TBCalcInput *in, TBCalcResult *out)
{
    uint64_t delta_ns;

    memset(out, 0, sizeof(*out));
    out->target_tb = in->saved_tb;
    out->reason = PPC_TIMEBASE_ADJUST_REASON_POLICY_FREEZE;
    if (in->tb_freq == 0 || (unsigned)in->policy >=
        PPC_TIMEBASE_POLICY__MAX) {
        return false;
    }
    /* Computed in unsigned arithmetic: the clocks may be anywhere. */
    out->measured_ns = (int64_t)((uint64_t)in->now_realtime_ns -
                                 (uint64_t)in->saved_realtime_ns);

    if (in->policy == PPC_TIMEBASE_POLICY_FREEZE) {
        freeze(in, out, PPC_TIMEBASE_ADJUST_REASON_POLICY_FREEZE);
        return true;
    }
    if (in->user_paused && in->policy == PPC_TIMEBASE_POLICY_DOWNTIME) {
        freeze(in, out, PPC_TIMEBASE_ADJUST_REASON_USER_PAUSED);
        return true;
    }
    if (in->saved_realtime_ns == 0) {
        /* 0 is what QEMU writes under record/replay: "no value". */
        freeze(in, out, PPC_TIMEBASE_ADJUST_REASON_NO_REALTIME);
        return true;
    }
    /* Compare as real integers: measured_ns above may have wrapped. */
    if (in->now_realtime_ns < in->saved_realtime_ns) {
        freeze(in, out, PPC_TIMEBASE_ADJUST_REASON_CLOCK_BACKWARDS);
        return true;
    }
    delta_ns = (uint64_t)in->now_realtime_ns - (uint64_t)in->saved_realtime_ns;
    out->reason = PPC_TIMEBASE_ADJUST_REASON_APPLIED;
    if (in->cap_ns && delta_ns > in->cap_ns) {
        delta_ns = in->cap_ns;
        out->reason = PPC_TIMEBASE_ADJUST_REASON_CAPPED;
    }
    out->applied_ns = delta_ns;
    out->delta_ticks = tbcalc_ns_to_ticks(delta_ns, in->tb_freq);
    out->target_tb = in->saved_tb + out->delta_ticks;
    return true;
}

bool tbcalc_raise_to_floor(TBCalcResult *res, uint64_t saved_tb,
                           uint64_t floor_tb, uint64_t tb_freq)
{
    if ((int64_t)(floor_tb - res->target_tb) <= 0) {
        return false;
    }
    res->target_tb = floor_tb;
    res->delta_ticks = floor_tb - saved_tb;
    res->applied_ns = tbcalc_ticks_to_ns(res->delta_ticks, tb_freq);
    res->reason = PPC_TIMEBASE_ADJUST_REASON_FLOOR;
    return true;
}

uint64_t tbcalc_kvm_offset(uint64_t target_tb, uint64_t floor_tb,
                           uint64_t host_tb, unsigned granule_shift,
                           int64_t *residue_ticks)
{
    uint64_t granule = 1ULL << granule_shift;
    uint64_t mask = granule - 1;
    uint64_t want = target_tb - host_tb;        /* exact offset, mod 2^64 */
    uint64_t down = want & ~mask;               /* guest TB below target */
    uint64_t below = want - down;               /* how far below, < granule */
    int64_t slack = (int64_t)(target_tb - floor_tb);
    uint64_t offset;

    if (slack < 0) {
        slack = 0;
    }
    /*
     * Rounding down lands `below` ticks under the target, rounding up
     * lands granule - below above it. Prefer the nearer one, but never
     * go under the floor (the TB the guest has already seen).
     */
    if (below == 0) {
        offset = want;
    } else if (below <= granule - below && below <= (uint64_t)slack) {
        offset = down;
    } else {
        offset = down + granule;
    }
    if (residue_ticks) {
        *residue_ticks = (int64_t)(offset - want);
    }
    return offset;
}

bool tbcalc_pick_pair(const TBCalcSample *samples, unsigned n,
                      TBCalcPair *pair)
{
    bool found = false;
    uint64_t best = 0;
    unsigned i;

    for (i = 0; i < n; i++) {
        const TBCalcSample *s = &samples[i];
        uint64_t width;

        if ((int64_t)(s->tb_after - s->tb_before) < 0) {
            continue;
        }
        width = s->tb_after - s->tb_before;
        if (!found || width < best) {
            found = true;
            best = width;
            pair->tb = s->tb_before + width / 2;
            pair->realtime_ns = s->realtime_ns;
            pair->err_ticks = width - width / 2;
        }
    }
    return found;
}
