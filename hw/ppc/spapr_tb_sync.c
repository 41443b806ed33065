/*
 * pseries timebase migration: keep the guest timebase (TB) monotonic and
 * advanced by the real stop-to-start time across migration, on KVM and
 * TCG.
 *
 * When the VM stops, a (guest TB, host CLOCK_REALTIME) pair is sampled,
 * once. It travels in the timebase state's own fields (guest_timebase,
 * time_of_the_day_ns), which every QEMU reads: an older destination gets a
 * monotonic, frozen TB from it. What that pair cannot say (a user pause
 * a migration carries, a floor raised by a failed start) goes in the
 * timebase/sync subsection, sent only then. When the VM starts,
 * ppc_tb_calc decides the TB advance from the realtime delta, the
 * policy, the cap and the clamp; it is then applied
 * by advancing the virtual clock (TCG: TB, DEC and every virtual timer
 * move together) or by programming KVM_REG_PPC_TB_OFFSET on every vCPU,
 * rounded to the kernel's 2^24-tick granule towards the nearest value
 * that does not go under the saved TB.
 *
 * See docs/system/ppc/timebase-migration.rst.
 *
 * Copyright (c) 2026 qemu-tb-fork developers
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/error-report.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/host-utils.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "qapi/util.h"
#include "qapi/qapi-commands-ppc-timebase-target.h"
#include "qapi/qapi-events-ppc-timebase-target.h"
#include "qapi/qapi-visit-ppc-timebase-target.h"
#include "qobject/qdict.h"
#include "monitor/monitor.h"
#include "monitor/hmp-target.h"
#include "monitor/hmp.h"
#include "migration/misc.h"
#include "migration/vmstate.h"
#include "system/runstate.h"
#include "system/kvm.h"
#include "system/cpu-timers.h"
#include "system/replay.h"
#include "hw/boards.h"
#include "hw/ppc/ppc.h"
#include "hw/ppc/spapr.h"
#include "hw/ppc/spapr_cpu_core.h"
#include "hw/ppc/spapr_nested.h"
#include "hw/ppc/spapr_tb_sync.h"
#include "cpu.h"
#include "kvm_ppc.h"
#include "trace.h"

/* Samples taken to find the tightest (host TB, realtime) bracket. */
#define TB_SYNC_PAIR_TRIES 5

static SpaprTbSync *tb_sync_of(SpaprMachineState *spapr)
{
    return &spapr->tb_sync;
}

static PowerPCCPU *tb_sync_first_cpu(void)
{
    return first_cpu ? POWERPC_CPU(first_cpu) : NULL;
}

static uint64_t tb_sync_freq(void)
{
    PowerPCCPU *cpu = tb_sync_first_cpu();

    return cpu && cpu->env.tb_env ? cpu->env.tb_env->tb_freq : 0;
}

static int64_t tb_sync_realtime_ns(SpaprTbSync *s)
{
    struct timespec ts;
    int64_t ns;

    if (replay_mode != REPLAY_MODE_NONE) {
        return 0;   /* as timebase_save(): none under record/replay */
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    ns = (int64_t)ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec;
    /* The test-only skew is bounded when set: saturate, never wrap. */
    if (sadd64_overflow(ns, s->x_realtime_skew_ms * (int64_t)SCALE_MS, &ns)) {
        ns = s->x_realtime_skew_ms < 0 ? INT64_MIN : INT64_MAX;
    }
    return ns;
}

/*
 * The L1 guest's TB offset. Under TCG it is always 0 (a pseries guest
 * cannot write its TB, and QEMU advances the virtual clock instead); env
 * may hold an L2's offset while a vCPU runs one (nested HV), and the
 * saved L1 state has no offset under the nested-PAPR API. Under KVM the
 * kernel runs the L2s and env holds the L1's.
 */
static int64_t tb_sync_l1_offset(PowerPCCPU *cpu)
{
    return kvm_enabled() ? cpu->env.tb_env->tb_offset : 0;
}

/* Virtual clock in TB ticks: what TCG adds tb_offset to. */
static uint64_t tb_sync_vclock_ticks(PowerPCCPU *cpu)
{
    return cpu_ppc_get_tb(cpu->env.tb_env,
                          qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL), 0);
}

/* TCG: the L1 guest's TB at virtual clock time vclock. */
static uint64_t tb_sync_tcg_guest_tb(PowerPCCPU *cpu, int64_t vclock)
{
    return cpu_ppc_get_tb(cpu->env.tb_env, vclock, tb_sync_l1_offset(cpu));
}

/* KVM: the host TB and realtime as one pair, the clock read bracketed. */
static bool tb_sync_host_pair(SpaprTbSync *s, TBCalcPair *pair)
{
    TBCalcSample samples[TB_SYNC_PAIR_TRIES];
    int i;

    for (i = 0; i < TB_SYNC_PAIR_TRIES; i++) {
        samples[i].tb_before = cpu_get_host_ticks();
        samples[i].realtime_ns = tb_sync_realtime_ns(s);
        samples[i].tb_after = cpu_get_host_ticks();
    }
    return tbcalc_pick_pair(samples, TB_SYNC_PAIR_TRIES, pair);
}

