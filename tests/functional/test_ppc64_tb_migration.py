#!/usr/bin/env python3
#
# Timebase (TB) migration of pseries TCG guests between QEMU processes:
# the guest TB advances by the real stop-to-start time, never goes
# backwards, and the monitor reports what was done.
#
# Needs the guest artifacts (a Linux kernel, an initramfs with the TB
# probe) in $TBFORK_GUEST, and for the compatibility tests other QEMU
# binaries: stock QEMU 10.0.x in $TBFORK_STOCK_QEMU and 7.2 in
# $TBFORK_QEMU72. A test whose prerequisite is missing skips with the
# reason; `make check` provides them all.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import time

from qemu_test import QemuSystemTest
from tbfork import (TBMigrationRig, MigrationFailed, MigrationMode,
                    ProbeReader,
                    StreamCorrupter, event_time, free_port, guest_lag,
                    sleeps_across_stop, wait_resume_or_failure)

# Stock QEMU 10.0.x to check compatibility with (`make check`: Debian's
# 10.0.2 from bookworm-backports, installed by scripts/setup-host.sh).
STOCK_QEMU = os.environ.get('TBFORK_STOCK_QEMU', '')
# Stock QEMU 7.2 (`make check`: Debian bookworm's, extracted by
# scripts/fetch-stock-qemu72.sh).
STOCK_QEMU72 = os.environ.get('TBFORK_QEMU72', '')
# Stock 10.0.2 lacks the icp/server section that later 10.0.x send
# (an upstream XICS fix), so cross-version pairs use XIVE only.
COMPAT_OPTS = 'ic-mode=xive'

# What the fork's docs promise on TCG (docs-fork/timebase-migration.rst):
# the TB error against host realtime across one migration is within
# ERROR_BOUND_S; the probe's own view of the stop (its largest gap
# between two TB reads) is never shorter than the QMP stop-to-start time
# by more than that, and longer by at most the time the vCPU takes to
# get going again (GAP_SLACK_S: 113 ms seen on 2026-11-26 with the
# series' prefix builds running beside the tests at idle priority).
ERROR_BOUND_S = 0.002
GAP_SLACK_S = 0.200
# A sleeper whose deadline passed during the stop wakes within this of
# the guest running again (scheduling latency under TCG: a few ms, 37 ms
# seen with a compile on both cores). A decrementer that did not fire at
# resume would wake it the rest of its sleep later: at least 0.35 s.
DEC_WAKE_BOUND_S = 0.100


