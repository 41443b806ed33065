#!/usr/bin/env python3
#
# Markdown table of the libvirt tier's results (results.json written by
# test_libvirt_tb.py): each virsh operation, fork and stock side by side.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import sys


def fmt(v, f='{:+.1f}'):
    return '-' if v is None else f.format(v)


def event_cell(e):
    ev = e.get('event')
    if not ev:
        return '-'
    # What the fork measured for the stop, and what it applied.
    return (f"{ev.get('trigger')}: {ev.get('reason')}, measured "
            f"{ev.get('measured-ns', 0) / 1e6:.1f} ms, applied "
            f"{ev.get('applied-ns', 0) / 1e6:.1f} ms")


def main(path):
    with open(path, encoding='utf-8') as f:
        results = json.load(f)
    boots = [r for r in results if r['scenario'] == 'boot']
    for b in boots:
        caps = (f"; `virsh domcapabilities` machine {b['domcaps']}"
                if b.get('domcaps') else '')
        print(f"- {b['qemu']}: booted to the probe and the agent in "
              f"{b['boot_s']} s{caps}")
    print()
    print('| virsh operation | QEMU | guest wall clock error (ms) '
          '| TB error (ms) | backwards | stop-to-start (ms) '
          '| PPC_TIMEBASE_ADJUSTED | domain log |')
    print('|---|---|---:|---:|---:|---:|---|---|')
    for r in results:
        if r['scenario'] in ('boot', 'capabilities'):
            continue
        log = '; '.join(r.get('log') or []).replace('|', '\\|') or '-'
        print(f"| {r['scenario']} | {r['qemu']} "
              f"| {fmt(r.get('clock_error_ms'))} "
              f"| {fmt(r.get('tb_error_ms'))} | {r.get('backwards')} "
              f"| {fmt(r.get('stop_ms'), '{:.0f}')} | {event_cell(r)} "
              f"| {log[:160]} |")


if __name__ == '__main__':
    main(sys.argv[1])
