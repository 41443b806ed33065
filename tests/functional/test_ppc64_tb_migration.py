#!/usr/bin/env python3
#
# Timebase (TB) migration of pseries TCG guests between QEMU processes:
# the guest TB advances by the real stop-to-start time, never goes
# backwards, and the monitor reports what was done.
#
# Needs the guest artifacts (Debian kernel, initramfs with the TB probe)
# in $TBFORK_GUEST; `make check` sets it.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import time

from qemu_test import QemuSystemTest
from tbfork import (TBMigrationRig, MigrationFailed, ProbeReader,
                    StreamCorrupter, guest_lag, sleeps_across_stop,
                    wait_resume_or_failure)

# Stock QEMU to check compatibility with: Debian's qemu-system-ppc
# (bookworm-backports), installed by scripts/setup-host.sh.
STOCK_QEMU = '/usr/bin/qemu-system-ppc64'
# Stock QEMU 7.2 (bookworm), extracted by scripts/fetch-stock-qemu72.sh;
# `make check` sets TBFORK_QEMU72.
STOCK_QEMU72 = os.environ.get('TBFORK_QEMU72', '')
# Stock 10.0.2 lacks the icp/server section that later 10.0.x send
# (an upstream XICS fix), so cross-version pairs use XIVE only.
COMPAT_OPTS = 'ic-mode=xive'

# What the docs promise on TCG (docs/system/ppc/timebase-migration.rst):
# the TB error against host realtime across one migration is within
# ERROR_BOUND_S; the probe's own view of the stop (its largest gap
# between two TB reads) is never shorter than the QMP stop-to-start time
# by more than that, and longer by at most the time the vCPU takes to
# get going again (GAP_SLACK_S).
ERROR_BOUND_S = 0.002
GAP_SLACK_S = 0.100
# A sleeper whose deadline passed during the stop wakes within this of
# the guest running again (scheduling latency under TCG: a few ms, 37 ms
# seen with a compile on both cores). A decrementer that did not fire at
# resume would wake it the rest of its sleep later: at least 0.35 s.
DEC_WAKE_BOUND_S = 0.100


