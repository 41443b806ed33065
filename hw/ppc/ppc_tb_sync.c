/*
 * pseries timebase migration: keep the guest timebase (TB) monotonic and
 * advanced by the real stop-to-start time across migration, on KVM and
 * TCG.
 *
 * When the VM stops, a (guest TB, host CLOCK_REALTIME) pair is sampled,
 * once. It travels in upstream's timebase state (guest_timebase,
 * time_of_the_day_ns), which every QEMU reads: a stock destination gets a
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
#include "hw/ppc/ppc_tb_sync.h"
#include "cpu.h"
#include "trace.h"
#ifdef CONFIG_KVM
#include <linux/kvm.h>
#endif

/* Samples taken to find the tightest (host TB, realtime) bracket. */
#define TB_SYNC_PAIR_TRIES 5

static PPCTBSync *tb_sync_of(SpaprMachineState *spapr)
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

static int64_t tb_sync_realtime_ns(PPCTBSync *s)
{
    struct timespec ts;

    if (replay_mode != REPLAY_MODE_NONE) {
        return 0;   /* as upstream: no realtime stamp under record/replay */
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * NANOSECONDS_PER_SECOND + ts.tv_nsec +
           s->x_realtime_skew_ms * (int64_t)SCALE_MS;
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
static bool tb_sync_host_pair(PPCTBSync *s, TBCalcPair *pair)
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

static bool tb_sync_sample(PPCTBSync *s, PPCTBSyncSample *out)
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
static void tb_sync_note_running_vclock(PPCTBSync *s)
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

static void tb_sync_apply_tcg(const PPCTBSyncRecord *rec)
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
        trace_ppc_tb_sync_tcg_advance(now_tb, rec->result.target_tb, 0);
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
     * at resume), and tb_offset stays 0, so a stock QEMU destination that
     * does not migrate it still sees a monotonic TB.
     */
    ns = tbcalc_ticks_to_ns(ticks, cpu->env.tb_env->tb_freq);
    cpu_clock_advance(ns);
    qemu_clock_notify(QEMU_CLOCK_VIRTUAL);
    trace_ppc_tb_sync_tcg_advance(now_tb, rec->result.target_tb, ns);
}

#ifdef CONFIG_KVM
static int tb_sync_kvm_check(Error **errp)
{
    PowerPCCPU *cpu = tb_sync_first_cpu();
    int64_t off;
    int ret;

    ret = kvm_get_one_reg(CPU(cpu), KVM_REG_PPC_TB_OFFSET, &off);
    if (ret) {
        error_setg(errp, "timebase: this kernel does not support "
                   "KVM_REG_PPC_TB_OFFSET (%s): the guest timebase cannot "
                   "be carried over", strerror(-ret));
        return ret;
    }
    return 0;
}

static int tb_sync_kvm_set_offset(PowerPCCPU *cpu, int64_t offset)
{
    return kvm_set_one_reg(CPU(cpu), KVM_REG_PPC_TB_OFFSET, &offset);
}

static int tb_sync_kvm_get_offset(PowerPCCPU *cpu, int64_t *offset)
{
    return kvm_get_one_reg(CPU(cpu), KVM_REG_PPC_TB_OFFSET, offset);
}
#else
static int tb_sync_kvm_check(Error **errp)
{
    return 0;
}

static int tb_sync_kvm_set_offset(PowerPCCPU *cpu, int64_t offset)
{
    g_assert_not_reached();
}

static int tb_sync_kvm_get_offset(PowerPCCPU *cpu, int64_t *offset)
{
    g_assert_not_reached();
}
#endif

