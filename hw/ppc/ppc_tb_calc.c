/*
 * POWER timebase migration arithmetic (pure C, no QEMU headers).
 * See include/hw/ppc/ppc_tb_calc.h and docs/system/ppc/timebase-migration.rst.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "hw/ppc/ppc_tb_calc.h"

#include <stddef.h>
#include <string.h>

/* 64 x 64 -> 128 bit multiply, without relying on __int128. */
static void mul_64x64(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint64_t a_lo = (uint32_t)a, a_hi = a >> 32;
    uint64_t b_lo = (uint32_t)b, b_hi = b >> 32;
    uint64_t ll = a_lo * b_lo, lh = a_lo * b_hi;
    uint64_t hl = a_hi * b_lo, hh = a_hi * b_hi;
    uint64_t mid = (ll >> 32) + (uint32_t)lh + (uint32_t)hl;

    *lo = (mid << 32) | (uint32_t)ll;
    *hi = hh + (lh >> 32) + (hl >> 32) + (mid >> 32);
}

/* floor(a * b / c) for c > 0, saturating at UINT64_MAX. */
static uint64_t muldiv_sat(uint64_t a, uint64_t b, uint64_t c)
{
    uint64_t hi, lo, q = 0, r = 0;
    int i;

    mul_64x64(a, b, &hi, &lo);
    if (hi >= c) {
        return UINT64_MAX;      /* quotient does not fit in 64 bits */
    }
    /* Restoring long division of hi:lo by c; r < c holds throughout. */
    r = hi;
    for (i = 63; i >= 0; i--) {
        uint64_t carry = r >> 63;

        r = (r << 1) | ((lo >> i) & 1);
        q <<= 1;
        if (carry || r >= c) {
            r -= c;
            q |= 1;
        }
    }
    return q;
}

uint64_t tbcalc_ns_to_ticks(uint64_t ns, uint64_t freq)
{
    return muldiv_sat(ns, freq, TBCALC_NS_PER_SEC);
}

uint64_t tbcalc_ticks_to_ns(uint64_t ticks, uint64_t freq)
{
    if (freq == 0) {
        return 0;
    }
    return muldiv_sat(ticks, TBCALC_NS_PER_SEC, freq);
}

static void freeze(const TBCalcInput *in, TBCalcResult *out,
                   TBCalcReason reason)
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
    out->reason = TBCALC_REASON_POLICY_FREEZE;
    if (in->tb_freq == 0 || in->policy < 0 ||
        in->policy >= TBCALC_POLICY__MAX) {
        return false;
    }
    /* Computed in unsigned arithmetic: the clocks may be anywhere. */
    out->measured_ns = (int64_t)((uint64_t)in->now_realtime_ns -
                                 (uint64_t)in->saved_realtime_ns);

    if (in->policy == TBCALC_POLICY_FREEZE) {
        freeze(in, out, TBCALC_REASON_POLICY_FREEZE);
        return true;
    }
    if (in->user_paused && in->policy == TBCALC_POLICY_DOWNTIME) {
        freeze(in, out, TBCALC_REASON_USER_PAUSED);
        return true;
    }
    if (in->saved_realtime_ns == 0) {
        /* 0 is what QEMU writes under record/replay: "no value". */
        freeze(in, out, TBCALC_REASON_NO_REALTIME);
        return true;
    }
    /* Compare as real integers: measured_ns above may have wrapped. */
    if (in->now_realtime_ns < in->saved_realtime_ns) {
        freeze(in, out, TBCALC_REASON_CLOCK_BACKWARDS);
        return true;
    }
    delta_ns = (uint64_t)in->now_realtime_ns - (uint64_t)in->saved_realtime_ns;
    out->reason = TBCALC_REASON_APPLIED;
    if (in->cap_ns && delta_ns > in->cap_ns) {
        delta_ns = in->cap_ns;
        out->reason = TBCALC_REASON_CAPPED;
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
    res->reason = TBCALC_REASON_FLOOR;
    return true;
}

uint64_t tbcalc_kvm_round_up(uint64_t offset, unsigned granule_shift)
{
    uint64_t mask = (1ULL << granule_shift) - 1;

    return (offset + mask) & ~mask;
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

static const char *const policy_names[TBCALC_POLICY__MAX] = {
    [TBCALC_POLICY_FREEZE] = "freeze",
    [TBCALC_POLICY_DOWNTIME] = "downtime",
    [TBCALC_POLICY_WALLCLOCK] = "wallclock",
};

static const char *const reason_names[TBCALC_REASON__MAX] = {
    [TBCALC_REASON_APPLIED] = "applied",
    [TBCALC_REASON_POLICY_FREEZE] = "policy-freeze",
    [TBCALC_REASON_USER_PAUSED] = "user-paused",
    [TBCALC_REASON_NO_REALTIME] = "no-realtime",
    [TBCALC_REASON_CLOCK_BACKWARDS] = "clock-backwards",
    [TBCALC_REASON_CAPPED] = "capped",
    [TBCALC_REASON_FLOOR] = "floor",
};

const char *tbcalc_policy_name(TBCalcPolicy policy)
{
    if (policy < 0 || policy >= TBCALC_POLICY__MAX) {
        return "invalid";
    }
    return policy_names[policy];
}

const char *tbcalc_reason_name(TBCalcReason reason)
{
    if (reason < 0 || reason >= TBCALC_REASON__MAX) {
        return "invalid";
    }
    return reason_names[reason];
}

bool tbcalc_policy_parse(const char *name, TBCalcPolicy *policy)
{
    int i;

    for (i = 0; i < TBCALC_POLICY__MAX; i++) {
        if (strcmp(name, policy_names[i]) == 0) {
            *policy = i;
            return true;
        }
    }
    return false;
}
