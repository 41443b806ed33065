#!/usr/bin/env python3
#
# Markdown table of the KVM-HV harness results (results.json written by
# test_kvm_tb_migration.py), fork and stock side by side.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import sys


def cell(entry, key, fmt='{}'):
    if not entry or entry.get(key) is None:
        return '-'
    return fmt.format(entry[key])


def main(path):
    with open(path, encoding='utf-8') as f:
        results = json.load(f)
    rows = []
    for r in results:
        if 'error_ms' in r and r['scenario'] not in rows:
            rows.append(r['scenario'])
    print('| scenario | QEMU | TB error (ms) | KVM residue (ms) '
          '| bound (ms) | backwards | stop-to-start (ms) | downtime (ms) '
          '| host skew (ms) |')
    print('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for name in rows:
        for qemu in ('fork', 'stock'):
            e = next((r for r in results if r['scenario'] == name and
                      r.get('qemu') == qemu), None)
            if not e:
                continue
            where = e['machine']
            if e.get('source_machine', where) != where:
                where = f"{e['source_machine']} -> {where}"
            print(f"| {name} ({where}) | {qemu} "
                  f"| {cell(e, 'error_ms', '{:+.3f}')} "
                  f"| {cell(e, 'residue_ms', '{:.3f}')} "
                  f"| {cell(e, 'bound_ms', '{:.1f}')} "
                  f"| {cell(e, 'backwards')} "
                  f"| {cell(e, 'stop_to_start_ms', '{:.0f}')} "
                  f"| {cell(e, 'downtime_ms')} "
                  f"| {cell(e, 'skew_ms', '{:.3f}')} |")
    for r in results:
        if 'error' in r:
            print(f"\n{r['scenario']} ({r['machine']}): `{r['error']}`")
        if 'trace_sent' in r:
            print(f"\n{r['scenario']} ({r['machine']}): query-ppc-timebase "
                  f"offset {r['offset'] & (2**64 - 1):#x}, vcpu debugfs "
                  f"{r['debugfs_offset']:#x}; tracepoints: sent to the L0 "
                  f"{r['trace_sent']} time(s), TBU40 entries and exits "
                  f"{r['trace_tbu40']}")
        elif 'debugfs_offset' in r:
            print(f"\n{r['scenario']} ({r['machine']}): query-ppc-timebase "
                  f"offset {r['offset'] & (2**64 - 1):#x}, vcpu debugfs "
                  f"{r['debugfs_offset']:#x}; tracepoints: {r['trace_sets']} "
                  f"set, {r['trace_entries']} entries, {r['trace_exits']} "
                  f"exits")
        if 'tb_regs' in r:
            kept = all(v['offset'] == r['aligned_offset'] and
                       v['expiry'] == r['requested_expiry']
                       for k, v in r['tb_regs'].items() if k != 'offset-only')
            print(f"\n{r['scenario']} ({r['machine']}): offset "
                  f"{r['requested_offset']} read back as "
                  f"{r['tb_regs'].get('offset-only', {}).get('offset')} "
                  f"(2^24: {r['aligned_offset']}); expiry "
                  f"{'kept' if kept else 'NOT kept'} in both orders; "
                  f"offset alone: expiry = guest TB at the set "
                  f"+ {r['expiry_vs_guest_tb']} ticks")
        if 'soft_lockups' in r:
            print(f"\n{r['scenario']}, {r['qemu']}: {r['soft_lockups']} "
                  f"soft lockup report(s) in the L2's console")
        if 'l2_step_s' in r:
            print(f"\n{r['scenario']}: the L2 (TB offset "
                  f"{r['l2_tb_offset']} ticks) stepped {r['l2_step_s']} s "
                  f"across a {r['stop_to_start_ms'] / 1e3:.3f} s stop; the "
                  f"L1's sleepers: one due in the stop woke "
                  f"{r['l1_stop_wake_ms']} ms late, the last eight at most "
                  f"{r['l1_last_late_ms']} ms")
        if 'timer_others_per_s' in r:
            print(f"\n{r['scenario']}, L0 {r['qemu']}: it took "
                  f"{r['timer_others_per_s']} decrementer interrupts/s "
                  f"that found nothing due ({r['timer_events_per_s']}/s "
                  f"that ran a timer), its L1 vCPU thread "
                  f"{r['l1_vcpu_busy'] * 100:.1f}% busy")
        if 'floor_above_tb_s' in r:
            print(f"\n{r['scenario']}: the stream carried timebase/sync, "
                  f"floor {r['floor_above_tb_s']} s above the saved TB")
        if 'woke_after_resume_ms' in r:
            print(f"\n{r['scenario']}: a sleep due "
                  f"{r['deadline_into_stop_ms']} ms into the stop ended "
                  f"{r['woke_after_resume_ms']} ms after the first TB read "
                  f"after resume")
        if 'l2_offset' in r:
            print(f"\n{r['scenario']}: a stop found the vCPU in the L2 "
                  f"(offset {r['l2_offset']} ticks) after {r['attempts']} "
                  f"attempt(s); L2 TB error across it {r['error_ms']} ms")
        if 'set_fail_offsets' in r:
            print(f"\n{r['scenario']}: VM {r['status']}, vCPU offsets "
                  f"{r['set_fail_offsets']}")
        if 'hotplug_offsets' in r:
            print(f"\n{r['scenario']}, {r['qemu']}: vCPU TB offsets "
                  f"{r['hotplug_offsets']} (the second hot-plugged), "
                  f"{r['skews']} skew reports (up to {r['skew_max_s']} s)")
        if 'paused_ms' in r:
            rule = (' (frozen by the rule, the rest compensated)'
                    if r['qemu'] == 'fork' else '')
            print(f"\n{r['scenario']}, {r['qemu']}: paused {r['paused_ms']} "
                  f"ms before the first migration{rule}; TB error "
                  f"{r['error_ms']} ms; "
                  f"lowest TB after minus last before "
                  f"{r['min_tb_step_s']} s; {r['backwards']} backwards "
                  f"steps; state on B: {r['mid_status']}")
        if 'snapshot_load_error' in r:
            print(f"\n{r['scenario']} ({r['machine']}): "
                  + (f"refused: `{r['snapshot_load_error']}`"
                     if r['snapshot_load_error'] else
                     f"loaded, the VM {r['status']}, its TB monotonic"
                     if not r['backwards'] else
                     f"loaded, {r['backwards']} backwards steps"))
        if 'lost_pages' in r:
            first = (f" (first pass {r['first_pass_s']} s after the switch)"
                     if r.get('first_pass_s') is not None else '')
            print(f"\n{r['scenario']}: {r['lost_pages']} pages lost their "
                  f"last write, guest "
                  f"{'alive' if r['guest_alive'] else 'dead'}{first}")


if __name__ == '__main__':
    main(sys.argv[1])
