/*
 * POWER timebase migration arithmetic.
 *
 * Everything that decides which guest timebase (TB) value a migrated or
 * resumed VM gets: ns <-> tick conversion, the host-clock delta with its
 * cap and clamp, the KVM 2^24 granule rounding, and the choice of the
 * tightest (TB, realtime) sample pair. Pure functions of their
 * arguments (no machine, clock or accelerator state), so that they are
 * unit-tested, sanitized and fuzzed on their own.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_PPC_PPC_TB_CALC_H
#define HW_PPC_PPC_TB_CALC_H

#include "qapi/qapi-types-ppc-timebase.h"

/* KVM Book3S HV applies KVM_REG_PPC_TB_OFFSET in units of 2^24 ticks. */
#define TBCALC_KVM_GRANULE_SHIFT 24

typedef struct TBCalcInput {
    uint64_t saved_tb;          /* guest TB when the VM stopped */
    int64_t saved_realtime_ns;  /* host CLOCK_REALTIME paired with it */
    int64_t now_realtime_ns;    /* host CLOCK_REALTIME at resume */
    uint64_t tb_freq;           /* ticks per second, > 0 */
    uint64_t cap_ns;            /* largest delta applied; 0: no cap */
    bool user_paused;           /* the stop was a user pause or savevm */
    PpcTimebasePolicy policy;
} TBCalcInput;

typedef struct TBCalcResult {
    uint64_t target_tb;         /* saved_tb + delta_ticks (mod 2^64) */
    uint64_t delta_ticks;       /* TB advance applied */
    uint64_t applied_ns;        /* delta_ticks as ns (before rounding) */
    int64_t measured_ns;        /* now - saved realtime (may be < 0) */
    PpcTimebaseAdjustReason reason;
} TBCalcResult;

/* One bracketed sample: TB read, realtime read, TB read. */
typedef struct TBCalcSample {
    uint64_t tb_before;
    int64_t realtime_ns;
    uint64_t tb_after;
} TBCalcSample;

/* The pair chosen from a set of samples, with its error bound. */
typedef struct TBCalcPair {
    uint64_t tb;                /* midpoint of the tightest bracket */
    int64_t realtime_ns;
    uint64_t err_ticks;         /* |true TB at realtime - tb| <= this */
} TBCalcPair;

/* ticks = ns * freq / 1e9, exact floor, saturating at UINT64_MAX. */
uint64_t tbcalc_ns_to_ticks(uint64_t ns, uint64_t freq);

/* ns = ticks * 1e9 / freq, exact floor, saturating at UINT64_MAX. */
uint64_t tbcalc_ticks_to_ns(uint64_t ticks, uint64_t freq);

/*
 * Decide the guest TB at resume. Never returns a target below saved_tb
 * (in the modular sense: delta_ticks is what is added). Returns false
 * (and leaves *out as "freeze") if the input is invalid (freq 0, bad
 * policy).
 */
bool tbcalc_decide(const TBCalcInput *in, TBCalcResult *out);

/*
 * Raise a decision to floor_tb, the lowest TB the guest may see again,
 * when it is above the target (the guest ran with a higher TB than
 * saved_tb: a start that failed after the vCPUs ran). delta_ticks is
 * then floor_tb - saved_tb and applied_ns its duration. Compared as
 * int64 differences (the TB wraps). Returns whether it raised.
 */
bool tbcalc_raise_to_floor(TBCalcResult *res, uint64_t saved_tb,
                           uint64_t floor_tb, uint64_t tb_freq);

/*
 * The KVM TB offset to request so that the guest TB (host_tb + offset)
 * lands as near as possible to target_tb while never below floor_tb,
 * given that the kernel only applies multiples of 2^granule_shift (it
 * rounds up). With target_tb >= floor_tb the error is at most half a
 * granule when the nearer multiple is allowed, less than a whole one
 * otherwise. *residue_ticks gets (guest TB obtained) - target_tb.
 * Precondition: target_tb >= floor_tb (tbcalc_raise_to_floor); a floor
 * above the target (as an int64 difference) is treated as equal to it:
 * the offset rounds up, and a floor more than a granule above would not
 * be kept.
 */
uint64_t tbcalc_kvm_offset(uint64_t target_tb, uint64_t floor_tb,
                           uint64_t host_tb, unsigned granule_shift,
                           int64_t *residue_ticks);

/*
 * Pick the sample with the tightest TB bracket. Samples whose TB went
 * backwards inside the bracket are ignored. Returns false if none is
 * usable.
 */
bool tbcalc_pick_pair(const TBCalcSample *samples, unsigned n,
                      TBCalcPair *pair);

#endif
