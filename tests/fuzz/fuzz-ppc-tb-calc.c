/*
 * libFuzzer target for the timebase migration decision functions.
 * Asserts the invariants the unit tests check, on arbitrary inputs.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "hw/ppc/ppc_tb_calc.h"

#define CHECK(cond) do { if (!(cond)) { abort(); } } while (0)

struct fuzz_input {
    uint64_t saved_tb;
    int64_t saved_rt;
    int64_t now_rt;
    uint64_t freq;
    uint64_t cap_ns;
    uint64_t host_tb;
    uint64_t slack;
    uint64_t floor_above;
    uint8_t policy;
    uint8_t paused;
    uint8_t shift;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_input f;
    TBCalcInput in;
    TBCalcResult res;
    uint64_t floor_tb, off, granule;
    int64_t residue;
    unsigned shift;

    if (size < sizeof(f)) {
        return 0;
    }
    memcpy(&f, data, sizeof(f));
    in = (TBCalcInput) {
        .saved_tb = f.saved_tb,
        .saved_realtime_ns = f.saved_rt,
        .now_realtime_ns = f.now_rt,
        .tb_freq = f.freq,
        .cap_ns = f.cap_ns,
        .user_paused = f.paused & 1,
        .policy = f.policy % (PPC_TIMEBASE_POLICY__MAX + 1),
    };
    if (!tbcalc_decide(&in, &res)) {
        CHECK(in.tb_freq == 0 || in.policy == PPC_TIMEBASE_POLICY__MAX);
        CHECK(res.target_tb == in.saved_tb);
        return 0;
    }
    CHECK(res.target_tb - in.saved_tb == res.delta_ticks);
    CHECK(!in.cap_ns || res.applied_ns <= in.cap_ns);
    CHECK(res.delta_ticks == tbcalc_ns_to_ticks(res.applied_ns, in.tb_freq));
    if (in.now_realtime_ns < in.saved_realtime_ns) {
        CHECK(res.delta_ticks == 0);
    }

    /* A floor above the decision raises it to exactly the floor. */
    floor_tb = res.target_tb + (f.floor_above >> 2);
    {
        TBCalcResult raised = res;

        if (tbcalc_raise_to_floor(&raised, in.saved_tb, floor_tb,
                                  in.tb_freq)) {
            CHECK(floor_tb != res.target_tb);
            CHECK(raised.target_tb == floor_tb);
            CHECK(raised.delta_ticks == floor_tb - in.saved_tb);
            CHECK(raised.reason == PPC_TIMEBASE_ADJUST_REASON_FLOOR);
        } else {
            CHECK(floor_tb == res.target_tb);
            CHECK(raised.target_tb == res.target_tb &&
                  raised.delta_ticks == res.delta_ticks &&
                  raised.reason == res.reason);
        }
    }

    shift = 1 + f.shift % 40;
    granule = 1ULL << shift;
    /* Slack below 2^62: larger ones wrap the int64 comparison below. */
    floor_tb = res.target_tb - (f.slack >> 2);
    off = tbcalc_kvm_offset(res.target_tb, floor_tb, f.host_tb, shift,
                            &residue);
    CHECK((off & (granule - 1)) == 0);
        CHECK((int64_t)(f.host_tb + off - res.target_tb) == residue);
    CHECK((int64_t)(f.host_tb + off - floor_tb) >= 0 ||
          (int64_t)(res.target_tb - floor_tb) < 0);
    CHECK(residue < (int64_t)granule && residue > -(int64_t)granule);
    return 0;
}