static bool tb_sync_sample(SpaprTbSync *s, SpaprTbSyncSample *out)
{
    PowerPCCPU *cpu = tb_sync_first_cpu();

    if (!cpu || !cpu->env.tb_env) {
        return false;
    }
    if (kvm_enabled()) {
        TBCalcPair pair;

        if (!tb_sync_host_pair(s, &pair)) {
            return false;
        }
        out->tb = pair.tb + tb_sync_l1_offset(cpu);
        out->realtime_ns = pair.realtime_ns;
        out->err_ticks = pair.err_ticks;
    } else {
        /* TCG: the TB follows the virtual clock, frozen while stopped. */
        int64_t vclock = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
        int64_t mono = get_clock();

        out->tb = tb_sync_tcg_guest_tb(cpu, vclock);
        out->realtime_ns = tb_sync_realtime_ns(s);
        out->err_ticks = 0;
        if (s->vclock_minus_mono_valid && !runstate_is_running() &&
            out->realtime_ns) {
            /*
             * The virtual clock froze some time ago (vCPUs were paused and
             * other handlers ran since): date the freeze with the
             * monotonic clock it was running from, so the pair is exact.
             */
            int64_t frozen_mono = vclock - s->vclock_minus_mono;

            if (frozen_mono <= mono) {
                out->realtime_ns -= mono - frozen_mono;
            }
        }
    }
    out->floor_tb = out->tb;
    out->user_paused = false;
    return true;
}

/* Remember how the running virtual clock relates to the monotonic one. */
static void tb_sync_note_running_vclock(SpaprTbSync *s)
{
    if (!kvm_enabled() && !icount_enabled()) {
        s->vclock_minus_mono = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) -
                               get_clock();
        s->vclock_minus_mono_valid = true;
    }
}

static bool tb_sync_is_user_pause(RunState state)
{
    return state == RUN_STATE_PAUSED || state == RUN_STATE_SAVE_VM ||
           state == RUN_STATE_DEBUG;
}

/* ---- Applying a decision ---- */

static void tb_sync_apply_tcg(const SpaprTbSyncRecord *rec)
{
    PowerPCCPU *cpu = tb_sync_first_cpu();
    int64_t vclock = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    uint64_t now_tb = tb_sync_tcg_guest_tb(cpu, vclock);
    int64_t ticks = (int64_t)(rec->result.target_tb - now_tb);
    int64_t ns;

    /* Never more than the decided (capped) advance, whatever now_tb is. */
    if (ticks > 0) {
        ticks = MIN((uint64_t)ticks, rec->result.delta_ticks);
    }
    if (ticks <= 0) {
        /* Already at or past the target: never move the TB back. */
        trace_spapr_tb_sync_tcg_advance(now_tb, rec->result.target_tb, 0);
        return;
    }
    if (icount_enabled()) {
        warn_report_once("timebase: cannot advance the virtual clock under "
                         "icount; the guest TB stays frozen");
        return;
    }
    /*
     * Advance the virtual clock rather than tb_offset: DEC, HDEC and every
     * virtual timer then see the same elapsed time (an expired DEC fires
     * at resume), and tb_offset stays 0, so a QEMU destination that does
     * not migrate it still sees a monotonic TB.
     */
    ns = tbcalc_ticks_to_ns(ticks, cpu->env.tb_env->tb_freq);
    cpu_clock_advance(ns);
    qemu_clock_notify(QEMU_CLOCK_VIRTUAL);
    trace_spapr_tb_sync_tcg_advance(now_tb, rec->result.target_tb, ns);
}

/*
 * Program the same offset on every vCPU, or none: vCPUs with different
 * TBs hang a Linux guest.
 */
static bool tb_sync_apply_kvm(SpaprTbSync *s, SpaprTbSyncRecord *rec,
                              Error **errp)
{
    int64_t residue, applied = 0;
    uint64_t offset;
    CPUState *cs, *undo;
    int ret = 0;

    /*
     * The target is for resume_realtime_ns and kvm_host_tb was read with
     * it; the floor is the TB the guest last saw, not the later pre_save
     * sample, so the nearest 2^24 multiple is rarely ruled out.
     */
    offset = tbcalc_kvm_offset(rec->result.target_tb, rec->floor_tb,
                               rec->kvm_host_tb, TBCALC_KVM_GRANULE_SHIFT,
                               &residue);
    rec->kvm = true;
    rec->kvm_requested_offset = offset;
    CPU_FOREACH(cs) {
        PowerPCCPU *cpu = POWERPC_CPU(cs);
        int64_t got = 0;

        if (cs->cpu_index == s->x_kvm_fail_vcpu) {
            ret = -EINVAL;      /* fault injection, for tests */
        } else {
            ret = kvmppc_set_reg_tb_offset(cpu, offset);
        }
        if (!ret) {
            ret = kvmppc_get_reg_tb_offset(cpu, &got);
        }
        trace_spapr_tb_sync_kvm_set(cs->cpu_index, offset, got, ret);
        if (ret) {
            error_setg_errno(errp, -ret, "timebase: setting "
                             "KVM_REG_PPC_TB_OFFSET to 0x%" PRIx64
                             " on vCPU %d failed", offset, cs->cpu_index);
            break;
        }
        if (cs == first_cpu) {
            applied = got;
        } else if (got != applied) {
            error_setg(errp, "timebase: KVM applied TB offset 0x%" PRIx64
                       " on vCPU %d but 0x%" PRIx64 " on vCPU %d",
                       (uint64_t)got, cs->cpu_index, (uint64_t)applied,
                       first_cpu->cpu_index);
            ret = -EIO;
            break;
        }
    }
    if (ret) {
        /* Back to the offset they all had: QEMU's copy of it. */
        CPU_FOREACH(undo) {
            PowerPCCPU *cpu = POWERPC_CPU(undo);

            if (kvmppc_set_reg_tb_offset(cpu, cpu->env.tb_env->tb_offset)) {
                error_report("timebase: restoring KVM_REG_PPC_TB_OFFSET "
                             "0x%" PRIx64 " on vCPU %d failed",
                             (uint64_t)cpu->env.tb_env->tb_offset,
                             undo->cpu_index);
            }
            if (undo == cs) {
                break;
            }
        }
        return false;
    }
    if ((uint64_t)applied != offset) {
        warn_report("timebase: KVM applied TB offset 0x%" PRIx64
                    " instead of 0x%" PRIx64, (uint64_t)applied, offset);
    }
    CPU_FOREACH(cs) {
        POWERPC_CPU(cs)->env.tb_env->tb_offset = applied;
    }
    rec->kvm_applied_offset = applied;
    rec->kvm_residue_ticks = residue + (int64_t)((uint64_t)applied - offset);
    return true;
}

