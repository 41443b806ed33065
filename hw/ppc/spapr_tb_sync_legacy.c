/*
 * pseries timebase migration: the spapr/timebase-sync subsection that
 * the fork's earlier builds wrote (formats 1 and 2), before the pair
 * moved to the timebase state's own fields and its timebase/sync
 * subsection. Loaded, never written: it fills the timebase state as
 * those would have, so the rest of the load is the same.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "migration/vmstate.h"
#include "hw/ppc/ppc.h"
#include "hw/ppc/spapr.h"
#include "cpu.h"
#include "trace.h"

#define LEGACY_FORMAT           2   /* 2 added floor_tb */
#define LEGACY_F_USER_PAUSED    0x1u
#define LEGACY_F_KVM            0x2u  /* was informational only */
#define LEGACY_F_ALL            0x3u

/* Formats 1 and 2, as they come in */
typedef struct SpaprTbSyncLegacy {
    SpaprMachineState *parent;
    uint32_t version;
    uint32_t flags;
    uint64_t guest_tb;
    int64_t realtime_ns;
    uint64_t pairing_err_ticks;
    uint64_t tb_freq;
} SpaprTbSyncLegacy;

/* Format 2's floor, after the rest */
typedef struct SpaprTbSyncLegacyFloor {
    SpaprMachineState *parent;
    uint64_t floor_tb;
} SpaprTbSyncLegacyFloor;

static bool tb_sync_legacy_needed(void *opaque)
{
    return false;
}

static bool tb_sync_legacy_has_floor(void *opaque, int version_id)
{
    return version_id >= 2;
}

static int tb_sync_legacy_post_load(void *opaque, int version_id)
{
    SpaprTbSyncLegacy *w = opaque;
    PPCTimebase *tb = &w->parent->tb;
    PowerPCCPU *cpu = first_cpu ? POWERPC_CPU(first_cpu) : NULL;
    uint64_t freq = cpu && cpu->env.tb_env ? cpu->env.tb_env->tb_freq : 0;

    trace_spapr_tb_sync_load("spapr/timebase-sync", w->flags, w->guest_tb,
                             w->realtime_ns, w->guest_tb);
    if (w->version < 1 || w->version > LEGACY_FORMAT) {
        error_report("spapr/timebase-sync: field 'version': unsupported "
                     "format version %" PRIu32 " (this QEMU reads 1 and %d)",
                     w->version, LEGACY_FORMAT);
        return -EINVAL;
    }
    if (w->flags & ~LEGACY_F_ALL) {
        error_report("spapr/timebase-sync: field 'flags': unknown bits "
                     "0x%" PRIx32, w->flags & ~LEGACY_F_ALL);
        return -EINVAL;
    }
    if (w->tb_freq != freq) {
        error_report("spapr/timebase-sync: field 'tb_freq': the source's "
                     "timebase runs at %" PRIu64 " Hz, this machine's at %"
                     PRIu64 " Hz", w->tb_freq, freq);
        return -EINVAL;
    }
    /* What the timebase state and its timebase/sync subsection say now */
    tb->guest_timebase = w->guest_tb;
    tb->time_of_the_day_ns = w->realtime_ns;
    tb->sync_loaded = true;
    tb->sync_flags = w->flags & LEGACY_F_USER_PAUSED ?
                     PPC_TIMEBASE_SYNC_USER_PAUSED : 0;
    tb->sync_floor_tb = w->guest_tb;    /* format 1: no floor */
    tb->sync_pairing_err_ticks = w->pairing_err_ticks;
    return 0;
}

static int tb_sync_legacy_floor_post_load(void *opaque, int version_id)
{
    SpaprTbSyncLegacyFloor *w = opaque;
    PPCTimebase *tb = &w->parent->tb;

    tb->sync_floor_tb = MAX(tb->sync_floor_tb, w->floor_tb);
    return 0;
}

static const VMStateDescription vmstate_spapr_tb_sync_legacy_wire = {
    .name = "spapr/timebase-sync/wire",
    .post_load = tb_sync_legacy_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(version, SpaprTbSyncLegacy),
        VMSTATE_UINT32(flags, SpaprTbSyncLegacy),
        VMSTATE_UINT64(guest_tb, SpaprTbSyncLegacy),
        VMSTATE_INT64(realtime_ns, SpaprTbSyncLegacy),
        VMSTATE_UINT64(pairing_err_ticks, SpaprTbSyncLegacy),
        VMSTATE_UINT64(tb_freq, SpaprTbSyncLegacy),
        VMSTATE_UNUSED(8),      /* the source's tb_offset */
        VMSTATE_END_OF_LIST()
    },
};

static const VMStateDescription vmstate_spapr_tb_sync_legacy_floor = {
    .name = "spapr/timebase-sync/floor",
    .post_load = tb_sync_legacy_floor_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT64(floor_tb, SpaprTbSyncLegacyFloor),
        VMSTATE_END_OF_LIST()
    },
};

const VMStateDescription vmstate_spapr_tb_sync_legacy = {
    .name = "spapr/timebase-sync",
    .version_id = LEGACY_FORMAT,
    .minimum_version_id = 1,
    .needed = tb_sync_legacy_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_WITH_TMP(SpaprMachineState, SpaprTbSyncLegacy,
                         vmstate_spapr_tb_sync_legacy_wire),
        VMSTATE_WITH_TMP_TEST(SpaprMachineState, tb_sync_legacy_has_floor,
                              SpaprTbSyncLegacyFloor,
                              vmstate_spapr_tb_sync_legacy_floor),
        VMSTATE_END_OF_LIST()
    },
};