class TBMigrationTest(QemuSystemTest):
    """pseries TCG guests' timebase across stops and migrations.

    The tags select these tests in Avocado (`avocado run -t migration`),
    as they did in QEMU's former avocado tests.

    :avocado: tags=arch:ppc64
    :avocado: tags=machine:pseries
    :avocado: tags=migration
    """

    timeout = 900

    def setUp(self):
        super().setUp()
        self.guest = os.environ.get('TBFORK_GUEST')
        if not (self.guest and
                os.path.exists(os.path.join(self.guest, 'vmlinux'))):
            self.skipTest('no guest artifacts: TBFORK_GUEST must name the '
                          'directory `make guest` writes')

    def rig(self, **kwargs):
        rig = TBMigrationRig(self.qemu_bin, self.guest,
                             os.path.join(self.outputdir, 'rig'), **kwargs)
        self.addCleanup(rig.cleanup)
        return rig

    def new_qcow2(self, name):
        """An empty qcow2 image in the work directory, for snapshots."""
        path = os.path.join(self.workdir, name)
        qemu_img = os.environ.get('QEMU_TEST_QEMU_IMG', 'qemu-img')
        self.assertEqual(os.system(f'{qemu_img} create -q -f qcow2 '
                                   f'{path} 16M'), 0)
        return path

    def disk_rig(self):
        """A rig whose guests have a qcow2 drive (node disk0) for
        snapshots."""
        disk = self.new_qcow2('disk.qcow2')
        rig = self.rig()
        rig.extra_args = ['-drive', f'if=none,id=d0,node-name=disk0,'
                          f'format=qcow2,file={disk}']
        return rig

    def wait_source_failed(self, src):
        """The source's migration reaches 'failed' within 30 s."""
        deadline = time.time() + 30
        while src.cmd('query-migrate')['status'] != 'failed':
            self.assertLess(time.time(), deadline, 'source did not fail')
            time.sleep(0.1)

    def assert_compensated(self, res, gap_slack_s=GAP_SLACK_S):
        self.log.info('migration: %s', res)
        self.assertEqual(res.backwards, 0, 'the guest TB went backwards')
        self.assertLess(abs(res.error_s), ERROR_BOUND_S,
                        f'TB error {res.error_s * 1e3:.3f} ms')
        self.assertGreater(res.gap_error_s, -ERROR_BOUND_S)
        self.assertLess(res.gap_error_s, gap_slack_s)

    def test_stop_1s(self):
        """1 s forced stop: the TB advances by the stop-to-start time."""
        rig = self.rig()
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, 1.0)
        self.assert_compensated(res)
        self.assertGreater(res.stop_to_start_s, 1.0)

        info = dst.cmd('query-ppc-timebase')
        last = info['last-adjustment']
        self.assertEqual(info['accelerator'], 'tcg')
        self.assertEqual(info['policy'], 'downtime')
        self.assertEqual(last['trigger'], 'migration')
        # The common case: upstream's timebase fields say it all.
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        # The measured stop-to-start time is the QMP one, to within the
        # event latencies on both sides.
        self.assertAlmostEqual(last['measured-ns'] / 1e9,
                               res.stop_to_start_s, delta=0.02)
        self.assertEqual(last['applied-ns'], last['measured-ns'])
        self.assertEqual(last['target-tb'] - last['saved-tb'],
                         last['delta-ticks'])
        events = [e for e in dst.get_qmp_events()
                  if e['event'] == 'PPC_TIMEBASE_ADJUSTED']
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0]['data']['delta-ticks'],
                         last['delta-ticks'])

    def test_stop_0(self):
        """No extra stop: still compensated, no backwards step."""
        rig = self.rig()
        src, reader = rig.start_source()
        _, _, res = rig.migrate(src, reader, 0.0)
        self.assert_compensated(res)

    def test_policy_freeze(self):
        """tb-policy=freeze reproduces upstream: the TB loses the stop."""
        rig = self.rig(machine_opts='tb-policy=freeze')
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, 1.0)
        self.assertEqual(res.backwards, 0)
        self.assertLess(res.error_s, -0.9)
        # Frozen from the vCPUs' stop to their start, which the QMP
        # events fall within (by up to GAP_SLACK_S under load).
        self.assertGreater(res.error_s, -res.stop_to_start_s - GAP_SLACK_S)
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'policy-freeze')
        self.assertEqual(last['delta-ticks'], 0)

    def test_skew_ahead_capped(self):
        """Destination clock 1 h ahead: the delta is capped."""
        rig = self.rig(dst_machine_opts='x-tb-realtime-skew-ms=3600000,'
                                        'tb-max-delta-ms=5000')
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, 0.5)
        self.assertEqual(res.backwards, 0)
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'capped')
        self.assertEqual(last['applied-ns'], 5000 * 10**6)
        self.assertGreater(last['measured-ns'], 3600 * 10**9)
        # The guest sees the cap, not the hour: it gains the cap minus the
        # real stop (the fork's measured time less the skew), and the
        # QMP stop-to-start time agrees with that stop within the events'
        # latencies (loaded machine: up to ~5 ms seen).
        real_stop_s = last['measured-ns'] / 1e9 - 3600
        self.assertAlmostEqual(res.error_s, 5.0 - real_stop_s,
                               delta=ERROR_BOUND_S * 2)
        self.assertAlmostEqual(real_stop_s, res.stop_to_start_s, delta=0.025)
        hmp = dst.cmd('human-monitor-command',
                      command_line='info timebase')
        self.assertIn('reason: capped', hmp)
        # Not only in the trace: in QEMU's log (libvirt's domain log).
        dst.shutdown()
        self.assertIn('timebase: advance capped at tb-max-delta-ms',
                      dst.get_log())

    def test_skew_behind_clamped(self):
        """Destination clock 1 h behind: clamped, the TB never goes back."""
        rig = self.rig(dst_machine_opts='x-tb-realtime-skew-ms=-3600000')
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, 0.5)
        self.assertEqual(res.backwards, 0)
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'clock-backwards')
        self.assertEqual(last['delta-ticks'], 0)
        self.assertLess(last['measured-ns'], -3500 * 10**9)
        self.assertLess(res.error_s, 0)
        dst.shutdown()
        self.assertIn("timebase: host clock behind the source's, advance "
                      "clamped to 0", dst.get_log())

    def local_pause(self, policy):
        rig = self.rig(machine_opts=f'tb-policy={policy}')
        src, reader = rig.start_source()
        src.cmd('stop')
        time.sleep(1.0)
        src.cmd('cont')
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 3, timeout=30)
        return src, reader

    def test_user_pause_downtime(self):
        """A user pause keeps the TB frozen under the default policy."""
        src, reader = self.local_pause('downtime')
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['delta-ticks'], 0)
        self.assertEqual(len(reader.of_kind('back')), 0)

    def test_user_pause_wallclock(self):
        """tb-policy=wallclock follows the host clock through a pause."""
        src, reader = self.local_pause('wallclock')
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'applied')
        self.assertGreater(last['applied-ns'], 10**9)
        gaps = [p.fields['gap'] for p in reader.of_kind('jump')]
        freq = reader.of_kind('start')[0].fields['freq']
        self.assertTrue(any(g / freq > 1.0 for g in gaps),
                        f'no jump over 1 s in {gaps}')
        self.assertEqual(len(reader.of_kind('back')), 0)

    def test_monitor(self):
        """QMP query-ppc-timebase and HMP info timebase on a running guest."""
        rig = self.rig()
        src, _ = rig.start_source()
        first = src.cmd('query-ppc-timebase')
        time.sleep(0.2)
        second = src.cmd('query-ppc-timebase')
        self.assertEqual(first['frequency'], 512000000)
        self.assertTrue(first['sync-state'])
        self.assertEqual(first['max-delta-ms'], 10000)
        self.assertNotIn('last-adjustment', first)
        self.assertEqual(len(first['vcpus']), 1)
        tb1 = first['vcpus'][0]['guest-tb']
        tb2 = second['vcpus'][0]['guest-tb']
        self.assertGreater(tb2, tb1 + 0.1 * first['frequency'])
        for v in second['vcpus']:
            self.assertEqual(v['guest-tb'], v['host-tb'] + v['tb-offset'])
        hmp = src.cmd('human-monitor-command', command_line='info timebase')
        self.assertIn('timebase: 512000000 Hz, tcg, policy downtime', hmp)
        self.assertIn('vCPU 0: guest TB 0x', hmp)
        self.assertIn('last adjustment: none', hmp)

    def test_qom_set_runtime(self):
        """The machine properties change at run time with qom-set (what a
        management layer can do without a command-line option):
        tb-max-delta-ms and tb-sync at any time, tb-policy except while a
        migration runs (refused with an error)."""
        rig = self.rig()
        src, _ = rig.start_source()
        dst, _, port = rig.start_destination(autostart=False)
        rig.start_migration(src, port)         # waits in pre-switchover
        r = src.qmp('qom-set', path='/machine', property='tb-policy',
                    value='freeze')
        self.assertEqual(r['error']['desc'],
                         'tb-policy cannot change while a migration runs')
        self.assertEqual(src.cmd('query-ppc-timebase')['policy'], 'downtime')
        src.cmd('qom-set', path='/machine', property='tb-sync', value=False)
        self.assertFalse(src.cmd('query-ppc-timebase')['sync-state'])
        time.sleep(1.0)
        src.cmd('migrate-continue', state='pre-switchover')
        dst.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        # The destination's cap is what applies: lower it before cont.
        dst.cmd('qom-set', path='/machine', property='tb-max-delta-ms',
                value=300)
        self.assertEqual(dst.cmd('query-ppc-timebase')['max-delta-ms'], 300)
        dst.cmd('cont')
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'capped')
        self.assertEqual(last['applied-ns'], 300 * 10**6)
        self.assertFalse(last['sync-state-loaded'])
        # No migration runs here: the policy changes, and is used.
        dst.cmd('qom-set', path='/machine', property='tb-policy',
                value='freeze')
        dst.cmd('stop')
        time.sleep(0.3)
        dst.cmd('cont')
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['policy'], 'freeze')
        self.assertEqual(last['reason'], 'policy-freeze')
        src.shutdown()

    def test_old_machine_type_has_no_subsection(self):
        """pseries-9.2 never sends timebase/sync, not even for a user
        pause under the freeze policy; fork -> fork is still exact from
        upstream's fields."""
        rig = self.rig(machine='pseries-9.2')
        src, reader = rig.start_source()
        self.assertFalse(src.cmd('query-ppc-timebase')['sync-state'])
        dst, _, res = rig.migrate(src, reader, 1.0)
        self.assert_compensated(res)
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        # A pause the freeze policy keeps: the flag has no way to travel.
        dst.cmd('qom-set', path='/machine', property='tb-policy',
                value='freeze')
        self.assertFalse(self.paused_migration_sends_subsection(rig, dst))

    def paused_migration_sends_subsection(self, rig, src, dst_opts=None):
        """Pause src, migrate it to a new fork (left paused), continue it
        there; whether the stream carried timebase/sync."""
        src.cmd('stop')
        dst, dreader, port = rig.start_destination(dst_opts=dst_opts)
        rig.start_migration(src, port, pause=False)
        src.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        dst.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        self.assertEqual(dst.cmd('query-status')['status'], 'paused')
        src.shutdown()
        dst.cmd('cont')
        n = len(dreader.wait_for('sum', timeout=60))
        dreader.wait_for('sum', count=n + 2, timeout=30)
        self.assertEqual(dreader.of_kind('back'), [])
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        return last['sync-state-loaded']

    def sync_source(self, rig):
        """A fork source whose next migration needs timebase/sync: paused
        by the user under the freeze policy (the pause cannot become
        downtime)."""
        src, reader = rig.start_source()
        src.cmd('qom-set', path='/machine', property='tb-policy',
                value='freeze')
        src.cmd('stop')
        return src, reader

    def test_bad_streams(self):
        """A corrupt timebase/sync (an unknown flag bit, a floor below
        guest_timebase, the stream cut inside it) fails the migration
        with a message naming the field; the source is left as it was
        (paused here) and the next try, corrupted otherwise, fails the
        same way. Then it runs on, its TB monotonic."""
        rig = self.rig()
        src, reader = self.sync_source(rig)
        for mode, message in (
                ('flags', "timebase/sync: field 'sync_flags': unknown bits "
                          "0x80000000"),
                ('floor', "timebase/sync: field 'sync_floor_tb' 0x0 is "
                          "below guest_timebase"),
                ('truncate', 'Failed to load timebase/sync:sync_')):
            with self.subTest(mode=mode):
                dst, _, port = rig.start_destination(return_path=True)
                proxy = StreamCorrupter(port, mode)
                rig.start_migration(src, proxy.port, return_path=True,
                                    pause=False)
                with self.assertRaises(MigrationFailed) as cm:
                    wait_resume_or_failure(src, dst)
                self.assertTrue(proxy.hit, 'subsection not seen')
                self.assertIn(message, str(cm.exception))
                self.wait_source_failed(src)
                self.assertEqual(src.cmd('query-status')['status'],
                                 'paused')
        src.cmd('cont')
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 3, timeout=30)
        self.assertEqual(len(reader.of_kind('back')), 0)
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'policy-freeze')

    # ---- Stock QEMU and mixed fleets ----

    def assert_tod_compensated(self, rig, src, reader):
        """A stock source: compensated from time_of_the_day_ns.

        The destination waits 1 s for `cont` after the migration, as under
        a management layer: that time is compensated.
        """
        dst, dreader, res = rig.migrate(src, reader, 0.0, dst_hold_s=1.0)
        self.assertEqual(res.backwards, 0)
        self.assertGreater(res.stop_to_start_s, 1.0)
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        self.assertGreater(last['measured-ns'], 10**9)
        # Only the last RAM pass (between the source's stop and its
        # device state save) is not compensated; stock loses it all.
        self.assertLess(res.error_s, 0)
        self.assertGreater(res.error_s, -0.25)
        return dst, dreader, res

    def test_compat_fork_to_stock_with_subsection(self):
        """Fork -> stock when the stream needs timebase/sync: the stock
        side refuses it (naming the timebase field) and the source stays
        as it was; with tb-sync turned off at run time (qom-set) the next
        try loads."""
        rig = self.rig(dst_qemu_bin=self.stock_qemu(),
                       machine_opts=COMPAT_OPTS)
        src, reader = self.sync_source(rig)
        dst, _, port = rig.start_destination(return_path=True)
        rig.start_migration(src, port, return_path=True, pause=False)
        with self.assertRaises(MigrationFailed) as cm:
            wait_resume_or_failure(src, dst)
        # Stock 10.0.2 says which field and errno (-ENOENT: no such
        # subsection); later QEMUs also name the subsection.
        self.assertIn("Failed to load spapr:tb\n", str(cm.exception))
        self.assertIn('load of migration failed: No such file or directory',
                      str(cm.exception))
        self.wait_source_failed(src)
        self.assertEqual(src.cmd('query-status')['status'], 'paused')
        src.cmd('qom-set', path='/machine', property='tb-sync', value=False)
        dst, dreader, port = rig.start_destination()
        rig.start_migration(src, port, pause=False)
        dst.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        src.shutdown()
        dst.cmd('cont')
        n = len(dreader.wait_for('sum', timeout=60))
        dreader.wait_for('sum', count=n + 2, timeout=30)
        self.assertEqual(dreader.of_kind('back'), [])

    def test_tb_sync_off_either_side(self):
        """tb-sync only says what a QEMU sends: a fork with tb-sync=off
        loads and honours the subsection; a source with tb-sync=off sends
        none, and its pause is then counted as downtime (capped)."""
        rig = self.rig()
        src, _ = self.sync_source(rig)
        self.assertTrue(self.paused_migration_sends_subsection(
            rig, src, dst_opts='tb-sync=off'))
        dst = rig.vms[-1]
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['target-tb'], last['saved-tb'])

        rig = self.rig(src_machine_opts='tb-sync=off')
        src, _ = self.sync_source(rig)
        time.sleep(0.5)
        self.assertFalse(self.paused_migration_sends_subsection(rig, src))
        last = rig.vms[-1].cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'applied')
        self.assertGreater(last['applied-ns'], 0.5e9)

    def test_rolling_upgrade_default(self):
        """stock 10.0.2 -> fork -> stock -> fork with default options
        (the compatibility matrix's 10.0.x rows both ways), each hop live,
        the destination continued 1 s after the migration (as by a
        management layer): the TB never goes backwards; a fork
        destination compensates from the source's fields (a stock source
        dates them when it saves: only the last RAM pass is lost), a
        stock destination freezes the TB as stock does."""
        rig = self.rig(machine_opts=COMPAT_OPTS)
        stock = self.stock_qemu()
        rig.qemu_bin = stock
        src, reader = rig.start_source()
        hops = [(stock, self.qemu_bin), (self.qemu_bin, stock),
                (stock, self.qemu_bin)]
        for i, (src_bin, dst_bin) in enumerate(hops):
            with self.subTest(hop=i + 1, src=src_bin, dst=dst_bin):
                if dst_bin == stock:
                    src, reader, res = rig.migrate(src, reader, 0.0,
                                                   dst_bin=dst_bin,
                                                   dst_hold_s=1.0)
                    self.log.info('hop %d fork -> stock: %s', i + 1, res)
                    self.assertEqual(res.backwards, 0)
                    self.assertGreater(res.stop_to_start_s, 1.0)
                    self.assertLess(res.error_s, -0.9)
                else:
                    rig.dst_qemu_bin = dst_bin
                    src, reader, res = self.assert_tod_compensated(
                        rig, src, reader)
                    self.log.info('hop %d stock -> fork: %s', i + 1, res)

    def qemu72(self):
        if not os.access(STOCK_QEMU72, os.X_OK):
            self.skipTest('no stock QEMU 7.2: TBFORK_QEMU72 must name its '
                          'qemu-system-ppc64 (scripts/fetch-stock-qemu72.sh)')
        return STOCK_QEMU72

    def stock_qemu(self):
        if not os.access(STOCK_QEMU, os.X_OK):
            self.skipTest('no stock QEMU 10.0.x: TBFORK_STOCK_QEMU must name '
                          'its qemu-system-ppc64')
        return STOCK_QEMU

    def test_compat_qemu72_to_fork(self):
        """Stock 7.2 -> fork (pseries-7.2): compensated from the TOD."""
        rig = self.rig(machine='pseries-7.2')
        rig.qemu_bin = self.qemu72()
        src, reader = rig.start_source()
        dst, _, _ = self.assert_tod_compensated(rig, src, reader)
        # pseries-7.2 predates the subsection: the fork would not send it.
        self.assertFalse(dst.cmd('qom-get', path='/machine',
                                 property='tb-sync'))

    def test_compat_fork_to_qemu72_refused_like_stock(self):
        """Fork -> 7.2 fails as stock 10.0 -> 7.2 does; source runs on."""
        # QEMU 8.0 moved cpu/slb to version 2, which 7.2 cannot load, so
        # no 10.0 (stock or fork) reaches 7.2 with a 64-bit CPU. The fork
        # must fail the same way and keep the source running.
        for src_bin in (self.stock_qemu(), self.qemu_bin):
            rig = self.rig(machine='pseries-7.2',
                           dst_qemu_bin=self.qemu72())
            rig.qemu_bin = src_bin
            src, reader = rig.start_source()
            dst, _, port = rig.start_destination(return_path=True)
            rig.start_migration(src, port, return_path=True)
            src.cmd('migrate-continue', state='pre-switchover')
            with self.assertRaises(MigrationFailed) as cm:
                wait_resume_or_failure(src, dst)
            self.assertIn('cpu/slb', str(cm.exception))
            self.wait_source_failed(src)
            n = len(reader.of_kind('sum'))
            reader.wait_for('sum', count=n + 5, timeout=30)
            self.assertTrue(src.cmd('query-status')['running'])
            self.assertEqual(reader.of_kind('back'), [])
            rig.cleanup()

    def test_ping_pong_20(self):
        """20 migrations in a row: the error does not accumulate."""
        hops = 20
        rig = self.rig()
        vm, reader = rig.start_source()
        freq = reader.of_kind('start')[0].fields['freq']
        lag0 = guest_lag(reader.of_kind('sum')[-rig.lag_samples:], freq)
        total_stop = 0.0
        for _ in range(hops):
            vm, reader, res = rig.migrate(vm, reader, 0.1, settle_s=0)
            self.assertEqual(res.backwards, 0)
            self.assertLess(abs(res.error_s), ERROR_BOUND_S)
            total_stop += res.stop_to_start_s
        lag1 = guest_lag(reader.of_kind('sum')[-rig.lag_samples:], freq)
        self.log.info('%d hops, %.3f s stopped, accumulated error %.3f ms',
                      hops, total_stop, (lag0 - lag1) * 1e3)
        self.assertGreater(total_stop, hops * 0.1)
        self.assertLess(abs(lag0 - lag1), hops * ERROR_BOUND_S)

    def test_smp_same_tb(self):
        """4 vCPUs: all run on after migration and agree on the TB."""
        # A sleeper per vCPU (w=50) needs that vCPU's timer interrupts.
        rig = self.rig(smp=4, probe_opts='i=100,t=5000,a,w=50')
        src, reader = rig.start_source()
        self.assertEqual(reader.of_kind('start')[0].fields['cpus'], 4)
        dst, dreader, res = rig.migrate(src, reader, 0.5)
        self.assertEqual(res.backwards, 0)
        # Every vCPU keeps running tasks and taking timer interrupts on
        # the destination (QEMU 10.0 left the secondary vCPUs in the
        # "RTAS stopped" state there: fixed by "spapr: rebuild the vCPUs'
        # 'RTAS stopped' state after migration"), while the cross-CPU
        # check runs.
        after = time.time()
        for cpu in range(4):
            for kind in ('wake', 'sum'):
                dreader.wait_for(kind, count=5, timeout=30,
                                 pred=lambda p, c=cpu: p.fields['cpu'] == c
                                 and p.host_time > after)
        for r in (reader, dreader):
            self.assertEqual(r.of_kind('skew'), [], 'vCPU TBs disagree')
            self.assertEqual(r.of_kind('back'), [])
        self.assertEqual(len(dst.cmd('query-ppc-timebase')['vcpus']), 4)

    def test_hotplug_after_migration(self):
        """A core hot-plugged after a migration reads the same TB as the
        vCPU that migrated (the probe checks it both ways)."""
        rig = self.rig(smp='1,maxcpus=2', probe_opts='i=100,t=5000,a')
        src, reader = rig.start_source()
        dst, dreader, res = rig.migrate(src, reader, 0.5)
        self.assert_compensated(res)
        core = [c for c in dst.cmd('query-hotpluggable-cpus')
                if 'qom-path' not in c][0]
        dst.cmd('device_add', driver=core['type'], id='core1',
                **core['props'])
        dreader.wait_for('cpuadd', timeout=60)
        after = time.time()
        dreader.wait_for('sum', count=20, timeout=60,
                         pred=lambda p: p.fields['cpu'] == 1 and
                         p.host_time > after)
        vcpus = dst.cmd('query-ppc-timebase')['vcpus']
        offsets = {v['tb-offset'] for v in vcpus}
        self.assertEqual(len(offsets), 1, offsets)
        self.assertEqual(dreader.of_kind('skew'), [], 'vCPU TBs disagree')
        self.assertEqual(dreader.of_kind('back'), [])

    def test_dec_fires_at_resume(self):
        """A sleep whose deadline fell in the stop ends at resume."""
        # Four sleepers, deadlines every 0.8 s a quarter period apart:
        # a >1 s stop holds several deadlines, the last at least 0.6 s in.
        rig = self.rig(probe_opts='i=100,t=5000,w=800')
        src, reader = rig.start_source()
        dst, dreader, res = rig.migrate(src, reader, 1.0)
        # The spinner shares its vCPU with the sleepers that all wake at
        # resume, so its first TB read after the stop comes later than
        # in the other tests (127 and 158 ms with background builds on
        # both cores, 2026-11-26): the gap bound is looser here, the TB
        # error bound is the same.
        self.assert_compensated(res, gap_slack_s=0.300)
        n, into_stop_s, after_resume_s = sleeps_across_stop(
            [reader, dreader], res.tb_freq)
        self.assertGreaterEqual(n, 2, 'sleepers with a deadline in the stop')
        self.assertGreater(into_stop_s, 0.35)
        # Their decrementer expired during the stop, so it fires as soon
        # as the vCPU runs: they wake by the first TB the spinning probe
        # read on the destination (plus scheduling), not after the rest
        # of their sleep (up to into_stop_s later).
        self.log.info('sleepers woke by %.3f ms after resume (a deadline '
                      '%.0f ms into the stop)', after_resume_s * 1e3,
                      into_stop_s * 1e3)
        self.assertLess(after_resume_s, DEC_WAKE_BOUND_S)

    def resumed_source(self, src, reader):
        """The source runs again, compensated, with a monotonic TB."""
        deadline = time.time() + 30
        while not src.cmd('query-status')['running']:
            self.assertLess(time.time(), deadline, 'source did not resume')
            time.sleep(0.1)
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 5, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'applied')
        return last

    def test_cancelled_migration(self):
        """Cancelled in pre-switchover: the source resumes, compensated."""
        rig = self.rig()
        src, reader = rig.start_source()
        _, _, port = rig.start_destination()
        rig.start_migration(src, port)
        time.sleep(0.5)
        src.cmd('migrate_cancel')
        last = self.resumed_source(src, reader)
        self.assertGreater(last['applied-ns'], 0.5e9)
        # The guest saw the stop as a forward jump of about its length,
        # plus what its vCPU took to get going (GAP_SLACK_S).
        freq = reader.of_kind('start')[0].fields['freq']
        gaps = [p.fields['gap'] / freq for p in reader.of_kind('jump')]
        applied = last['applied-ns'] / 1e9
        self.assertTrue(any(-0.05 < g - applied < GAP_SLACK_S
                            for g in gaps), f'jumps {gaps}, applied {applied}')

    def test_failed_migration_dest_killed(self):
        """Destination killed mid-way: the source resumes, compensated."""
        rig = self.rig()
        src, reader = rig.start_source()
        dst, _, port = rig.start_destination()
        rig.start_migration(src, port)
        dst.kill()
        time.sleep(0.5)
        src.cmd('migrate-continue', state='pre-switchover')
        self.wait_source_failed(src)
        last = self.resumed_source(src, reader)
        self.assertGreater(last['applied-ns'], 0.5e9)

    def test_savevm_loadvm(self):
        """savevm/loadvm: the TB is the snapshot's (user pause: frozen)."""
        rig = self.disk_rig()
        src, reader = rig.start_source()

        def hmp(line):
            # (loadvm repeats the TCG capability warnings of the command
            # line: only errors count)
            self.assertNotIn('rror', src.cmd('human-monitor-command',
                                             command_line=line))

        self.assert_snapshot_round_trip(src, reader,
                                        lambda: hmp('savevm snap1'),
                                        lambda: hmp('loadvm snap1'))

    def assert_snapshot_round_trip(self, vm, reader, save, load):
        """save() a snapshot, load() it 1 s later: the TB is the
        snapshot's (a pause: frozen), and the guest, continuing from the
        snapshot's state, sees no backwards step."""
        save()
        last = vm.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'user-paused')
        saved_tb = last['saved-tb']
        time.sleep(1.0)
        load()
        last = vm.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'loadvm')
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['saved-tb'], saved_tb)
        self.assertEqual(last['target-tb'], saved_tb)
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 5, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])

    def migrate_plain(self, src, dst, port):
        """Migrate src to dst (no forced stop); returns src's setup event."""
        src.cmd('migrate-set-capabilities',
                capabilities=[{'capability': 'events', 'state': True}])
        src.cmd('migrate', uri=f'tcp:127.0.0.1:{port}')
        setup = src.event_wait('MIGRATION', timeout=30,
                               match={'data': {'status': 'setup'}})
        src.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        dst.event_wait('MIGRATION', timeout=30,
                       match={'data': {'status': 'completed'}})
        return setup

    def test_paused_double_migration(self):
        """Paused A -> B (stays paused) -> C, then cont on C.

        B never starts the VM, so it must send on the pair that came from
        A (before the fix it sampled afresh: under KVM its own host TB,
        which stepped the guest TB back by the hosts' difference; under
        TCG the time until B's save was lost). The pause before the
        first migration is a user pause (frozen); from the migration's
        start it is downtime (compensated), documented.
        """
        rig = self.rig()
        src, reader = rig.start_source()
        freq = reader.of_kind('start')[0].fields['freq']
        before = reader.of_kind('sum')
        src.cmd('stop')
        stop = src.event_wait('STOP', timeout=10)
        time.sleep(1.0)
        b, _, port = rig.start_destination()
        setup = self.migrate_plain(src, b, port)
        self.assertEqual(b.cmd('query-status')['status'], 'paused')
        time.sleep(1.0)
        c, creader, port = rig.start_destination()
        self.migrate_plain(b, c, port)
        self.assertEqual(c.cmd('query-status')['status'], 'paused')
        time.sleep(0.5)
        c.cmd('cont')
        resume = c.event_wait('RESUME', timeout=10)
        post = creader.wait_for('sum', count=rig.lag_samples, timeout=60)
        last = c.cmd('query-ppc-timebase')['last-adjustment']
        self.log.info('paused double migration: %s', last)
        self.assertEqual(last['trigger'], 'migration')
        # The pause became downtime when the first migration began.
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        downtime_s = event_time(resume) - event_time(setup)
        paused_s = event_time(setup) - event_time(stop)
        self.assertAlmostEqual(last['measured-ns'] / 1e9, downtime_s,
                               delta=0.02)
        error_s = (guest_lag(before[-rig.lag_samples:], freq) -
                   guest_lag(post, freq))
        self.log.info('pause %.3f s (frozen), then %.3f s of migrations '
                      '(compensated): TB error %.3f ms', paused_s,
                      downtime_s, error_s * 1e3)
        self.assertAlmostEqual(error_s, -paused_s, delta=ERROR_BOUND_S * 2)
        self.assertEqual(reader.of_kind('back') + creader.of_kind('back'),
                         [])

    def test_pause_outlives_failed_migration(self):
        """A paused VM whose migration fails, and a VM paused while its
        migration runs (libvirt's --timeout-suspend) whose migration is
        then cancelled: the VM is still paused there, and the pause goes
        on (cont: frozen under the default policy)."""
        rig = self.rig()
        src, reader = rig.start_source()
        src.cmd('stop')
        dst, _, port = rig.start_destination()
        rig.start_migration(src, port)
        dst.kill()
        src.cmd('migrate-continue', state='pre-switchover')
        src.event_wait('MIGRATION', timeout=30,
                       match={'data': {'status': 'failed'}})
        self.assertEqual(src.cmd('query-status')['status'], 'paused')
        time.sleep(0.5)
        src.cmd('cont')
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['delta-ticks'], 0)

        _, _, port = rig.start_destination()
        src.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'pause-before-switchover', 'state': False}])
        src.cmd('migrate-set-parameters', **{'max-bandwidth': 1 << 20})
        src.cmd('migrate', uri=f'tcp:127.0.0.1:{port}')
        src.event_wait('MIGRATION', timeout=30,
                       match={'data': {'status': 'active'}})
        src.cmd('stop')
        time.sleep(0.5)
        src.cmd('migrate_cancel')
        src.event_wait('MIGRATION', timeout=30,
                       match={'data': {'status': 'cancelled'}})
        self.assertEqual(src.cmd('query-status')['status'], 'paused')
        src.cmd('cont')
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'user-paused')
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 3, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])

    def test_cont_during_migration_after_pause(self):
        """A VM paused while its migration runs (libvirt's
        --timeout-suspend), continued before the migration ends: on this
        host that was a user pause (frozen), not downtime from the
        migration; the migration, cancelled, leaves it running."""
        rig = self.rig()
        src, reader = rig.start_source()
        _, _, port = rig.start_destination()
        rig.start_migration(src, port, pause=False, mode=MigrationMode(
            params={'max-bandwidth': 1 << 20}))
        src.event_wait('MIGRATION', timeout=30,
                       match={'data': {'status': 'active'}})
        src.cmd('stop')
        paused_tb = src.cmd('query-ppc-timebase')['vcpus'][0]['guest-tb']
        time.sleep(0.5)
        info = src.cmd('query-migrate')
        self.assertEqual(info['status'], 'active', info)
        src.cmd('cont')
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['delta-ticks'], 0)
        self.assertEqual(last['saved-tb'], paused_tb)
        src.cmd('migrate_cancel')
        src.event_wait('MIGRATION', timeout=30,
                       match={'data': {'status': 'cancelled'}})
        self.assertEqual(src.cmd('query-status')['status'], 'running')
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 3, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])

    def snapshot_tb(self, vm, name):
        """savevm NAME on vm; the TB it saved."""
        self.assertEqual(vm.cmd('human-monitor-command',
                                command_line=f'savevm {name}').strip(), '')
        return vm.cmd('query-ppc-timebase')['last-adjustment']['saved-tb']

    def test_two_loads_without_start(self):
        """loadvm of a later snapshot, then of an earlier one, then cont:
        the second load's TB, nothing left from the first (its TB is
        higher: a floor kept from it would show)."""
        rig = self.disk_rig()
        vm, reader = rig.start_source()
        tb_early = self.snapshot_tb(vm, 'early')
        time.sleep(0.5)
        tb_late = self.snapshot_tb(vm, 'late')
        self.assertGreater(tb_late, tb_early)
        vm.cmd('stop')
        for name in ('late', 'early'):
            self.assertNotIn('rror', vm.cmd('human-monitor-command',
                                            command_line=f'loadvm {name}'))
        vm.cmd('cont')
        last = vm.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'loadvm')
        # savevm never needs the subsection: a snapshot is a pause.
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'user-paused')
        # Under TCG the TB is the loaded virtual clock's.
        freq = reader.of_kind('start')[0].fields['freq']
        self.assertLess(abs(last['saved-tb'] - tb_early), freq // 1000,
                        f"saved TB {last['saved-tb']}, the snapshot's "
                        f"{tb_early}, the other snapshot's {tb_late}")
        self.assertEqual(last['target-tb'], last['saved-tb'])
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 3, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])

    def test_paused_savevm_loads_in_stock(self):
        """An internal snapshot of a paused fork VM (what a rollback to
        stock QEMU finds on its disks) loads in stock 10.0.2: savevm
        never needs timebase/sync, paused or not."""
        disk = self.new_qcow2('disk.qcow2')
        rig = self.rig(machine_opts=COMPAT_OPTS)
        rig.extra_args = ['-drive', f'if=none,id=d0,node-name=disk0,'
                          f'format=qcow2,file={disk}']
        vm, _ = rig.start_source()
        vm.cmd('stop')
        time.sleep(0.3)
        self.assertEqual(vm.cmd('human-monitor-command',
                                command_line='savevm paused').strip(), '')
        vm.shutdown()
        rig.extra_args += ['-loadvm', 'paused']
        stock = rig.new_vm('stock', self.stock_qemu(), COMPAT_OPTS)
        try:
            stock.launch()      # stock exits at once if -loadvm fails
        except Exception as e:  # pylint: disable=broad-except
            self.fail(f'stock QEMU did not load the snapshot: {e}; '
                      f'{stock.get_log()}')
        reader = ProbeReader(stock.console_socket, os.path.join(
            self.outputdir, 'console-stock.log'))
        n = len(reader.wait_for('sum', timeout=60))     # -loadvm starts it
        reader.wait_for('sum', count=n + 3, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])
        stock.shutdown()
        self.assertNotIn('Failed to load', stock.get_log())

    def test_cmdline_loadvm(self):
        """-loadvm NAME is a snapshot load (frozen), not a migration."""
        rig = self.disk_rig()
        vm, _ = rig.start_source()
        saved_tb = self.snapshot_tb(vm, 'snap1')
        vm.shutdown()
        time.sleep(1.0)
        rig.extra_args += ['-loadvm', 'snap1']
        vm = rig.new_vm('loadvm', self.qemu_bin, rig.src_machine_opts)
        vm.launch()
        reader = ProbeReader(vm.console_socket, os.path.join(
            self.outputdir, 'console-loadvm.log'))
        n = len(reader.wait_for('sum', timeout=60))
        reader.wait_for('sum', count=n + 3, timeout=30)
        last = vm.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'loadvm')
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['saved-tb'], saved_tb)
        self.assertEqual(last['delta-ticks'], 0)
        self.assertEqual(reader.of_kind('back'), [])

    def test_icount_warns_once_when_due(self):
        """Under icount the virtual clock cannot be advanced: one warning,
        and only when an advance was due (not for user pauses)."""
        rig = self.rig()
        rig.extra_args = ['-icount', 'shift=auto']
        # User pauses only: nothing due, no warning.
        src, reader = rig.start_source()
        for _ in range(2):
            src.cmd('stop')
            src.cmd('cont')
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'user-paused')
        src.shutdown()
        self.assertNotIn('cannot advance', src.get_log())
        # Cancelled migrations: an advance due at each resume.
        src, reader = rig.start_source()
        for _ in range(2):
            _, _, port = rig.start_destination()
            rig.start_migration(src, port)
            time.sleep(0.2)
            src.cmd('migrate_cancel')
            src.event_wait('RESUME', timeout=30)
            last = src.cmd('query-ppc-timebase')['last-adjustment']
            self.assertEqual(last['reason'], 'applied')
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 2, timeout=60)
        src.shutdown()
        self.assertEqual(src.get_log().count('cannot advance the virtual '
                                             'clock under icount'), 1,
                         src.get_log())

    # ---- Every migration mode of QEMU 10.0, stock side by side ----

    def stock_rig(self):
        rig = self.rig()
        rig.qemu_bin = rig.dst_qemu_bin = self.stock_qemu()
        return rig

    def assert_mode(self, mode, stop_s=1.0, stock=True, **kwargs):
        """A migration in `mode` with a forced stop: the fork compensates
        it; stock QEMU (same mode, same run) loses it."""
        rig = self.rig()
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, stop_s, mode=mode, **kwargs)
        self.log.info('fork, %s: %s', mode, res)
        self.assertEqual(res.backwards, 0, 'the guest TB went backwards')
        self.assertLess(abs(res.error_s), ERROR_BOUND_S,
                        f'TB error {res.error_s * 1e3:.3f} ms')
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'migration')
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        self.assertGreater(last['applied-ns'], stop_s * 1e9)
        if stock:
            rig = self.stock_rig()
            src, reader = rig.start_source()
            _, _, sres = rig.migrate(src, reader, stop_s, mode=mode, **kwargs)
            self.log.info('stock, %s: %s', mode, sres)
            self.assertEqual(sres.backwards, 0)
            self.assertLess(sres.error_s, -0.9 * stop_s)
        return dst, res

    # Postcopy switches over at once: precopy is throttled so that the
    # first pass does not finish within the downtime limit.
    POSTCOPY = MigrationMode(caps=['postcopy-ram'], postcopy=True,
                             params={'max-bandwidth': 8 << 20})

    def test_mode_postcopy(self):
        """Postcopy: the destination starts at the switchover."""
        dst, res = self.assert_mode(self.POSTCOPY)
        self.assertEqual(res.extra['status'], 'completed')

    def test_mode_postcopy_preempt(self):
        """Postcopy with the preempt channel."""
        self.assert_mode(MigrationMode(
            caps=['postcopy-ram', 'postcopy-preempt'], postcopy=True,
            params={'max-bandwidth': 8 << 20}))

    def test_mode_postcopy_recover(self):
        """Postcopy whose channel is cut (migrate-pause) and recovered
        (migrate-recover, migrate resume=true): the TB keeps running on
        the destination through it, no second adjustment."""
        mode = MigrationMode(caps=['postcopy-ram'], postcopy=True,
                             params={'max-bandwidth': 8 << 20,
                                     'max-postcopy-bandwidth': 1 << 20})

        def cut_and_recover(src, dst):
            src.cmd('migrate-pause')
            dst.event_wait('MIGRATION', timeout=30,
                           match={'data': {'status': 'postcopy-paused'}})
            src.event_wait('MIGRATION', timeout=30,
                           match={'data': {'status': 'postcopy-paused'}})
            time.sleep(1.0)
            port = free_port()
            dst.cmd('migrate-recover', uri=f'tcp:127.0.0.1:{port}')
            src.cmd('migrate-set-parameters', **{'max-postcopy-bandwidth':
                                                 0})
            src.cmd('migrate', uri=f'tcp:127.0.0.1:{port}', resume=True)

        rig = self.rig()
        src, reader = rig.start_source()
        dst, dreader, res = rig.migrate(src, reader, 1.0, mode=mode,
                                        during_postcopy=cut_and_recover)
        self.log.info('postcopy recovered: %s', res)
        self.assertEqual(res.backwards, 0)
        # The guest may stall on missing pages while the channel is cut:
        # that is real time, so only the TB-against-realtime error counts.
        self.assertLess(abs(res.error_s), ERROR_BOUND_S)
        events = [e for e in dst.get_qmp_events()
                  if e['event'] == 'PPC_TIMEBASE_ADJUSTED']
        self.assertEqual(len(events), 1)

    def test_mode_multifd_zstd(self):
        """Multifd, two channels, zstd compression."""
        params = {'multifd-channels': 2, 'multifd-compression': 'zstd'}
        self.assert_mode(MigrationMode(caps=['multifd'], params=params,
                                       dst_params=params))

    def test_mode_xbzrle(self):
        """XBZRLE page compression."""
        self.assert_mode(MigrationMode(caps=['xbzrle']))

    def test_mode_auto_converge(self):
        """Auto-converge throttling (vCPUs slowed down before the stop)."""
        self.assert_mode(MigrationMode(
            caps=['auto-converge'],
            params={'cpu-throttle-initial': 50}), stock=False)

    def test_mode_dirty_limit_refused_tcg(self):
        """Dirty-limit throttling needs KVM's dirty ring: refused under
        TCG with a clear error, by stock as by the fork; the VM runs on."""
        for binary in (self.qemu_bin, self.stock_qemu()):
            rig = self.rig()
            rig.qemu_bin = binary
            src, reader = rig.start_source()
            with self.assertRaises(Exception) as cm:
                src.cmd('migrate-set-capabilities', capabilities=[
                    {'capability': 'dirty-limit', 'state': True}])
            self.assertIn('dirty-limit', str(cm.exception))
            self.assertTrue(src.cmd('query-status')['running'])
            rig.cleanup()

    def file_mode(self, mode):
        """Migrate to a file, restore 2 s later: fork compensated, stock
        loses the whole time."""
        results = []
        for rig in (self.rig(), self.stock_rig()):
            path = os.path.join(self.workdir, f'vm-{len(results)}.mig')
            src, reader = rig.start_source()
            dst, _, res = rig.migrate_via_file(src, reader, path, 2.0,
                                               mode=mode)
            self.log.info('%s, file %s: %s', rig.qemu_bin, mode, res)
            self.assertEqual(res.backwards, 0)
            self.assertGreater(res.stop_to_start_s, 2.0)
            results.append((dst, res))
        (dst, res), (_, sres) = results
        self.assertLess(abs(res.error_s), ERROR_BOUND_S,
                        f'TB error {res.error_s * 1e3:.3f} ms')
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'migration')
        self.assertEqual(last['reason'], 'applied')
        self.assertLess(sres.error_s, -2.0)

    def test_mode_file(self):
        """Migration to a file (the stream as is) and restore."""
        self.file_mode(MigrationMode())

    def test_mode_file_mapped_ram(self):
        """Migration to a file with mapped-ram (`virsh save`'s format
        with libvirt 10+) and restore."""
        self.file_mode(MigrationMode(caps=['mapped-ram']))

    def test_mode_background_snapshot(self):
        """A background snapshot: the source stops only to save its
        devices (compensated at once); the snapshot restored later is
        compensated from that stop (up to the cap)."""
        rig = self.rig()
        src, reader = rig.start_source()
        path = os.path.join(self.workdir, 'bg.mig')
        before = reader.of_kind('sum')
        src.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'background-snapshot', 'state': True},
            {'capability': 'events', 'state': True}])
        src.cmd('migrate', uri=f'file:{path}')
        stop = src.event_wait('STOP', timeout=30)
        src.event_wait('RESUME', timeout=30)
        src.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        last = src.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'applied')
        src.shutdown()
        time.sleep(2.0)
        dst, dreader, resume = rig.restore_from_file(path)
        post = dreader.wait_for('sum', count=rig.lag_samples + 5,
                                timeout=60)[5:]
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'migration')
        self.assertEqual(last['reason'], 'applied')
        self.assertAlmostEqual(last['measured-ns'] / 1e9,
                               event_time(resume) - event_time(stop),
                               delta=0.02)
        freq = rig.freq
        error_s = (guest_lag(before[-rig.lag_samples:], freq) -
                   guest_lag(post, freq))
        self.log.info('background snapshot restored %.3f s later: TB '
                      'error %.3f ms', event_time(resume) - event_time(stop),
                      error_s * 1e3)
        self.assertLess(abs(error_s), ERROR_BOUND_S)
        self.assertEqual(reader.of_kind('back') + dreader.of_kind('back'),
                         [])

    def test_mode_cpr_reboot(self):
        """cpr-reboot (a paused VM saved to a file across a host reboot,
        restored and continued): the pause before the save is frozen,
        the rest is downtime (compensated, capped)."""
        rig = self.rig()
        src, reader = rig.start_source()
        before = reader.of_kind('sum')
        src.cmd('stop')
        stop = src.event_wait('STOP', timeout=10)
        time.sleep(1.0)
        path = os.path.join(self.workdir, 'cpr.mig')
        mode = MigrationMode(params={'mode': 'cpr-reboot'},
                             dst_params={'mode': 'cpr-reboot'})
        src.cmd('migrate-set-capabilities', capabilities=mode.caps_arg())
        src.cmd('migrate-set-parameters', **mode.params)
        src.cmd('migrate', uri=f'file:{path}')
        setup = src.event_wait('MIGRATION', timeout=30,
                               match={'data': {'status': 'setup'}})
        src.event_wait('MIGRATION', timeout=60,
                       match={'data': {'status': 'completed'}})
        src.shutdown()
        time.sleep(1.0)
        dst, dreader, _ = rig.restore_from_file(path, mode, resume=False)
        self.assertEqual(dst.cmd('query-status')['status'], 'paused')
        dst.cmd('cont')
        resume = dst.event_wait('RESUME', timeout=10)
        post = dreader.wait_for('sum', count=rig.lag_samples, timeout=60)
        last = dst.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'migration')
        self.assertEqual(last['reason'], 'applied')
        self.assertAlmostEqual(last['measured-ns'] / 1e9,
                               event_time(resume) - event_time(setup),
                               delta=0.02)
        paused_s = event_time(setup) - event_time(stop)
        error_s = (guest_lag(before[-rig.lag_samples:], rig.freq) -
                   guest_lag(post, rig.freq))
        self.log.info('cpr-reboot: paused %.3f s, TB error %.3f ms',
                      paused_s, error_s * 1e3)
        self.assertAlmostEqual(error_s, -paused_s, delta=ERROR_BOUND_S * 2)
        self.assertEqual(reader.of_kind('back') + dreader.of_kind('back'),
                         [])

    def test_snapshot_jobs(self):
        """The snapshot-save / snapshot-load QMP jobs are savevm/loadvm:
        the TB is the snapshot's (a pause: frozen)."""
        rig = self.disk_rig()
        vm, reader = rig.start_source()

        def job(cmd, job_id, **args):
            vm.cmd(cmd, **{'job-id': job_id, 'tag': 'snap1',
                           'devices': ['disk0'], **args})
            vm.event_wait('JOB_STATUS_CHANGE', timeout=60, match={
                'data': {'id': job_id, 'status': 'concluded'}})
            job_info = [j for j in vm.cmd('query-jobs')
                        if j['id'] == job_id][0]
            self.assertNotIn('error', job_info)
            vm.cmd('job-dismiss', id=job_id)

        self.assert_snapshot_round_trip(
            vm, reader, lambda: job('snapshot-save', 'save', vmstate='disk0'),
            lambda: job('snapshot-load', 'load', vmstate='disk0'))

    def test_record_replay(self):
        """Record/replay: no realtime stamp, no compensation, replayable.

        Under record/replay the fork, like upstream, writes no realtime
        (time_of_the_day_ns == 0 means "no value"), so even under the
        wallclock policy a pause is not compensated; the guest sees only
        the recorded virtual time, and the replay shows it exactly the
        same TB values as the recording.
        """
        disk = self.new_qcow2('rr.qcow2')
        rrfile = os.path.join(self.workdir, 'rr.bin')

        def rr_rig(mode):
            rig = self.rig(machine_opts='tb-policy=wallclock',
                           probe_opts='i=100')
            rig.extra_args = ['-icount', f'shift=auto,rr={mode},'
                              f'rrfile={rrfile},rrsnapshot=init',
                              '-drive', f'if=none,id=rr,format=qcow2,'
                              f'file={disk}']
            return rig

        rec, rec_reader = rr_rig('record').start_source()
        rec.cmd('stop')
        time.sleep(1.0)
        rec.cmd('cont')
        n = len(rec_reader.of_kind('sum'))
        rec_reader.wait_for('sum', count=n + 10, timeout=60)
        last = rec.cmd('query-ppc-timebase')['last-adjustment']
        rec.shutdown()
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'no-realtime')
        self.assertEqual(last['saved-realtime-ns'], 0)
        self.assertEqual(last['delta-ticks'], 0)
        self.assertEqual(last['target-tb'], last['saved-tb'])
        recorded = [p.fields['tb'] for p in rec_reader.of_kind('sum')]
        # The guest did not see the 1 s pause: its TB followed the
        # (recorded, frozen while paused) virtual clock.
        freq = rec_reader.of_kind('start')[0].fields['freq']
        maxgap = max(p.fields['maxgap'] for p in rec_reader.of_kind('sum'))
        self.assertLess(maxgap / freq, 0.5)

        rig = rr_rig('replay')
        rep = rig.new_vm('replay', self.qemu_bin, rig.src_machine_opts)
        rep.launch()
        rep_reader = ProbeReader(rep.console_socket, os.path.join(
            self.outputdir, 'console-replay.log'))
        # The replay ends (QEMU exits) where the recording ended.
        rep_reader.wait_for('sum', count=len(recorded) - 2, timeout=120)
        replayed = [p.fields['tb'] for p in rep_reader.of_kind('sum')]
        self.assertEqual(replayed[:len(recorded) - 2],
                         recorded[:len(recorded) - 2])
        self.assertEqual(rec_reader.of_kind('back'), [])


if __name__ == '__main__':
    QemuSystemTest.main()