/* The held pair was applied (or cannot be): the VM runs from here. */
static void tb_sync_consumed(SpaprTbSync *s)
{
    s->state = SPAPR_TB_SYNC_IDLE;
    /* A pause re-dated for a migration ends here, not at a later DONE. */
    s->pause_in_migration = false;
}

/* A pause re-dated for a migration is a pause again: keep any floor. */
static void tb_sync_end_pause_in_migration(SpaprTbSync *s)
{
    uint64_t floor_tb = s->held.floor_tb;

    s->held = s->pause;
    s->held.floor_tb = MAX(s->held.floor_tb, floor_tb);
}

/* ---- Starting: saved pair, time pair, decision, apply, report ---- */

/*
 * The pair this start carries on from and what it follows; false on a
 * first start (nothing to carry over).
 */
static bool tb_sync_saved_pair(SpaprMachineState *spapr,
                               SpaprTbSyncRecord *rec, TBCalcInput *in)
{
    SpaprTbSync *s = tb_sync_of(spapr);

    if (s->state != SPAPR_TB_SYNC_IDLE && s->pause_in_migration) {
        /*
         * `cont` while a migration of a paused VM runs: on this host it
         * was a user pause, whatever the migration made of it.
         */
        tb_sync_end_pause_in_migration(s);
    }
    switch (s->state) {
    case SPAPR_TB_SYNC_IDLE:
        return false;
    case SPAPR_TB_SYNC_STOPPED:
        rec->trigger = PPC_TIMEBASE_ADJUST_TRIGGER_RESUME;
        break;
    case SPAPR_TB_SYNC_LOADED:
        rec->trigger = s->loaded_by_migration ?
            PPC_TIMEBASE_ADJUST_TRIGGER_MIGRATION :
            PPC_TIMEBASE_ADJUST_TRIGGER_LOADVM;
        rec->sync_state_loaded = spapr->tb.sync_loaded;
        break;
    }
    in->saved_tb = s->held.tb;
    in->saved_realtime_ns = s->held.realtime_ns;
    /* A snapshot is a pause by definition. */
    in->user_paused = s->held.user_paused ||
        rec->trigger == PPC_TIMEBASE_ADJUST_TRIGGER_LOADVM;
    rec->saved_tb = in->saved_tb;
    rec->saved_realtime_ns = in->saved_realtime_ns;
    rec->floor_tb = s->held.floor_tb;
    rec->pairing_err_ns = tbcalc_ticks_to_ns(s->held.err_ticks, in->tb_freq);
    return true;
}

/* Now: host realtime and, under KVM, the host TB read with it. */
static void tb_sync_time_pair(SpaprTbSync *s, SpaprTbSyncRecord *rec,
                              TBCalcInput *in)
{
    TBCalcPair now;

    if (kvm_enabled() && tb_sync_host_pair(s, &now)) {
        in->now_realtime_ns = now.realtime_ns;
        rec->kvm_host_tb = now.tb;
        return;
    }
    in->now_realtime_ns = tb_sync_realtime_ns(s);
    rec->kvm_host_tb = kvm_enabled() ? cpu_get_host_ticks() : 0;
}

/* The advance: policy, clamp and cap, and never below the floor. */
static void tb_sync_decide(const TBCalcInput *in, SpaprTbSyncRecord *rec)
{
    TBCalcResult *res = &rec->result;

    if (!tbcalc_decide(in, res)) {
        error_report("timebase: invalid input (frequency %" PRIu64
                     ", policy %d): TB left frozen", in->tb_freq,
                     in->policy);
    }
    if (tbcalc_raise_to_floor(res, in->saved_tb, rec->floor_tb,
                              in->tb_freq)) {
        warn_report("timebase: the guest already read a later TB (its vCPUs "
                    "ran in a start that failed): starting from it, %" PRIu64
                    " ms past the one saved", res->applied_ns / SCALE_MS);
    }
    rec->resume_realtime_ns = in->now_realtime_ns;
    trace_spapr_tb_sync_decide(PpcTimebaseAdjustTrigger_str(rec->trigger),
                               in->saved_tb, in->saved_realtime_ns,
                               in->now_realtime_ns, res->applied_ns,
                               res->delta_ticks,
                               PpcTimebaseAdjustReason_str(res->reason));
    if (res->reason == PPC_TIMEBASE_ADJUST_REASON_CLOCK_BACKWARDS ||
        res->reason == PPC_TIMEBASE_ADJUST_REASON_CAPPED) {
        /* Worth the operator's eye: it lands in libvirt's domain log. */
        warn_report("timebase: %s: the host clock says %" PRId64
                    " ms passed since the VM stopped; the guest timebase "
                    "advanced %" PRIu64 " ms",
                    res->reason == PPC_TIMEBASE_ADJUST_REASON_CAPPED ?
                    "advance capped at tb-max-delta-ms" :
                    "host clock behind the source's, advance clamped to 0",
                    res->measured_ns / (int64_t)SCALE_MS,
                    res->applied_ns / SCALE_MS);
        trace_spapr_tb_sync_clamp(PpcTimebaseAdjustReason_str(res->reason),
                                  res->measured_ns, res->applied_ns);
    }
}

