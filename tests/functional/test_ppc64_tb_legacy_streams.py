#!/usr/bin/env python3
#
# Streams the fork's earlier builds wrote, with the guest timebase in a
# spapr/timebase-sync subsection (formats 1 and 2): they load and are
# carried on from exactly; corrupted, they fail the load naming the
# field. The streams (tests/functional/data/ppc64-tb-streams, SLOF-only
# VMs) were written by builds of those commits; their .json files say
# what the source saved (scripts/gen-tb-stream-fixtures.py).
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import lzma
import os
import time

from qemu.machine import QEMUMachine
from qemu_test import QemuSystemTest

STREAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                       'ppc64-tb-streams')


class TBLegacyStreamTest(QemuSystemTest):
    """Streams of the fork's earlier builds (spapr/timebase-sync) load.

    :avocado: tags=arch:ppc64
    :avocado: tags=machine:pseries
    :avocado: tags=migration
    """

    timeout = 300

    def legacy_stream(self, name, corrupt=None):
        """Load tests/functional/data/ppc64-tb-streams/NAME into a new
        fork, corrupted by corrupt(bytearray) if given; the VM (not
        started) and what the source saved."""
        base = os.path.join(STREAMS, name)
        with open(base + '.json') as f:
            meta = json.load(f)
        with lzma.open(base + '.bin.xz') as f:
            data = bytearray(f.read())
        if corrupt:
            corrupt(data)
        path = os.path.join(self.workdir, name + '.bin')
        with open(path, 'wb') as f:
            f.write(data)
        vm = QEMUMachine(self.qemu_bin, base_temp_dir=self.workdir,
                         log_dir=self.outputdir, name=name)
        vm.add_args('-M', 'pseries-10.0', *meta['args'],
                    '-incoming', 'defer')
        self.addCleanup(vm.shutdown, hard=True)
        vm.launch()
        vm.cmd('migrate-set-capabilities',
               capabilities=[{'capability': 'events', 'state': True}])
        vm.cmd('migrate-incoming', uri=f'file:{path}')
        return vm, meta

    def test_legacy_streams_load(self):
        """Streams the fork wrote in formats 1 and 2 (by builds of those
        commits) load and are carried on from exactly."""
        for fmt in ('format1', 'format2'):
            for kind in ('running', 'paused-freeze'):
                with self.subTest(stream=f'{fmt}-{kind}'):
                    vm, meta = self.legacy_stream(f'{fmt}-{kind}')
                    vm.event_wait('MIGRATION', timeout=60, match={
                        'data': {'status': 'completed'}})
                    # A file migration's VM waits for cont: as the source
                    # was, paused (the stop before it is recorded).
                    vm.cmd('cont')
                    last = vm.cmd('query-ppc-timebase')['last-adjustment']
                    self.log.info('%s-%s: %s', fmt, kind, last)
                    self.assertEqual(last['trigger'], 'migration')
                    self.assertTrue(last['sync-state-loaded'])
                    self.assertEqual(last['saved-tb'], meta['guest_tb'])
                    self.assertEqual(last['saved-realtime-ns'],
                                     meta['realtime_ns'])
                    if meta['user_paused']:
                        self.assertEqual(last['reason'], 'user-paused')
                        self.assertEqual(last['target-tb'], last['saved-tb'])
                    else:
                        # Written days ago: the 10 s cap.
                        self.assertEqual(last['reason'], 'capped')
                        self.assertEqual(last['applied-ns'], 10 * 10**9)
                    tb = vm.cmd('query-ppc-timebase')['vcpus'][0]['guest-tb']
                    self.assertGreaterEqual(tb, last['target-tb'])
                    vm.shutdown()

    def legacy_corrupt(self, name, mode, message):
        def corrupt(data):
            at = data.find(b'spapr/timebase-sync')
            self.assertGreater(at, 0)
            at += len('spapr/timebase-sync') + 4   # name, version_id
            if mode == 'version':
                data[at:at + 4] = (99).to_bytes(4, 'big')
            elif mode == 'tb_freq':
                off = at + 4 + 4 + 8 + 8 + 8
                freq = int.from_bytes(data[off:off + 8], 'big')
                data[off:off + 8] = (freq // 2).to_bytes(8, 'big')
            else:
                del data[at + 6:]
        vm, _ = self.legacy_stream(name, corrupt)
        deadline = time.time() + 60
        while vm.is_running() and time.time() < deadline:
            time.sleep(0.1)
        self.assertFalse(vm.is_running(), 'a corrupt stream loaded')
        vm.wait()
        self.assertIn(message, vm.get_log())

    def test_legacy_bad_version(self):
        """A legacy subsection with an impossible format version fails the
        load, naming the field."""
        self.legacy_corrupt('format2-running', 'version',
                            "spapr/timebase-sync: field 'version': "
                            "unsupported format version 99")

    def test_legacy_bad_tb_freq(self):
        """A legacy subsection with a wrong TB frequency fails the load."""
        self.legacy_corrupt('format1-running', 'tb_freq',
                            "spapr/timebase-sync: field 'tb_freq'")

    def test_legacy_truncated(self):
        """A stream cut inside the legacy subsection names the field."""
        self.legacy_corrupt('format2-paused-freeze', 'truncate',
                            'Failed to load spapr/timebase-sync')


if __name__ == '__main__':
    QemuSystemTest.main()