class TBMigrationTest(QemuSystemTest):

    timeout = 900

    def setUp(self):
        super().setUp()
        self.guest = os.environ.get('TBFORK_GUEST')
        self.assertTrue(self.guest and
                        os.path.exists(os.path.join(self.guest, 'vmlinux')),
                        'TBFORK_GUEST must name the guest artifacts '
                        '(make guest)')

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

    def assert_compensated(self, res):
        self.log.info('migration: %s', res)
        self.assertEqual(res.backwards, 0, 'the guest TB went backwards')
        self.assertLess(abs(res.error_s), ERROR_BOUND_S,
                        f'TB error {res.error_s * 1e3:.3f} ms')
        self.assertGreater(res.gap_error_s, -ERROR_BOUND_S)
        self.assertLess(res.gap_error_s, GAP_SLACK_S)

    def test_stop_1s(self):
        """1 s forced stop: the TB advances by the stop-to-start time."""
        rig = self.rig()
        src, reader = rig.start_source()
        dst, dreader, res = rig.migrate(src, reader, 1.0)
        self.assert_compensated(res)
        self.assertGreater(res.stop_to_start_s, 1.0)

        info = dst.cmd('query-timebase')
        last = info['last-adjustment']
        self.assertEqual(info['accelerator'], 'tcg')
        self.assertEqual(info['policy'], 'downtime')
        self.assertEqual(last['trigger'], 'migration')
        self.assertTrue(last['from-subsection'])
        self.assertEqual(last['reason'], 'applied')
        # The measured stop-to-start time is the QMP one, to within the
        # event latencies on both sides.
        self.assertAlmostEqual(last['measured-ns'] / 1e9,
                               res.stop_to_start_s, delta=0.02)
        self.assertEqual(last['applied-ns'], last['measured-ns'])
        self.assertEqual(last['target-tb'] - last['saved-tb'],
                         last['delta-ticks'])
        events = [e for e in dst.get_qmp_events()
                  if e['event'] == 'TIMEBASE_ADJUSTED']
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
        self.assertGreater(res.error_s, -res.stop_to_start_s - ERROR_BOUND_S)
        last = dst.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'policy-freeze')
        self.assertEqual(last['delta-ticks'], 0)

    def test_skew_ahead_capped(self):
        """Destination clock 1 h ahead: the delta is capped."""
        rig = self.rig(dst_machine_opts='x-tb-realtime-skew-ms=3600000,'
                                        'tb-max-delta-ms=5000')
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, 0.5)
        self.assertEqual(res.backwards, 0)
        last = dst.cmd('query-timebase')['last-adjustment']
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

    def test_skew_behind_clamped(self):
        """Destination clock 1 h behind: clamped, the TB never goes back."""
        rig = self.rig(dst_machine_opts='x-tb-realtime-skew-ms=-3600000')
        src, reader = rig.start_source()
        dst, _, res = rig.migrate(src, reader, 0.5)
        self.assertEqual(res.backwards, 0)
        last = dst.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'clock-backwards')
        self.assertEqual(last['delta-ticks'], 0)
        self.assertLess(last['measured-ns'], -3500 * 10**9)
        self.assertLess(res.error_s, 0)

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
        last = src.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['delta-ticks'], 0)
        self.assertEqual(len(reader.of_kind('back')), 0)

    def test_user_pause_wallclock(self):
        """tb-policy=wallclock follows the host clock through a pause."""
        src, reader = self.local_pause('wallclock')
        last = src.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'applied')
        self.assertGreater(last['applied-ns'], 10**9)
        gaps = [p.fields['gap'] for p in reader.of_kind('jump')]
        freq = reader.of_kind('start')[0].fields['freq']
        self.assertTrue(any(g / freq > 1.0 for g in gaps),
                        f'no jump over 1 s in {gaps}')
        self.assertEqual(len(reader.of_kind('back')), 0)

    def test_monitor(self):
        """QMP query-timebase and HMP info timebase on a running guest."""
        rig = self.rig()
        src, _ = rig.start_source()
        first = src.cmd('query-timebase')
        time.sleep(0.2)
        second = src.cmd('query-timebase')
        self.assertEqual(first['frequency'], 512000000)
        self.assertTrue(first['subsection'])
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

    def test_old_machine_type_has_no_subsection(self):
        """pseries-9.2 keeps the stock stream: compensation from
        time_of_the_day_ns."""
        rig = self.rig(machine='pseries-9.2')
        src, reader = rig.start_source()
        self.assertFalse(src.cmd('query-timebase')['subsection'])
        dst, _, res = rig.migrate(src, reader, 1.0)
        last = dst.cmd('query-timebase')['last-adjustment']
        self.assertFalse(last['from-subsection'])
        self.assertEqual(last['reason'], 'applied')
        self.assertEqual(res.backwards, 0)
        # time_of_the_day_ns is taken when the source saves its device
        # state, after the forced stop: only the time from there to the
        # destination's start is compensated (documented).
        self.assertGreater(last['measured-ns'], 0)
        self.assertLess(last['measured-ns'] / 1e9, res.stop_to_start_s - 0.9)
        self.assertLess(res.error_s, -0.9)
        self.assertGreater(res.error_s, -res.stop_to_start_s - 0.01)

    def bad_stream(self, mode, message):
        rig = self.rig()
        src, reader = rig.start_source()
        dst, _, port = rig.start_destination(return_path=True)
        proxy = StreamCorrupter(port, mode)
        rig.start_migration(src, proxy.port, return_path=True)
        src.cmd('migrate-continue', state='pre-switchover')
        with self.assertRaises(MigrationFailed) as cm:
            wait_resume_or_failure(src, dst)
        self.assertTrue(proxy.hit, 'subsection not seen in the stream')
        self.assertIn(message, str(cm.exception))
        # The source notices, fails the migration and runs on.
        deadline = time.time() + 30
        while src.cmd('query-migrate')['status'] != 'failed':
            self.assertLess(time.time(), deadline, 'source did not fail')
            time.sleep(0.1)
        self.assertTrue(src.cmd('query-status')['running'])
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 3, timeout=30)
        self.assertEqual(len(reader.of_kind('back')), 0)
        last = src.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'resume')
        self.assertEqual(last['reason'], 'applied')

    def test_bad_stream_version(self):
        """An impossible subsection format version fails the migration."""
        self.bad_stream('version', "spapr/timebase-sync: field 'version': "
                        "unsupported format version 99")

    def test_bad_stream_tb_freq(self):
        """A wrong TB frequency fails the migration."""
        self.bad_stream('tb_freq', "spapr/timebase-sync: field 'tb_freq'")

    def test_bad_stream_truncated(self):
        """A stream cut inside the subsection names the field."""
        self.bad_stream('truncate',
                        'Failed to load spapr/timebase-sync:tb_sync.wire.')

    def test_compat_fork_to_stock(self):
        """Fork -> stock 10.0 with tb-sync=off: works, TB monotonic."""
        rig = self.rig(dst_qemu_bin=STOCK_QEMU,
                       src_machine_opts=COMPAT_OPTS + ',tb-sync=off',
                       dst_machine_opts=COMPAT_OPTS)
        src, reader = rig.start_source()
        _, _, res = rig.migrate(src, reader, 0.5)
        self.assertEqual(res.backwards, 0)
        # Stock freezes the TB across the stop.
        self.assertLess(res.error_s, -0.4)

    def assert_tod_compensated(self, rig, src, reader):
        """A stock source: compensated from time_of_the_day_ns.

        The destination waits 1 s for `cont` after the migration, as under
        a management layer: that time is compensated.
        """
        dst, _, res = rig.migrate(src, reader, 0.0, dst_hold_s=1.0)
        self.assertEqual(res.backwards, 0)
        self.assertGreater(res.stop_to_start_s, 1.0)
        last = dst.cmd('query-timebase')['last-adjustment']
        self.assertFalse(last['from-subsection'])
        self.assertEqual(last['reason'], 'applied')
        self.assertGreater(last['measured-ns'], 10**9)
        # Only the last RAM pass (between the source's stop and its
        # device state save) is not compensated; stock loses it all.
        self.assertLess(res.error_s, 0)
        self.assertGreater(res.error_s, -0.25)
        return dst

    def test_compat_stock_to_fork(self):
        """Stock 10.0 -> fork: compensated from time_of_the_day_ns."""
        rig = self.rig(src_machine_opts=COMPAT_OPTS,
                       dst_machine_opts=COMPAT_OPTS)
        rig.qemu_bin = STOCK_QEMU
        src, reader = rig.start_source()
        self.assert_tod_compensated(rig, src, reader)

    def test_compat_fork_to_stock_needs_tb_sync_off(self):
        """Fork -> stock with the subsection: the stock side refuses."""
        rig = self.rig(dst_qemu_bin=STOCK_QEMU, machine_opts=COMPAT_OPTS)
        src, reader = rig.start_source()
        with self.assertRaises(MigrationFailed) as cm:
            rig.migrate(src, reader, 0.0)
        self.assertIn("error while loading state for instance 0x0 of "
                      "device 'spapr'", str(cm.exception))

    def qemu72(self):
        self.assertTrue(os.access(STOCK_QEMU72, os.X_OK),
                        'TBFORK_QEMU72 must name stock QEMU 7.2 '
                        '(scripts/fetch-stock-qemu72.sh)')
        return STOCK_QEMU72

    def test_compat_qemu72_to_fork(self):
        """Stock 7.2 -> fork (pseries-7.2): compensated from the TOD."""
        rig = self.rig(machine='pseries-7.2')
        rig.qemu_bin = self.qemu72()
        src, reader = rig.start_source()
        dst = self.assert_tod_compensated(rig, src, reader)
        # pseries-7.2 predates the subsection: the fork would not send it.
        self.assertFalse(dst.cmd('qom-get', path='/machine',
                                 property='tb-sync'))

    def test_compat_fork_to_qemu72_refused_like_stock(self):
        """Fork -> 7.2 fails as stock 10.0 -> 7.2 does; source runs on."""
        # QEMU 8.0 moved cpu/slb to version 2, which 7.2 cannot load, so
        # no 10.0 (stock or fork) reaches 7.2 with a 64-bit CPU. The fork
        # must fail the same way and keep the source running.
        for src_bin in (STOCK_QEMU, self.qemu_bin):
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
            deadline = time.time() + 30
            while src.cmd('query-migrate')['status'] != 'failed':
                self.assertLess(time.time(), deadline, 'source did not fail')
                time.sleep(0.1)
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
        # the destination (stock QEMU 10.0 left the secondary vCPUs in
        # the "RTAS stopped" state there: patch 0006), while the
        # cross-CPU check runs.
        after = time.time()
        for cpu in range(4):
            for kind in ('wake', 'sum'):
                dreader.wait_for(kind, count=5, timeout=30,
                                 pred=lambda p, c=cpu: p.fields['cpu'] == c
                                 and p.host_time > after)
        for r in (reader, dreader):
            self.assertEqual(r.of_kind('skew'), [], 'vCPU TBs disagree')
            self.assertEqual(r.of_kind('back'), [])
        self.assertEqual(len(dst.cmd('query-timebase')['vcpus']), 4)

    def test_dec_fires_at_resume(self):
        """A sleep whose deadline fell in the stop ends at resume."""
        # Four sleepers, deadlines every 0.8 s a quarter period apart:
        # a >1 s stop holds several deadlines, the last at least 0.6 s in.
        rig = self.rig(probe_opts='i=100,t=5000,w=800')
        src, reader = rig.start_source()
        dst, dreader, res = rig.migrate(src, reader, 1.0)
        self.assert_compensated(res)
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
        last = src.cmd('query-timebase')['last-adjustment']
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
        # The guest saw the stop as a forward jump of about its length.
        freq = reader.of_kind('start')[0].fields['freq']
        gaps = [p.fields['gap'] / freq for p in reader.of_kind('jump')]
        self.assertTrue(any(abs(g - last['applied-ns'] / 1e9) < 0.05
                            for g in gaps), f'jumps {gaps}')

    def test_failed_migration_dest_killed(self):
        """Destination killed mid-way: the source resumes, compensated."""
        rig = self.rig()
        src, reader = rig.start_source()
        dst, _, port = rig.start_destination()
        rig.start_migration(src, port)
        dst.kill()
        time.sleep(0.5)
        src.cmd('migrate-continue', state='pre-switchover')
        deadline = time.time() + 30
        while src.cmd('query-migrate')['status'] != 'failed':
            self.assertLess(time.time(), deadline, 'migration did not fail')
            time.sleep(0.1)
        last = self.resumed_source(src, reader)
        self.assertGreater(last['applied-ns'], 0.5e9)

    def test_savevm_loadvm(self):
        """savevm/loadvm: the TB is the snapshot's (user pause: frozen)."""
        disk = self.new_qcow2('disk.qcow2')
        rig = self.rig()
        rig.extra_args = ['-drive', f'if=none,id=d0,format=qcow2,'
                          f'file={disk}']
        src, reader = rig.start_source()
        hmp = src.cmd('human-monitor-command', command_line='savevm snap1')
        self.assertEqual(hmp.strip(), '')
        last = src.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['reason'], 'user-paused')
        saved_tb = last['saved-tb']
        time.sleep(1.0)
        hmp = src.cmd('human-monitor-command', command_line='loadvm snap1')
        # (loadvm repeats the TCG capability warnings of the command line)
        self.assertNotIn('rror', hmp)
        last = src.cmd('query-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'loadvm')
        self.assertEqual(last['reason'], 'user-paused')
        self.assertEqual(last['saved-tb'], saved_tb)
        self.assertEqual(last['target-tb'], saved_tb)
        # The guest continues from the snapshot's state: no backwards step
        # as seen from inside.
        n = len(reader.of_kind('sum'))
        reader.wait_for('sum', count=n + 5, timeout=30)
        self.assertEqual(reader.of_kind('back'), [])

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
        last = rec.cmd('query-timebase')['last-adjustment']
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