static PpcTimebaseAdjustment *
tb_sync_record_to_qapi(const SpaprTbSyncRecord *rec)
{
    PpcTimebaseAdjustment *a = g_new0(PpcTimebaseAdjustment, 1);

    a->trigger = rec->trigger;
    a->sync_state_loaded = rec->sync_state_loaded;
    a->policy = rec->policy;
    a->saved_tb = rec->saved_tb;
    a->saved_realtime_ns = rec->saved_realtime_ns;
    a->pairing_error_ns = rec->pairing_err_ns;
    a->resume_realtime_ns = rec->resume_realtime_ns;
    a->measured_ns = rec->result.measured_ns;
    a->applied_ns = rec->result.applied_ns;
    a->delta_ticks = rec->result.delta_ticks;
    a->target_tb = rec->result.target_tb;
    a->reason = rec->result.reason;
    if (rec->kvm) {
        a->has_kvm_requested_offset = true;
        a->kvm_requested_offset = rec->kvm_requested_offset;
        a->has_kvm_applied_offset = true;
        a->kvm_applied_offset = rec->kvm_applied_offset;
        a->has_kvm_residue_ticks = true;
        a->kvm_residue_ticks = rec->kvm_residue_ticks;
    }
    return a;
}

/* Kept for query-ppc-timebase, and sent as PPC_TIMEBASE_ADJUSTED. */
static void tb_sync_report(SpaprTbSync *s, const SpaprTbSyncRecord *rec)
{
    PpcTimebaseAdjustment *event = tb_sync_record_to_qapi(rec);

    s->last = *rec;
    qapi_event_send_ppc_timebase_adjusted(event);
    qapi_free_PpcTimebaseAdjustment(event);
}

static void tb_sync_resume(SpaprMachineState *spapr)
{
    SpaprTbSync *s = tb_sync_of(spapr);
    SpaprTbSyncRecord rec = { .valid = true, .policy = s->policy };
    TBCalcInput in = {
        .tb_freq = tb_sync_freq(),
        .cap_ns = s->max_delta_ms * SCALE_MS,
        .policy = s->policy,
    };
    Error *err = NULL;

    if (!tb_sync_saved_pair(spapr, &rec, &in)) {
        return;
    }
    if (kvm_enabled() && !kvmppc_has_reg_tb_offset()) {
        /*
         * A KVM without the register (KVM-PR): the guest reads the host
         * TB, which ran on through the stop. Nothing can be applied;
         * incoming migrations were refused in post_load.
         */
        warn_report_once("timebase: this kernel does not support "
                         "KVM_REG_PPC_TB_OFFSET: the guest timebase "
                         "follows the host's through every stop, "
                         "whatever the policy");
        trace_spapr_tb_sync_kvm_unsupported(
            PpcTimebaseAdjustTrigger_str(rec.trigger));
        tb_sync_consumed(s);
        return;
    }
    tb_sync_time_pair(s, &rec, &in);
    tb_sync_decide(&in, &rec);
    if (!kvm_enabled()) {
        tb_sync_apply_tcg(&rec);
    } else if (!tb_sync_apply_kvm(s, &rec, &err)) {
        /*
         * The vCPUs were put back to the offset they all had, and the VM
         * is stopped as soon as the main loop runs (a state change
         * handler cannot keep vm_start from resuming the vCPUs). The pair
         * stays held, for a later start or migration.
         */
        error_append_hint(&err, "The VM is being stopped (internal-error) "
                          "with its previous timebase offset.\n");
        error_report_err(err);
        qemu_system_vmstop_request_prepare();
        qemu_system_vmstop_request(RUN_STATE_INTERNAL_ERROR);
        return;
    }
    tb_sync_consumed(s);
    tb_sync_report(s, &rec);
}

/*
 * A user pause that meets a migration (libvirt pauses the VM for a
 * non-live migration, for `virsh save` and for --timeout-suspend) is
 * downtime from the later of the pause and the migration's start, with
 * the TB where the pause froze it: the pair is re-dated. When the
 * migration ends (failed, or done and the source is continued anyway),
 * the VM is still paused there, and the pause goes on.
 */
static void tb_sync_pause_to_downtime(SpaprTbSync *s)
{
    if (s->policy != PPC_TIMEBASE_POLICY_DOWNTIME) {
        return;     /* freeze and wallclock count no pause differently */
    }
    s->pause = s->held;
    s->pause_in_migration = true;
    s->held.realtime_ns = tb_sync_realtime_ns(s);
    s->held.err_ticks = 0;      /* a frozen TB: the pair is exact */
    s->held.user_paused = false;
    trace_spapr_tb_sync_save("pause turned into migration downtime",
                           s->held.tb, s->held.realtime_ns, 0, false);
}

