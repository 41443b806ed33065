/*
 * pseries timebase migration: keep the guest timebase (TB) monotonic and
 * advanced by the real stop-to-start time across migration, on KVM and
 * TCG. See docs/system/ppc/timebase-migration.rst.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_PPC_SPAPR_TB_SYNC_H
#define HW_PPC_SPAPR_TB_SYNC_H

#include "qemu/notify.h"
#include "qom/object.h"
#include "migration/vmstate.h"
#include "qapi/qapi-types-migration.h"
#include "hw/ppc/ppc_tb_calc.h"

#define SPAPR_TB_SYNC_DEFAULT_MAX_DELTA_MS 10000

/* A (guest TB, host realtime) pair. */
typedef struct SpaprTbSyncSample {
    uint64_t tb;
    int64_t realtime_ns;
    uint64_t err_ticks;
    bool user_paused;
    /* KVM: the guest TB when the vCPUs stopped, the last it can have read */
    uint64_t floor_tb;
} SpaprTbSyncSample;

/* The last adjustment, for `info timebase` and query-timebase. */
typedef struct SpaprTbSyncRecord {
    bool valid;
    PpcTimebaseAdjustTrigger trigger;
    bool sync_state_loaded;
    PpcTimebasePolicy policy;
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
} SpaprTbSyncRecord;

/*
 * Where the guest TB stands between a stop and the next start. Every
 * path a VM's state takes is a sequence of these:
 *
 *   IDLE --stop--> STOPPED --start--> IDLE          (pause, failed migration)
 *   any --load--> LOADED --start--> IDLE            (migration, loadvm)
 *   LOADED --save--> LOADED                         (re-migrated before a
 *                                                    start: forwarded as is)
 */
typedef enum SpaprTbSyncState {
    SPAPR_TB_SYNC_IDLE,           /* running, or never started */
    SPAPR_TB_SYNC_STOPPED,        /* stopped here: @held was sampled at stop */
    SPAPR_TB_SYNC_LOADED,         /* loaded, not started: @held came in */
} SpaprTbSyncState;

typedef struct SpaprTbSync SpaprTbSync;

typedef struct SpaprTbSyncMigrationNotifier {
    NotifierWithReturn notifier;
    SpaprTbSync *s;
} SpaprTbSyncMigrationNotifier;

struct SpaprTbSync {
    /* Machine properties */
    bool send_sync_state;       /* tb-sync */
    PpcTimebasePolicy policy;   /* tb-policy */
    uint64_t max_delta_ms;      /* tb-max-delta-ms, 0: no cap */
    int64_t x_realtime_skew_ms; /* x-tb-realtime-skew-ms (tests only) */
    int64_t x_kvm_fail_vcpu;    /* x-tb-kvm-fail-vcpu (tests only), -1 */

    /* TCG: QEMU_CLOCK_VIRTUAL minus get_clock() while running */
    bool vclock_minus_mono_valid;
    int64_t vclock_minus_mono;

    SpaprTbSyncState state;
    /* STOPPED, LOADED: the pair the next start carries on from */
    SpaprTbSyncSample held;
    /* LOADED: by a migration (not loadvm) */
    bool loaded_by_migration;
    /* An outgoing migration runs, COLO included (savevm never sets it) */
    bool migrating_out;
    /* A user pause turned into migration downtime, and the pause itself */
    bool pause_in_migration;
    SpaprTbSyncSample pause;
    SpaprTbSyncMigrationNotifier migration_notifier[MIG_MODE__MAX];

    SpaprTbSyncRecord last;
};

struct SpaprMachineState;

/* Hooks called from hw/ppc/spapr.c */
void spapr_tb_sync_class_init(ObjectClass *oc);
void spapr_tb_sync_instance_init(struct SpaprMachineState *spapr);
void spapr_tb_sync_machine_init(struct SpaprMachineState *spapr);
void spapr_tb_sync_pre_save(struct SpaprMachineState *spapr);
void spapr_tb_sync_pre_load(struct SpaprMachineState *spapr);
int spapr_tb_sync_post_load(struct SpaprMachineState *spapr);

#endif