static TimebaseAdjustment *tb_sync_record_to_qapi(const PPCTBSyncRecord *rec)
{
    TimebaseAdjustment *a = g_new0(TimebaseAdjustment, 1);

    a->trigger = rec->trigger;
    a->from_subsection = rec->from_subsection;
    a->policy = rec->policy;
    a->saved_tb = rec->saved_tb;
    a->saved_realtime_ns = rec->saved_realtime_ns;
    a->pairing_error_ns = rec->pairing_err_ns;
    a->resume_realtime_ns = rec->resume_realtime_ns;
    a->measured_ns = rec->result.measured_ns;
    a->applied_ns = rec->result.applied_ns;
    a->delta_ticks = rec->result.delta_ticks;
    a->target_tb = rec->result.target_tb;
    a->reason = qapi_enum_parse(&TimebaseAdjustReason_lookup,
                                tbcalc_reason_name(rec->result.reason),
                                TIMEBASE_ADJUST_REASON_APPLIED, &error_abort);
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

/* Program the same offset on every vCPU, or none. */
static bool tb_sync_apply_kvm(PPCTBSync *s, PPCTBSyncRecord *rec,
                              Error **errp)
{
    int64_t residue, readback = 0;
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
        int64_t got = 0;

        if (cs->cpu_index == s->x_kvm_fail_vcpu) {
            ret = -EINVAL;      /* fault injection, for tests */
        } else {
            ret = tb_sync_kvm_set_offset(POWERPC_CPU(cs), offset);
        }
        if (!ret) {
            ret = tb_sync_kvm_get_offset(POWERPC_CPU(cs), &got);
        }
        trace_ppc_tb_sync_kvm_set(cs->cpu_index, offset, got, ret);
        if (!ret && cs != first_cpu && got != readback) {
            ret = -EIO;     /* vCPUs would disagree */
        }
        if (ret) {
            error_setg(errp, "timebase: setting KVM_REG_PPC_TB_OFFSET to "
                       "0x%" PRIx64 " on vCPU %d failed: %s", offset,
                       cs->cpu_index, ret == -EIO ?
                       "the kernel applied another value than on vCPU 0" :
                       strerror(-ret));
            break;
        }
        readback = got;
    }
    if (ret) {
        /* Back to the offset they all had: one TB for every vCPU. */
        CPU_FOREACH(undo) {
            PowerPCCPU *cpu = POWERPC_CPU(undo);

            tb_sync_kvm_set_offset(cpu, cpu->env.tb_env->tb_offset);
            if (undo == cs) {
                break;
            }
        }
        return false;
    }
    if ((uint64_t)readback != offset) {
        warn_report("timebase: KVM applied TB offset 0x%" PRIx64
                    " instead of 0x%" PRIx64, (uint64_t)readback, offset);
    }
    CPU_FOREACH(cs) {
        POWERPC_CPU(cs)->env.tb_env->tb_offset = readback;
    }
    rec->kvm_applied_offset = readback;
    rec->kvm_residue_ticks = residue + (int64_t)((uint64_t)readback - offset);
    return true;
}

/* The held pair was applied (or cannot be): the VM runs from here. */
static void tb_sync_consumed(PPCTBSync *s)
{
    s->state = PPC_TB_SYNC_IDLE;
    /* A pause re-dated for a migration ends here, not at a later DONE. */
    s->pause_in_migration = false;
}

/* A pause re-dated for a migration is a pause again: keep any floor. */
static void tb_sync_end_pause_in_migration(PPCTBSync *s)
{
    uint64_t floor_tb = s->held.floor_tb;

    s->held = s->pause;
    s->held.floor_tb = MAX(s->held.floor_tb, floor_tb);
}