static void tb_sync_vm_state_change(void *opaque, bool running,
                                    RunState state)
{
    SpaprMachineState *spapr = opaque;
    SpaprTbSync *s = tb_sync_of(spapr);

    if (running) {
        tb_sync_resume(spapr);
        tb_sync_note_running_vclock(s);
        return;
    }
    if (s->state != SPAPR_TB_SYNC_IDLE) {
        /*
         * The start could not apply the pair (KVM refused): keep it. The
         * vCPUs ran for a moment with the offset they had (after a load:
         * the one tb_sync_kvm_hold set): whatever the guest read then, a
         * later start must not put the TB below it.
         */
        SpaprTbSyncSample now;

        if (tb_sync_sample(s, &now)) {
            s->held.floor_tb = MAX(s->held.floor_tb, now.tb);
        }
        return;
    }
    /* The one sample of this stop: saves and the next start use it. */
    if (!tb_sync_sample(s, &s->held)) {
        return;
    }
    /*
     * A background snapshot stops the VM as "paused" from the migration
     * thread: that stop is the migration's own, not the user's.
     */
    s->held.user_paused = tb_sync_is_user_pause(state) &&
                          !migration_thread_is_self();
    s->state = SPAPR_TB_SYNC_STOPPED;
    trace_spapr_tb_sync_save("stop", s->held.tb, s->held.realtime_ns,
                           s->held.err_ticks, s->held.user_paused);
    if (s->held.user_paused && migration_is_running()) {
        /* Paused while a migration runs (--timeout-suspend): downtime. */
        tb_sync_pause_to_downtime(s);
    }
}

static int tb_sync_migration_event(NotifierWithReturn *notifier,
                                   MigrationEvent *e, Error **errp)
{
    SpaprTbSync *s = container_of(notifier, SpaprTbSyncMigrationNotifier,
                                notifier)->s;

    switch (e->type) {
    case MIG_EVENT_PRECOPY_SETUP:
        s->migrating_out = true;
        /* Paused, or a snapshot loaded and not started */
        if (s->state != SPAPR_TB_SYNC_IDLE && s->held.user_paused) {
            tb_sync_pause_to_downtime(s);
        }
        break;
    case MIG_EVENT_PRECOPY_DONE:    /* the device state has gone out */
    case MIG_EVENT_PRECOPY_FAILED:
        s->migrating_out = false;
        if (s->pause_in_migration && s->state != SPAPR_TB_SYNC_IDLE) {
            tb_sync_end_pause_in_migration(s);
        }
        s->pause_in_migration = false;
        break;
    default:
        break;
    }
    return 0;
}

/* ---- The stream ---- */

/*
 * Before the timebase state goes out: write the pair the next start
 * carries on from to the timebase state's fields, and decide whether the
 * timebase/sync subsection must go with it.
 */
void spapr_tb_sync_pre_save(SpaprMachineState *spapr)
{
    SpaprTbSync *s = tb_sync_of(spapr);
    PPCTimebase *tb = &spapr->tb;
    SpaprTbSyncSample pair;
    uint64_t floor_tb;
    bool needed;

    tb->sync_needed = false;
    if (s->state == SPAPR_TB_SYNC_IDLE) {
        /* Never started: the TB it would start from. */
        if (!tb_sync_sample(s, &pair)) {
            return;     /* no vCPU yet: timebase_pre_save() says so */
        }
    } else {
        pair = s->held;
    }
    floor_tb = MAX(pair.floor_tb, pair.tb);
    /*
     * A snapshot is a pause to whoever loads it, so savevm (of a running
     * or a paused VM) needs no flag; a migration of a paused VM under
     * the downtime policy was turned into downtime when it began
     * (tb_sync_pause_to_downtime). The pairing error only informs: it
     * goes along when the subsection does.
     */
    needed = s->send_sync_state &&
        ((pair.user_paused && s->migrating_out) || floor_tb > pair.tb);
    /*
     * Without the subsection the floor cannot travel: start from it,
     * never below (ahead by what the failed start showed).
     */
    tb->guest_timebase = needed ? pair.tb : floor_tb;
    tb->time_of_the_day_ns = pair.realtime_ns;
    /* Final: timebase_pre_save() must not read the TB again. */
    tb->runstate_paused = true;
    tb->sync_needed = needed;
    tb->sync_flags = pair.user_paused ? PPC_TIMEBASE_SYNC_USER_PAUSED : 0;
    tb->sync_floor_tb = floor_tb;
    tb->sync_pairing_err_ticks = pair.err_ticks;
    trace_spapr_tb_sync_stream(tb->guest_timebase, tb->time_of_the_day_ns,
                             needed, tb->sync_flags, floor_tb,
                             pair.err_ticks);
}

/*
 * KVM, after a load: until the start applies its decision, the vCPUs
 * hold the offset that puts the guest TB at the TB it must not go under
 * (rounded up to the kernel's granule). A start that cannot apply its
 * decision then leaves them there, running on from the saved TB, not
 * from this host's, which may be lower; and a kernel that refuses the
 * offset fails the load, while the source can still run on.
 */
