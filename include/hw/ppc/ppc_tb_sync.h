/*
 * pseries timebase migration: keep the guest timebase (TB) monotonic and
 * advanced by the real stop-to-start time across migration, on KVM and
 * TCG. See docs/system/ppc/timebase-migration.rst.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_PPC_PPC_TB_SYNC_H
#define HW_PPC_PPC_TB_SYNC_H

#include "qemu/notify.h"
#include "qom/object.h"
#include "migration/vmstate.h"
#include "qapi/qapi-types-migration.h"
#include "hw/ppc/ppc_tb_calc.h"

/*
 * The spapr/timebase-sync subsection the fork wrote before the pair
 * moved to upstream's timebase state (formats 1 and 2): read, never
 * written. 2 added floor_tb.
 */
#define PPC_TB_SYNC_LEGACY_FORMAT     2
#define PPC_TB_SYNC_LEGACY_F_USER_PAUSED 0x1u
#define PPC_TB_SYNC_LEGACY_F_KVM      0x2u  /* was informational only */
#define PPC_TB_SYNC_LEGACY_F_ALL      0x3u

#define PPC_TB_SYNC_DEFAULT_MAX_DELTA_MS 10000

/* A (guest TB, host realtime) pair. */
typedef struct PPCTBSyncSample {
    uint64_t tb;
    int64_t realtime_ns;
    uint64_t err_ticks;
    bool user_paused;
    /* KVM: the guest TB when the vCPUs stopped, the last it can have read */
    uint64_t floor_tb;
} PPCTBSyncSample;

/* The legacy spapr/timebase-sync subsection, as it came in. */
typedef struct PPCTBSyncLegacyWire {
    uint32_t version;
    uint32_t flags;
    uint64_t guest_tb;
    int64_t realtime_ns;
    uint64_t pairing_err_ticks;
    uint64_t tb_freq;
    uint64_t floor_tb;          /* format 2 */
} PPCTBSyncLegacyWire;

/* The last adjustment, for `info timebase` and query-timebase. */
typedef struct PPCTBSyncRecord {
    bool valid;
    int trigger;                /* TimebaseAdjustTrigger */
    bool from_subsection;
    TBCalcPolicy policy;
    uint64_t saved_tb;
    uint64_t floor_tb;
    int64_t saved_realtime_ns;
    uint64_t pairing_err_ns;
    int64_t resume_realtime_ns;
    TBCalcResult result;
    bool kvm;
    uint64_t kvm_host_tb;       /* host TB paired with resume_realtime_ns */
    int64_t kvm_requested_offset;
    int64_t kvm_applied_offset;
    int64_t kvm_residue_ticks;
} PPCTBSyncRecord;

/*
 * Where the guest TB stands between a stop and the next start. Every
 * path a VM's state takes is a sequence of these:
 *
 *   IDLE --stop--> STOPPED --start--> IDLE          (pause, failed migration)
 *   any --load--> LOADED --start--> IDLE            (migration, loadvm)
 *   LOADED --save--> LOADED                         (re-migrated before a
 *                                                    start: forwarded as is)
 */
typedef enum PPCTBSyncState {
    PPC_TB_SYNC_IDLE,           /* running, or never started */
    PPC_TB_SYNC_STOPPED,        /* stopped here: @held was sampled at stop */
    PPC_TB_SYNC_LOADED,         /* loaded, not started: @held came in */
} PPCTBSyncState;

typedef struct PPCTBSync PPCTBSync;

typedef struct PPCTBSyncMigrationNotifier {
    NotifierWithReturn notifier;
    PPCTBSync *s;
} PPCTBSyncMigrationNotifier;

struct PPCTBSync {
    /* Machine properties */
    bool send_subsection;       /* tb-sync */
    int policy;                 /* tb-policy (TimebasePolicy) */
    uint64_t max_delta_ms;      /* tb-max-delta-ms, 0: no cap */
    int64_t x_realtime_skew_ms; /* x-tb-realtime-skew-ms (tests only) */
    int64_t x_kvm_fail_vcpu;    /* x-tb-kvm-fail-vcpu (tests only), -1 */

    /* TCG: QEMU_CLOCK_VIRTUAL minus get_clock() while running */
    bool vclock_minus_mono_valid;
    int64_t vclock_minus_mono;

    PPCTBSyncState state;
    /* STOPPED, LOADED: the pair the next start carries on from */
    PPCTBSyncSample held;
    /* LOADED: by a migration (not loadvm); from spapr/timebase-sync */
    bool loaded_by_migration;
    bool loaded_legacy;
    /* An outgoing migration runs, COLO included (savevm never sets it) */
    bool migrating_out;
    /* A user pause turned into migration downtime, and the pause itself */
    bool pause_in_migration;
    PPCTBSyncSample pause;
    PPCTBSyncMigrationNotifier migration_notifier[MIG_MODE__MAX];

    /* The legacy subsection's fields, as they came in */
    PPCTBSyncLegacyWire legacy;

    PPCTBSyncRecord last;
};

struct SpaprMachineState;

/* Hooks called from hw/ppc/spapr.c */
void spapr_tb_sync_class_init(ObjectClass *oc);
void spapr_tb_sync_instance_init(struct SpaprMachineState *spapr);
void spapr_tb_sync_machine_init(struct SpaprMachineState *spapr);
void spapr_tb_sync_pre_save(struct SpaprMachineState *spapr);
void spapr_tb_sync_pre_load(struct SpaprMachineState *spapr);
int spapr_tb_sync_post_load(struct SpaprMachineState *spapr);
extern const VMStateDescription vmstate_spapr_tb_sync_legacy;

#endif