static void tb_sync_resume(SpaprMachineState *spapr)
{
    PPCTBSync *s = tb_sync_of(spapr);
    PPCTBSyncRecord rec = { .valid = true, .policy = s->policy };
    uint64_t freq = tb_sync_freq();
    TBCalcInput in = {
        .tb_freq = freq,
        .cap_ns = s->max_delta_ms * SCALE_MS,
        .policy = s->policy,
    };
    PPCTBSyncSample held;
    TimebaseAdjustment *event;
    Error *err = NULL;

    if (s->state != PPC_TB_SYNC_IDLE && s->pause_in_migration) {
        /*
         * `cont` while a migration of a paused VM runs: on this host it
         * was a user pause, whatever the migration made of it.
         */
        tb_sync_end_pause_in_migration(s);
    }
    switch (s->state) {
    case PPC_TB_SYNC_IDLE:
        return;     /* first start: nothing to carry over */
    case PPC_TB_SYNC_STOPPED:
        rec.trigger = TIMEBASE_ADJUST_TRIGGER_RESUME;
        break;
    case PPC_TB_SYNC_LOADED:
        rec.trigger = s->loaded_by_migration ?
            TIMEBASE_ADJUST_TRIGGER_MIGRATION : TIMEBASE_ADJUST_TRIGGER_LOADVM;
        rec.from_subsection = s->loaded_legacy || spapr->tb.sync_loaded;
        break;
    }
    held = s->held;
    in.saved_tb = held.tb;
    in.saved_realtime_ns = held.realtime_ns;
    /* A snapshot is a pause by definition. */
    in.user_paused = held.user_paused ||
        rec.trigger == TIMEBASE_ADJUST_TRIGGER_LOADVM;
    rec.floor_tb = held.floor_tb;
    rec.pairing_err_ns = tbcalc_ticks_to_ns(held.err_ticks, freq);

    if (kvm_enabled()) {
        TBCalcPair now;

        if (tb_sync_kvm_check(NULL)) {
            /*
             * A KVM without the register (KVM-PR): the guest reads the
             * host TB, which ran on through the stop. Nothing can be
             * applied; incoming migrations were refused in post_load.
             */
            warn_report_once("timebase: this kernel does not support "
                             "KVM_REG_PPC_TB_OFFSET: the guest timebase "
                             "follows the host's through every stop, "
                             "whatever the policy");
            trace_ppc_tb_sync_kvm_unsupported(TimebaseAdjustTrigger_str(
                                                  rec.trigger));
            tb_sync_consumed(s);
            return;
        }
        /* The target's realtime and the host TB it is applied to: a pair. */
        if (tb_sync_host_pair(s, &now)) {
            in.now_realtime_ns = now.realtime_ns;
            rec.kvm_host_tb = now.tb;
        } else {
            in.now_realtime_ns = tb_sync_realtime_ns(s);
            rec.kvm_host_tb = cpu_get_host_ticks();
        }
    } else {
        in.now_realtime_ns = tb_sync_realtime_ns(s);
    }
    if (!tbcalc_decide(&in, &rec.result)) {
        error_report("timebase: invalid input (frequency %" PRIu64
                     ", policy %d): TB left frozen", freq, in.policy);
    }
    /* Never below what the guest read, whatever the cap and policy say */
    if (tbcalc_raise_to_floor(&rec.result, in.saved_tb, held.floor_tb,
                              freq)) {
        warn_report("timebase: the guest already read a later TB (its vCPUs "
                    "ran in a start that failed): starting from it, %" PRIu64
                    " ms past the one saved", rec.result.applied_ns / SCALE_MS);
    }
    rec.saved_tb = in.saved_tb;
    rec.saved_realtime_ns = in.saved_realtime_ns;
    rec.resume_realtime_ns = in.now_realtime_ns;
    trace_ppc_tb_sync_decide(TimebaseAdjustTrigger_str(rec.trigger),
                             in.saved_tb, in.saved_realtime_ns,
                             in.now_realtime_ns, rec.result.applied_ns,
                             rec.result.delta_ticks,
                             tbcalc_reason_name(rec.result.reason));
    if (rec.result.reason == TBCALC_REASON_CLOCK_BACKWARDS ||
        rec.result.reason == TBCALC_REASON_CAPPED) {
        /* Worth the operator's eye: it lands in libvirt's domain log. */
        warn_report("timebase: %s: the host clock says %" PRId64
                    " ms passed since the VM stopped; the guest timebase "
                    "advanced %" PRIu64 " ms",
                    rec.result.reason == TBCALC_REASON_CAPPED ?
                    "advance capped at tb-max-delta-ms" :
                    "host clock behind the source's, advance clamped to 0",
                    rec.result.measured_ns / (int64_t)SCALE_MS,
                    rec.result.applied_ns / SCALE_MS);
        trace_ppc_tb_sync_clamp(tbcalc_reason_name(rec.result.reason),
                                rec.result.measured_ns,
                                rec.result.applied_ns);
    }

    if (kvm_enabled() && !tb_sync_apply_kvm(s, &rec, &err)) {
        /*
         * vCPUs with different TBs hang a Linux guest: they were put back
         * to the offset they all had, and the VM is stopped as soon as
         * the main loop runs (a state change handler cannot keep vm_start
         * from resuming the vCPUs). The pair stays held, for a later
         * start or migration.
         */
        error_append_hint(&err, "The VM is being stopped (internal-error) "
                          "with its previous timebase offset.\n");
        error_report_err(err);
        qemu_system_vmstop_request_prepare();
        qemu_system_vmstop_request(RUN_STATE_INTERNAL_ERROR);
        return;
    }
    if (!kvm_enabled()) {
        tb_sync_apply_tcg(&rec);
    }
    tb_sync_consumed(s);
    s->last = rec;

    event = tb_sync_record_to_qapi(&rec);
    qapi_event_send_timebase_adjusted(event);
    qapi_free_TimebaseAdjustment(event);
}