static int tb_sync_kvm_hold(SpaprTbSync *s)
{
    uint64_t floor_tb = MAX(s->held.floor_tb, s->held.tb);
    uint64_t offset = tbcalc_kvm_offset(floor_tb, floor_tb,
                                        cpu_get_host_ticks(),
                                        TBCALC_KVM_GRANULE_SHIFT, NULL);
    CPUState *cs;

    CPU_FOREACH(cs) {
        PowerPCCPU *cpu = POWERPC_CPU(cs);
        int64_t got = 0;
        int ret = kvmppc_set_reg_tb_offset(cpu, offset);

        if (!ret) {
            ret = kvmppc_get_reg_tb_offset(cpu, &got);
        }
        trace_spapr_tb_sync_kvm_set(cs->cpu_index, offset, got, ret);
        if (ret) {
            error_report("timebase: setting KVM_REG_PPC_TB_OFFSET to 0x%"
                         PRIx64 " on vCPU %d failed: %s", offset,
                         cs->cpu_index, strerror(-ret));
            return ret;
        }
        cpu->env.tb_env->tb_offset = got;
    }
    return 0;
}

/* A load begins: whatever a previous load or stop left is replaced. */
void spapr_tb_sync_pre_load(SpaprMachineState *spapr)
{
    SpaprTbSync *s = tb_sync_of(spapr);

    s->state = SPAPR_TB_SYNC_IDLE;
    s->pause_in_migration = false;
    s->held = (SpaprTbSyncSample) { 0 };
    /* timebase's pre_load does it too, but a version 1 spapr has none */
    spapr->tb.sync_loaded = false;
}

int spapr_tb_sync_post_load(SpaprMachineState *spapr)
{
    SpaprTbSync *s = tb_sync_of(spapr);
    PPCTimebase *tb = &spapr->tb;

    /* loadvm, snapshot-load and -loadvm run in another state */
    s->loaded_by_migration = runstate_check(RUN_STATE_INMIGRATE) ||
                             runstate_check(RUN_STATE_COLO);
    if (kvm_enabled() && s->loaded_by_migration &&
        !kvmppc_has_reg_tb_offset() &&
        !SPAPR_MACHINE_GET_CLASS(spapr)->pre_10_0_timebase_sync) {
        /*
         * Refuse: the guest would read this host's TB, from another
         * origin. A snapshot on the same host is allowed, as before.
         */
        error_report("timebase: this kernel does not support "
                     "KVM_REG_PPC_TB_OFFSET: the guest timebase cannot be "
                     "carried over");
        return -EINVAL;
    }
    /*
     * The pair as the source wrote it: at the stop (this series), or when
     * it saved (a QEMU without it). Under TCG a source without it wrote
     * its host TB in guest_timebase, meaningless here: the guest TB is
     * where the virtual clock (loaded before the machine) puts it, which
     * is also what a source with this series wrote.
     */
    s->held = (SpaprTbSyncSample) {
        .tb = kvm_enabled() ? tb->guest_timebase :
            tb_sync_tcg_guest_tb(tb_sync_first_cpu(),
                                 qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)),
        .realtime_ns = tb->time_of_the_day_ns,
    };
    s->held.floor_tb = s->held.tb;
    if (tb->sync_loaded) {
        s->held.user_paused = tb->sync_flags & PPC_TIMEBASE_SYNC_USER_PAUSED;
        s->held.floor_tb = MAX(s->held.tb, tb->sync_floor_tb);
        s->held.err_ticks = tb->sync_pairing_err_ticks;
    }
    trace_spapr_tb_sync_load(tb->sync_loaded ? "timebase with timebase/sync" :
                             "timebase", s->held.user_paused, s->held.tb,
                             s->held.realtime_ns, s->held.floor_tb);
    if (kvm_enabled() && kvmppc_has_reg_tb_offset() && tb_sync_kvm_hold(s)) {
        return -EINVAL;
    }
    if (!s->loaded_by_migration) {
        /* A snapshot is a pause: a migration before a start says so. */
        s->held.user_paused = true;
    }
    s->state = SPAPR_TB_SYNC_LOADED;
    return 0;
}

/* ---- Machine properties ---- */

static void tb_sync_get_max_delta(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    visit_type_uint64(v, name, &tb_sync_of(SPAPR_MACHINE(obj))->max_delta_ms,
                      errp);
}

static void tb_sync_set_max_delta(Object *obj, Visitor *v, const char *name,
                                  void *opaque, Error **errp)
{
    uint64_t value;

    if (!visit_type_uint64(v, name, &value, errp)) {
        return;
    }
    if (value > UINT64_MAX / SCALE_MS) {
        error_setg(errp, "tb-max-delta-ms %" PRIu64 " is too large", value);
        return;
    }
    tb_sync_of(SPAPR_MACHINE(obj))->max_delta_ms = value;
}

/* int64 properties; opaque: the field's offset in SpaprTbSync. */
static int64_t *tb_sync_int64_field(Object *obj, void *opaque)
{
    return (void *)tb_sync_of(SPAPR_MACHINE(obj)) + (uintptr_t)opaque;
}

/* Get or set: the visitor goes either way. */
static void tb_sync_visit_int64(Object *obj, Visitor *v, const char *name,
                                void *opaque, Error **errp)
{
    visit_type_int64(v, name, tb_sync_int64_field(obj, opaque), errp);
}

