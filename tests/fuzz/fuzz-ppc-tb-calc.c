/*
 * libFuzzer target for the timebase migration decision functions.
 * Asserts the invariants the unit tests check, on arbitrary inputs.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
        .policy = f.policy % (TBCALC_POLICY__MAX + 1),
    };
    if (!tbcalc_decide(&in, &res)) {
        CHECK(in.tb_freq == 0 || in.policy == TBCALC_POLICY__MAX);
        CHECK(res.target_tb == in.saved_tb);
        return 0;
    }
    CHECK(res.target_tb - in.saved_tb == res.delta_ticks);
    CHECK(!in.cap_ns || res.applied_ns <= in.cap_ns);
    CHECK(res.delta_ticks == tbcalc_ns_to_ticks(res.applied_ns, in.tb_freq));
    if (in.now_realtime_ns < in.saved_realtime_ns) {
        CHECK(res.delta_ticks == 0);
    }

    shift = 1 + f.shift % 40;
    granule = 1ULL << shift;
    /* Slack below 2^62: larger ones wrap the int64 comparison below. */
    floor_tb = res.target_tb - (f.slack >> 2);
    off = tbcalc_kvm_offset(res.target_tb, floor_tb, f.host_tb, shift,
                            &residue);
    CHECK((off & (granule - 1)) == 0);
    CHECK(tbcalc_kvm_round_up(off, shift) == off);
    CHECK((int64_t)(f.host_tb + off - res.target_tb) == residue);
    CHECK((int64_t)(f.host_tb + off - floor_tb) >= 0 ||
          (int64_t)(res.target_tb - floor_tb) < 0);
    CHECK(residue < (int64_t)granule && residue > -(int64_t)granule);
    return 0;
}