/*
 * A user pause that meets a migration (libvirt pauses the VM for a
 * non-live migration, for `virsh save` and for --timeout-suspend) is
 * downtime from the later of the pause and the migration's start, with
 * the TB where the pause froze it: the pair is re-dated. When the
 * migration ends (failed, or done and the source is continued anyway),
 * the VM is still paused there, and the pause goes on.
 */
static void tb_sync_pause_to_downtime(PPCTBSync *s)
{
    if (s->policy != TBCALC_POLICY_DOWNTIME) {
        return;     /* freeze and wallclock count no pause differently */
    }
    s->pause = s->held;
    s->pause_in_migration = true;
    s->held.realtime_ns = tb_sync_realtime_ns(s);
    s->held.err_ticks = 0;      /* a frozen TB: the pair is exact */
    s->held.user_paused = false;
    trace_ppc_tb_sync_save("pause turned into migration downtime",
                           s->held.tb, s->held.realtime_ns, 0, false);
}

static void tb_sync_vm_state_change(void *opaque, bool running,
                                    RunState state)
{
    SpaprMachineState *spapr = opaque;
    PPCTBSync *s = tb_sync_of(spapr);

    if (running) {
        tb_sync_resume(spapr);
        tb_sync_note_running_vclock(s);
        return;
    }
    if (s->state != PPC_TB_SYNC_IDLE) {
        /*
         * The start could not apply the pair (KVM refused): keep it. The
         * vCPUs ran for a moment with the offset they had (on a fresh
         * destination: none, this host's TB): whatever the guest read
         * then, a later start must not put the TB below it.
         */
        PPCTBSyncSample now;

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
    s->state = PPC_TB_SYNC_STOPPED;
    trace_ppc_tb_sync_save("stop", s->held.tb, s->held.realtime_ns,
                           s->held.err_ticks, s->held.user_paused);
    if (s->held.user_paused && migration_is_running()) {
        /* Paused while a migration runs (--timeout-suspend): downtime. */
        tb_sync_pause_to_downtime(s);
    }
}

static int tb_sync_migration_event(NotifierWithReturn *notifier,
                                   MigrationEvent *e, Error **errp)
{
    PPCTBSync *s = container_of(notifier, PPCTBSyncMigrationNotifier,
                                notifier)->s;

    switch (e->type) {
    case MIG_EVENT_PRECOPY_SETUP:
        s->migrating_out = true;
        /* Paused, or a snapshot loaded and not started */
        if (s->state != PPC_TB_SYNC_IDLE && s->held.user_paused) {
            tb_sync_pause_to_downtime(s);
        }
        break;
    case MIG_EVENT_PRECOPY_DONE:    /* the device state has gone out */
    case MIG_EVENT_PRECOPY_FAILED:
        s->migrating_out = false;
        if (s->pause_in_migration && s->state != PPC_TB_SYNC_IDLE) {
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
 * carries on from to upstream's fields, and decide whether the
 * timebase/sync subsection must go with it.
 */
void spapr_tb_sync_pre_save(SpaprMachineState *spapr)
{
    PPCTBSync *s = tb_sync_of(spapr);
    PPCTimebase *tb = &spapr->tb;
    PPCTBSyncSample pair;
    uint64_t floor_tb;
    bool needed;

    tb->sync_needed = false;
    if (s->state == PPC_TB_SYNC_IDLE) {
        /* Never started: the TB it would start from. */
        if (!tb_sync_sample(s, &pair)) {
            return;     /* no vCPU yet: upstream's pre_save says so */
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
    needed = s->send_subsection &&
        ((pair.user_paused && s->migrating_out) || floor_tb > pair.tb);
    /*
     * Without the subsection the floor cannot travel: start from it,
     * never below (ahead by what the failed start showed: on a fresh
     * destination, that host's TB).
     */
    tb->guest_timebase = needed ? pair.tb : floor_tb;
    tb->time_of_the_day_ns = pair.realtime_ns;
    /* Final: upstream's pre_save must not read the TB again. */
    tb->runstate_paused = true;
    tb->sync_needed = needed;
    tb->sync_flags = pair.user_paused ? PPC_TIMEBASE_SYNC_USER_PAUSED : 0;
    tb->sync_floor_tb = floor_tb;
    tb->sync_pairing_err_ticks = pair.err_ticks;
    trace_ppc_tb_sync_stream(tb->guest_timebase, tb->time_of_the_day_ns,
                             needed, tb->sync_flags, floor_tb,
                             pair.err_ticks);
}

/*
 * The spapr/timebase-sync subsection the fork's earlier builds wrote
 * (formats 1 and 2): still read, never written.
 */
static bool tb_sync_legacy_needed(void *opaque)
{
    return false;
}

static int tb_sync_legacy_post_load(void *opaque, int version_id)
{
    PPCTBSync *s = tb_sync_of(opaque);
    uint64_t freq = tb_sync_freq();

    trace_ppc_tb_sync_load("spapr/timebase-sync", s->legacy.flags,
                           s->legacy.guest_tb, s->legacy.realtime_ns,
                           s->legacy.floor_tb);
    if (s->legacy.version == 1 && version_id == 1) {
        s->legacy.floor_tb = s->legacy.guest_tb;    /* no floor yet */
    } else if (s->legacy.version != version_id) {
        error_report("spapr/timebase-sync: field 'version': unsupported "
                     "format version %" PRIu32 " (this QEMU reads 1 and %d)",
                     s->legacy.version, PPC_TB_SYNC_LEGACY_FORMAT);
        return -EINVAL;
    }
    if (s->legacy.flags & ~PPC_TB_SYNC_LEGACY_F_ALL) {
        error_report("spapr/timebase-sync: field 'flags': unknown bits "
                     "0x%" PRIx32, s->legacy.flags & ~PPC_TB_SYNC_LEGACY_F_ALL);
        return -EINVAL;
    }
    if (s->legacy.tb_freq != freq) {
        error_report("spapr/timebase-sync: field 'tb_freq': the source's "
                     "timebase runs at %" PRIu64 " Hz, this machine's at %"
                     PRIu64 " Hz", s->legacy.tb_freq, freq);
        return -EINVAL;
    }
    s->held = (PPCTBSyncSample) {
        .tb = s->legacy.guest_tb,
        .realtime_ns = s->legacy.realtime_ns,
        .err_ticks = s->legacy.pairing_err_ticks,
        .user_paused = s->legacy.flags & PPC_TB_SYNC_LEGACY_F_USER_PAUSED,
        .floor_tb = MAX(s->legacy.floor_tb, s->legacy.guest_tb),
    };
    s->loaded_legacy = true;
    return 0;
}

const VMStateDescription vmstate_spapr_tb_sync_legacy = {
    .name = "spapr/timebase-sync",
    .version_id = PPC_TB_SYNC_LEGACY_FORMAT,
    .minimum_version_id = 1,
    .needed = tb_sync_legacy_needed,
    .post_load = tb_sync_legacy_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(tb_sync.legacy.version, SpaprMachineState),
        VMSTATE_UINT32(tb_sync.legacy.flags, SpaprMachineState),
        VMSTATE_UINT64(tb_sync.legacy.guest_tb, SpaprMachineState),
        VMSTATE_INT64(tb_sync.legacy.realtime_ns, SpaprMachineState),
        VMSTATE_UINT64(tb_sync.legacy.pairing_err_ticks, SpaprMachineState),
        VMSTATE_UINT64(tb_sync.legacy.tb_freq, SpaprMachineState),
        VMSTATE_UNUSED(8),      /* the source's tb_offset */
        VMSTATE_UINT64_V(tb_sync.legacy.floor_tb, SpaprMachineState, 2),
        VMSTATE_END_OF_LIST()
    },
};

/* A load begins: whatever a previous load or stop left is replaced. */
void spapr_tb_sync_pre_load(SpaprMachineState *spapr)
{
    PPCTBSync *s = tb_sync_of(spapr);

    s->state = PPC_TB_SYNC_IDLE;
    s->loaded_legacy = false;
    s->pause_in_migration = false;
    s->held = (PPCTBSyncSample) { 0 };
    /* timebase's pre_load does it too, but a version 1 spapr has none */
    spapr->tb.sync_loaded = false;
}

int spapr_tb_sync_post_load(SpaprMachineState *spapr)
{
    PPCTBSync *s = tb_sync_of(spapr);
    PPCTimebase *tb = &spapr->tb;
    Error *err = NULL;

    /* loadvm, snapshot-load and -loadvm run in another state */
    s->loaded_by_migration = runstate_check(RUN_STATE_INMIGRATE) ||
                             runstate_check(RUN_STATE_COLO);
    if (kvm_enabled() && s->loaded_by_migration && tb_sync_kvm_check(&err)) {
        /*
         * Refuse: the guest would read this host's TB, from another
         * origin. A snapshot on the same host is allowed, as by stock.
         */
        error_report_err(err);
        return -EINVAL;
    }
    if (!s->loaded_legacy) {
        /*
         * Upstream's pair, as the source wrote it: the fork's at the
         * stop, stock's when it saved. Under TCG a stock source's
         * guest_timebase is its host TB, meaningless: the guest TB is
         * where the virtual clock (loaded before the machine) puts it,
         * which is also what a fork source wrote.
         */
        s->held = (PPCTBSyncSample) {
            .tb = kvm_enabled() ? tb->guest_timebase :
                tb_sync_tcg_guest_tb(tb_sync_first_cpu(),
                                     qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)),
            .realtime_ns = tb->time_of_the_day_ns,
        };
        s->held.floor_tb = s->held.tb;
        if (tb->sync_loaded) {
            s->held.user_paused = tb->sync_flags &
                                  PPC_TIMEBASE_SYNC_USER_PAUSED;
            s->held.floor_tb = MAX(s->held.tb, tb->sync_floor_tb);
            s->held.err_ticks = tb->sync_pairing_err_ticks;
        }
    }
    trace_ppc_tb_sync_load(s->loaded_legacy ? "spapr/timebase-sync" :
                           tb->sync_loaded ? "timebase with timebase/sync" :
                           "timebase", s->held.user_paused, s->held.tb,
                           s->held.realtime_ns, s->held.floor_tb);
    if (!s->loaded_by_migration) {
        /* A snapshot is a pause: a migration before a start says so. */
        s->held.user_paused = true;
    }
    s->state = PPC_TB_SYNC_LOADED;
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

/* int64 properties; opaque: the field's offset in PPCTBSync. */
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

static bool tb_sync_get_subsection(Object *obj, Error **errp)
{
    return tb_sync_of(SPAPR_MACHINE(obj))->send_subsection;
}

static void tb_sync_set_subsection(Object *obj, bool value, Error **errp)
{
    tb_sync_of(SPAPR_MACHINE(obj))->send_subsection = value;
}

static int tb_sync_get_policy(Object *obj, Error **errp)
{
    return tb_sync_of(SPAPR_MACHINE(obj))->policy;
}

static void tb_sync_set_policy(Object *obj, int value, Error **errp)
{
    PPCTBSync *s = tb_sync_of(SPAPR_MACHINE(obj));

    /* A migration's start turned a pause into downtime by this policy */
    if (value != s->policy && migration_is_running()) {
        error_setg(errp, "tb-policy cannot change while a migration runs");
        return;
    }
    s->policy = value;
}

void spapr_tb_sync_class_init(ObjectClass *oc)
{
    /* TimebasePolicy and TBCalcPolicy name the same values in order. */
    QEMU_BUILD_BUG_ON((int)TIMEBASE_POLICY_FREEZE != TBCALC_POLICY_FREEZE ||
                      (int)TIMEBASE_POLICY_DOWNTIME != TBCALC_POLICY_DOWNTIME ||
                      (int)TIMEBASE_POLICY_WALLCLOCK !=
                      TBCALC_POLICY_WALLCLOCK ||
                      (int)TIMEBASE_POLICY__MAX != TBCALC_POLICY__MAX);

    object_class_property_add_enum(oc, "tb-policy", "TimebasePolicy",
                                   &TimebasePolicy_lookup,
                                   tb_sync_get_policy, tb_sync_set_policy);
    object_class_property_set_description(oc, "tb-policy",
        "How the guest timebase moves while the VM is stopped: freeze "
        "(upstream), downtime (default: advance by migration downtime, "
        "not user pauses) or wallclock (follow host time)");
    object_class_property_add(oc, "tb-max-delta-ms", "uint64",
                              tb_sync_get_max_delta, tb_sync_set_max_delta,
                              NULL, NULL);
    object_class_property_set_description(oc, "tb-max-delta-ms",
        "Largest timebase advance applied at resume, in ms (0: no cap)");
    object_class_property_add_bool(oc, "tb-sync", tb_sync_get_subsection,
                                   tb_sync_set_subsection);
    object_class_property_set_description(oc, "tb-sync",
        "Send the timebase/sync migration subsection when the stream "
        "needs it (off: never, the stream loads in any QEMU)");
    object_class_property_add(oc, "x-tb-realtime-skew-ms", "int64",
                              tb_sync_visit_int64, tb_sync_set_skew, NULL,
                              (void *)offsetof(PPCTBSync,
                                               x_realtime_skew_ms));
    object_class_property_set_description(oc, "x-tb-realtime-skew-ms",
        "Experimental, for tests: offset added to this process's host "
        "realtime readings");
    object_class_property_add(oc, "x-tb-kvm-fail-vcpu", "int64",
                              tb_sync_visit_int64, tb_sync_visit_int64, NULL,
                              (void *)offsetof(PPCTBSync, x_kvm_fail_vcpu));
    object_class_property_set_description(oc, "x-tb-kvm-fail-vcpu",
        "Experimental, for tests: setting KVM_REG_PPC_TB_OFFSET on this "
        "vCPU fails (-1: none)");
}

void spapr_tb_sync_instance_init(SpaprMachineState *spapr)
{
    PPCTBSync *s = tb_sync_of(spapr);

    s->send_subsection =
        !SPAPR_MACHINE_GET_CLASS(spapr)->pre_10_0_timebase_sync;
    s->policy = TBCALC_POLICY_DOWNTIME;
    s->max_delta_ms = PPC_TB_SYNC_DEFAULT_MAX_DELTA_MS;
    s->x_kvm_fail_vcpu = -1;
}

void spapr_tb_sync_machine_init(SpaprMachineState *spapr)
{
    PPCTBSync *s = tb_sync_of(spapr);
    MigMode mode;

    /* Replaces upstream's KVM-only cpu_ppc_clock_vm_state_change. */
    qemu_add_vm_change_state_handler(tb_sync_vm_state_change, spapr);
    /* cpr-reboot saves a paused VM to a file: a migration like others */
    for (mode = 0; mode < MIG_MODE__MAX; mode++) {
        s->migration_notifier[mode].s = s;
        migration_add_notifier_mode(&s->migration_notifier[mode].notifier,
                                    tb_sync_migration_event, mode);
    }
}

/* ---- Monitor ---- */

#ifdef CONFIG_KVM
static void tb_sync_read_kvm_offset(CPUState *cs, run_on_cpu_data arg)
{
    int64_t *off = arg.host_ptr;

    if (kvm_get_one_reg(cs, KVM_REG_PPC_TB_OFFSET, off)) {
        *off = POWERPC_CPU(cs)->env.tb_env->tb_offset;
    }
}
#endif

TimebaseInfo *qmp_query_timebase(Error **errp)
{
    SpaprMachineState *spapr = (SpaprMachineState *)
        object_dynamic_cast(qdev_get_machine(), TYPE_SPAPR_MACHINE);
    TimebaseInfo *info;
    TimebaseVcpuList **tail;
    CPUState *cs;

    if (!spapr) {
        error_setg(errp, "query-timebase needs a pseries machine");
        return NULL;
    }
    info = g_new0(TimebaseInfo, 1);
    info->frequency = tb_sync_freq();
    info->accelerator = g_strdup(kvm_enabled() ? "kvm" : "tcg");
    info->policy = spapr->tb_sync.policy;
    info->max_delta_ms = spapr->tb_sync.max_delta_ms;
    info->subsection = spapr->tb_sync.send_subsection;
    tail = &info->vcpus;
    CPU_FOREACH(cs) {
        PowerPCCPU *cpu = POWERPC_CPU(cs);
        TimebaseVcpu *v = g_new0(TimebaseVcpu, 1);
        int64_t off = tb_sync_l1_offset(cpu);

        v->cpu_index = cs->cpu_index;
        if (kvm_enabled()) {
#ifdef CONFIG_KVM
            /* The kernel's value is the truth; read it on the vCPU. */
            run_on_cpu(cs, tb_sync_read_kvm_offset, RUN_ON_CPU_HOST_PTR(&off));
#endif
            v->host_tb = cpu_get_host_ticks();
        } else {
            v->host_tb = tb_sync_vclock_ticks(cpu);
        }
        v->tb_offset = off;
        v->guest_tb = v->host_tb + off;
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

static void hmp_print_ns(Monitor *mon, const char *label, int64_t ns)
{
    monitor_printf(mon, "%s%s%" PRIu64 ".%06" PRIu64 " ms", label,
                   ns < 0 ? "-" : "", (uint64_t)(ns < 0 ? -ns : ns) / SCALE_MS,
                   (uint64_t)(ns < 0 ? -ns : ns) % SCALE_MS);
}

void hmp_info_timebase(Monitor *mon, const QDict *qdict)
{
    Error *err = NULL;
    TimebaseInfo *info = qmp_query_timebase(&err);
    TimebaseVcpuList *l;
    TimebaseAdjustment *a;

    if (hmp_handle_error(mon, err)) {
        return;
    }
    monitor_printf(mon, "timebase: %" PRIu64 " Hz, %s, policy %s, cap %"
                   PRIu64 " ms, migration subsection %s\n",
                   info->frequency, info->accelerator,
                   TimebasePolicy_str(info->policy), info->max_delta_ms,
                   info->subsection ? "on" : "off");
    monitor_printf(mon, "host TB: %s\n", kvm_enabled() ? "host timebase" :
                   "virtual clock in TB ticks (TCG)");
    for (l = info->vcpus; l; l = l->next) {
        TimebaseVcpu *v = l->value;

        monitor_printf(mon, "vCPU %" PRId64 ": guest TB ", v->cpu_index);
        hmp_print_tb(mon, "", v->guest_tb, info->frequency);
        monitor_printf(mon, " tb_offset 0x%016" PRIx64 " host TB 0x%016"
                       PRIx64 "\n", (uint64_t)v->tb_offset, v->host_tb);
    }
    a = info->last_adjustment;
    if (!a) {
        monitor_printf(mon, "last adjustment: none\n");
        qapi_free_TimebaseInfo(info);
        return;
    }
    monitor_printf(mon, "last adjustment: %s (%s), policy %s\n",
                   TimebaseAdjustTrigger_str(a->trigger),
                   a->trigger == TIMEBASE_ADJUST_TRIGGER_RESUME ?
                   "local stop" : a->from_subsection ?
                   "timebase state with its sync subsection" :
                   "timebase state",
                   TimebasePolicy_str(a->policy));
    hmp_print_tb(mon, "  saved TB:    ", a->saved_tb, info->frequency);
    monitor_printf(mon, " at realtime %" PRId64 " ns (pairing error %" PRIu64
                   " ns)\n", a->saved_realtime_ns, a->pairing_error_ns);
    monitor_printf(mon, "  resumed at realtime %" PRId64 " ns\n",
                   a->resume_realtime_ns);
    hmp_print_ns(mon, "  measured stop-to-start: ", a->measured_ns);
    hmp_print_ns(mon, "\n  delta applied: ", a->applied_ns);
    monitor_printf(mon, " (%" PRIu64 " ticks), reason: %s\n", a->delta_ticks,
                   TimebaseAdjustReason_str(a->reason));
    hmp_print_tb(mon, "  target TB:   ", a->target_tb, info->frequency);
    monitor_printf(mon, "\n");
    if (a->has_kvm_requested_offset) {
        monitor_printf(mon, "  KVM: requested offset 0x%016" PRIx64
                       ", read back 0x%016" PRIx64 ", rounding residue %"
                       PRId64 " ticks",
                       (uint64_t)a->kvm_requested_offset,
                       (uint64_t)a->kvm_applied_offset, a->kvm_residue_ticks);
        hmp_print_ns(mon, " (", a->kvm_residue_ticks < 0 ?
                     -(int64_t)tbcalc_ticks_to_ns(-a->kvm_residue_ticks,
                                                  info->frequency) :
                     (int64_t)tbcalc_ticks_to_ns(a->kvm_residue_ticks,
                                                 info->frequency));
        monitor_printf(mon, ")\n");
    }
    qapi_free_TimebaseInfo(info);
}