static void tb_sync_set_skew(Object *obj, Visitor *v, const char *name,
                             void *opaque, Error **errp)
{
    int64_t value;

    if (!visit_type_int64(v, name, &value, errp)) {
        return;
    }
    if (value > INT64_MAX / SCALE_MS || value < INT64_MIN / SCALE_MS) {
        error_setg(errp, "x-tb-realtime-skew-ms %" PRId64 " is out of range",
                   value);
        return;
    }
    *tb_sync_int64_field(obj, opaque) = value;
}

static bool tb_sync_get_sync_state(Object *obj, Error **errp)
{
    return tb_sync_of(SPAPR_MACHINE(obj))->send_sync_state;
}

static void tb_sync_set_sync_state(Object *obj, bool value, Error **errp)
{
    tb_sync_of(SPAPR_MACHINE(obj))->send_sync_state = value;
}

static int tb_sync_get_policy(Object *obj, Error **errp)
{
    return tb_sync_of(SPAPR_MACHINE(obj))->policy;
}

static void tb_sync_set_policy(Object *obj, int value, Error **errp)
{
    SpaprTbSync *s = tb_sync_of(SPAPR_MACHINE(obj));

    /* A migration's start turned a pause into downtime by this policy */
    if (value != s->policy && migration_is_running()) {
        error_setg(errp, "tb-policy cannot change while a migration runs");
        return;
    }
    s->policy = value;
}

void spapr_tb_sync_class_init(ObjectClass *oc)
{
    object_class_property_add_enum(oc, "tb-policy", "PpcTimebasePolicy",
                                   &PpcTimebasePolicy_lookup,
                                   tb_sync_get_policy, tb_sync_set_policy);
    object_class_property_set_description(oc, "tb-policy",
        "How the guest timebase moves while the VM is stopped: freeze "
        "(as before QEMU 10.1), downtime (default: advance by migration "
        "downtime, not user pauses) or wallclock (follow host time)");
    object_class_property_add(oc, "tb-max-delta-ms", "uint64",
                              tb_sync_get_max_delta, tb_sync_set_max_delta,
                              NULL, NULL);
    object_class_property_set_description(oc, "tb-max-delta-ms",
        "Largest timebase advance applied at resume, in ms (0: no cap)");
    object_class_property_add_bool(oc, "tb-sync", tb_sync_get_sync_state,
                                   tb_sync_set_sync_state);
    object_class_property_set_description(oc, "tb-sync",
        "Send the timebase's sync state (the timebase/sync migration "
        "subsection) when the stream needs it (off: never, the stream "
        "loads in any QEMU)");
    object_class_property_add(oc, "x-tb-realtime-skew-ms", "int64",
                              tb_sync_visit_int64, tb_sync_set_skew, NULL,
                              (void *)offsetof(SpaprTbSync,
                                               x_realtime_skew_ms));
    object_class_property_set_description(oc, "x-tb-realtime-skew-ms",
        "Experimental, for tests: offset added to this process's host "
        "realtime readings");
    object_class_property_add(oc, "x-tb-kvm-fail-vcpu", "int64",
                              tb_sync_visit_int64, tb_sync_visit_int64, NULL,
                              (void *)offsetof(SpaprTbSync, x_kvm_fail_vcpu));
    object_class_property_set_description(oc, "x-tb-kvm-fail-vcpu",
        "Experimental, for tests: setting KVM_REG_PPC_TB_OFFSET on this "
        "vCPU fails (-1: none)");
}

void spapr_tb_sync_instance_init(SpaprMachineState *spapr)
{
    SpaprTbSync *s = tb_sync_of(spapr);

    s->send_sync_state =
        !SPAPR_MACHINE_GET_CLASS(spapr)->pre_10_0_timebase_sync;
    s->policy = PPC_TIMEBASE_POLICY_DOWNTIME;
    s->max_delta_ms = SPAPR_TB_SYNC_DEFAULT_MAX_DELTA_MS;
    s->x_kvm_fail_vcpu = -1;
}

void spapr_tb_sync_machine_init(SpaprMachineState *spapr)
{
    SpaprTbSync *s = tb_sync_of(spapr);
    MigMode mode;

    /* In place of the KVM-only cpu_ppc_clock_vm_state_change() */
    qemu_add_vm_change_state_handler(tb_sync_vm_state_change, spapr);
    /* cpr-reboot saves a paused VM to a file: a migration like others */
    for (mode = 0; mode < MIG_MODE__MAX; mode++) {
        s->migration_notifier[mode].s = s;
        migration_add_notifier_mode(&s->migration_notifier[mode].notifier,
                                    tb_sync_migration_event, mode);
    }
}

/* ---- Monitor ---- */

PpcTimebaseInfo *qmp_query_ppc_timebase(Error **errp)
{
    SpaprMachineState *spapr = (SpaprMachineState *)
        object_dynamic_cast(qdev_get_machine(), TYPE_SPAPR_MACHINE);
    PpcTimebaseInfo *info;
    PpcTimebaseVcpuList **tail;
    CPUState *cs;

    if (!spapr) {
        error_setg(errp, "query-ppc-timebase needs a pseries machine");
        return NULL;
    }
    info = g_new0(PpcTimebaseInfo, 1);
    info->frequency = tb_sync_freq();
    info->accelerator = kvm_enabled() ? PPC_TIMEBASE_ACCEL_KVM :
                                        PPC_TIMEBASE_ACCEL_TCG;
    info->policy = spapr->tb_sync.policy;
    info->max_delta_ms = spapr->tb_sync.max_delta_ms;
    info->sync_state = spapr->tb_sync.send_sync_state;
    tail = &info->vcpus;
    CPU_FOREACH(cs) {
        PowerPCCPU *cpu = POWERPC_CPU(cs);
        PpcTimebaseVcpu *v = g_new0(PpcTimebaseVcpu, 1);

        v->cpu_index = cs->cpu_index;
        /*
         * QEMU's copy of the offset: only QEMU sets the KVM register,
         * and reads it back when it does, so no vCPU leaves the guest
         * for this query.
         */
        v->tb_offset = tb_sync_l1_offset(cpu);
        v->host_tb = kvm_enabled() ? cpu_get_host_ticks() :
                                     tb_sync_vclock_ticks(cpu);
        v->guest_tb = v->host_tb + v->tb_offset;
        QAPI_LIST_APPEND(tail, v);
    }
    if (spapr->tb_sync.last.valid) {
        info->last_adjustment = tb_sync_record_to_qapi(&spapr->tb_sync.last);
    }
    return info;
}

static void hmp_print_tb(Monitor *mon, const char *label, uint64_t tb,
                         uint64_t freq)
{
    monitor_printf(mon, "%s0x%016" PRIx64 " (%" PRIu64 ".%09" PRIu64 " s)",
                   label, tb, freq ? tb / freq : 0,
                   freq ? tbcalc_ticks_to_ns(tb % freq, freq) : 0);
}

/* A signed duration: magnitude taken as unsigned, so INT64_MIN prints. */
static void hmp_print_ns(Monitor *mon, const char *label, bool negative,
                         uint64_t magnitude_ns)
{
    monitor_printf(mon, "%s%s%" PRIu64 ".%06" PRIu64 " ms", label,
                   negative ? "-" : "", magnitude_ns / SCALE_MS,
                   magnitude_ns % SCALE_MS);
}

void hmp_info_timebase(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    PpcTimebaseInfo *info = qmp_query_ppc_timebase(&err);
    PpcTimebaseVcpuList *l;
    PpcTimebaseAdjustment *a;

    if (hmp_handle_error(mon, err)) {
        return;
    }
    monitor_printf(mon, "timebase: %" PRIu64 " Hz, %s, policy %s, cap %"
                   PRIu64 " ms, sync state %s\n",
                   info->frequency, PpcTimebaseAccel_str(info->accelerator),
                   PpcTimebasePolicy_str(info->policy), info->max_delta_ms,
                   info->sync_state ? "on" : "off");
    monitor_printf(mon, "host TB: %s\n",
                   info->accelerator == PPC_TIMEBASE_ACCEL_KVM ?
                   "host timebase" : "virtual clock in TB ticks (TCG)");
    for (l = info->vcpus; l; l = l->next) {
        PpcTimebaseVcpu *v = l->value;

        monitor_printf(mon, "vCPU %" PRId64 ": guest TB ", v->cpu_index);
        hmp_print_tb(mon, "", v->guest_tb, info->frequency);
        monitor_printf(mon, " tb_offset 0x%016" PRIx64 " host TB 0x%016"
                       PRIx64 "\n", (uint64_t)v->tb_offset, v->host_tb);
    }
    a = info->last_adjustment;
    if (!a) {
        monitor_printf(mon, "last adjustment: none\n");
        qapi_free_PpcTimebaseInfo(info);
        return;
    }
    monitor_printf(mon, "last adjustment: %s (%s), policy %s\n",
                   PpcTimebaseAdjustTrigger_str(a->trigger),
                   a->trigger == PPC_TIMEBASE_ADJUST_TRIGGER_RESUME ?
                   "local stop" : a->sync_state_loaded ?
                   "timebase state with its sync state" : "timebase state",
                   PpcTimebasePolicy_str(a->policy));
    hmp_print_tb(mon, "  saved TB:    ", a->saved_tb, info->frequency);
    monitor_printf(mon, " at realtime %" PRId64 " ns (pairing error %" PRIu64
                   " ns)\n", a->saved_realtime_ns, a->pairing_error_ns);
    monitor_printf(mon, "  resumed at realtime %" PRId64 " ns\n",
                   a->resume_realtime_ns);
    hmp_print_ns(mon, "  measured stop-to-start: ", a->measured_ns < 0,
                 uabs64(a->measured_ns));
    hmp_print_ns(mon, "\n  delta applied: ", false, a->applied_ns);
    monitor_printf(mon, " (%" PRIu64 " ticks), reason: %s\n", a->delta_ticks,
                   PpcTimebaseAdjustReason_str(a->reason));
    hmp_print_tb(mon, "  target TB:   ", a->target_tb, info->frequency);
    monitor_printf(mon, "\n");
    if (a->has_kvm_requested_offset) {
        monitor_printf(mon, "  KVM: requested offset 0x%016" PRIx64
                       ", read back 0x%016" PRIx64 ", rounding residue %"
                       PRId64 " ticks",
                       (uint64_t)a->kvm_requested_offset,
                       (uint64_t)a->kvm_applied_offset, a->kvm_residue_ticks);
        hmp_print_ns(mon, " (", a->kvm_residue_ticks < 0,
                     tbcalc_ticks_to_ns(uabs64(a->kvm_residue_ticks),
                                        info->frequency));
        monitor_printf(mon, ")\n");
    }
    qapi_free_PpcTimebaseInfo(info);
}
