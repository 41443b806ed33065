#!/usr/bin/env python3
#
# libvirt drives the fork: two libvirt hosts (lvhosts.py), a Debian 12
# ppc64el guest with systemd, qemu-guest-agent and the TB probe, one
# domain on the installed fork and the same domain on stock QEMU 10.0,
# and every virsh operation that stops a guest: live migration (precopy,
# postcopy, multifd), --suspend and a second migration of the paused
# domain, non-live migration, save/restore minutes apart, managedsave,
# suspend/resume, snapshot-create-as/snapshot-revert. For each, the
# guest's wall-clock error (the agent's guest-get-time, what `virsh
# domtime` reads), the probe's TB error and backwards steps, `info
# timebase` through `virsh qemu-monitor-command --hmp`, the fork's
# PPC_TIMEBASE_ADJUSTED event as libvirt relays it, and the domain log's
# timebase lines. `make check-libvirt` runs it.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import signal
import subprocess
import threading
import time
import unittest

try:
    import libvirt
except ImportError:     # python3-libvirt (scripts/setup-host.sh)
    libvirt = None
else:
    from lvhosts import LibvirtPair, QemuEvents
    from lvtest import (EVENTS, FORK, GUEST, STOCK, WORK, ForcedStop, Guest,
                        new_log_lines, record)

STOP_S = 1.0            # the forced stop of the live migrations
CLOCK_BOUND_S = 0.020   # the fork's guest wall-clock error, live migration
# ... across a non-live migration or a managed save (-4 and -16 ms
# measured on 2026-11-26)
OFFLINE_BOUND_MS = 100
# virsh save / restore apart (seconds): "minutes apart"
SAVE_GAP_S = float(os.environ.get('TBFORK_LIBVIRT_SAVE_GAP_S', '120'))


def missing_prerequisite():
    if libvirt is None:
        return 'no libvirt Python binding (python3-libvirt)'
    if os.geteuid() != 0:
        return 'needs root (network namespaces, libvirtd)'
    for path, what in ((FORK, 'the installed fork (TBFORK_LIBVIRT_FORK)'),
                       (STOCK, 'stock QEMU (TBFORK_STOCK_QEMU)')):
        if not path or not os.access(path, os.X_OK):
            return f'no {what}: {path!r}'
    if not GUEST or not os.path.exists(os.path.join(GUEST, 'base.qcow2')):
        return (f'no Debian guest (TBFORK_DEBIAN_GUEST={GUEST!r}; '
                'scripts/debian-guest.sh builds it)')
    for tool in ('libvirtd', 'virsh'):
        if subprocess.run(['sh', '-c', f'command -v {tool}'],
                          stdout=subprocess.DEVNULL).returncode:
            return f'no {tool} (libvirt; scripts/setup-host.sh installs it)'
    return None


class LibvirtTBTest(unittest.TestCase):
    pair = None
    guests = {}
    events = {}

    @classmethod
    def setUpClass(cls):
        why = missing_prerequisite()
        if why:
            raise unittest.SkipTest(why)
        os.makedirs(WORK, exist_ok=True)
        cls.pair = LibvirtPair(os.path.join(WORK, 'libvirt'))
        # unlike tearDownClass, also when setUpClass fails
        cls.addClassCleanup(cls.stop_hosts)
        cls.pair.start()
        cls.events = {h.name: QemuEvents(h, list(EVENTS))
                      for h in cls.pair.hosts}
        cls.guests = {'fork': Guest(cls.pair, 'tbfork', 'fork', FORK),
                      'stock': Guest(cls.pair, 'tbstock', 'stock', STOCK)}
        boot = {}
        for g in cls.guests.values():
            g.define_and_start()
            g.connect_console()

        def wait(g):
            boot[g.qemu] = g.wait_booted()
        ts = [threading.Thread(target=wait, args=(g,))
              for g in cls.guests.values()]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for q, g in cls.guests.items():
            if q not in boot:
                raise RuntimeError(f'the {q} domain did not boot')
            record('boot', qemu=q, boot_s=round(boot[q], 1),
                   domcaps=cls.domcaps(g))

    @classmethod
    def domcaps(cls, g):
        out = g.host.virsh('domcapabilities', '--emulatorbin', g.emulator,
                           '--arch', 'ppc64', '--machine', 'pseries',
                           '--virttype', 'qemu')
        m = re.search(r'<machine>(.*)</machine>', out)
        return m.group(1) if m else None

    @classmethod
    def stop_hosts(cls):
        for ev in cls.events.values():
            ev.close()
        cls.events = {}
        if cls.pair:
            cls.pair.stop()
            cls.pair = None

    # --- measurement ---------------------------------------------------

    def events_since(self, name, domain, since):
        out = []
        for ev in self.events.values():
            out += ev.of(name, domain, since)
        return sorted(out, key=lambda e: e['time'])

    def begin(self, g):
        """The guest's clocks before an operation."""
        t0 = time.time()
        ctx = {'t0': t0,
               'logs': {h.name: g.domain_log(h) for h in self.pair.hosts},
               'lag': g.tb_lag(since=t0), 'off': g.clock_offset()}
        ctx['t_op'] = time.time()
        return ctx

    def end(self, g, ctx, scenario, **extra):
        """The guest's clocks after it, and what the operation did."""
        lag1 = g.tb_lag(since=time.time() + 0.3)
        off1 = g.clock_offset()
        t_op = ctx['t_op']
        stops = self.events_since('STOP', g.name, t_op)
        resumes = self.events_since('RESUME', g.name, t_op)
        adjusted = self.events_since('PPC_TIMEBASE_ADJUSTED', g.name, t_op)
        stop_s = (resumes[-1]['time'] - stops[0]['time']
                  if stops and resumes else None)
        log_lines = []
        for h in self.pair.hosts:
            log_lines += new_log_lines(ctx['logs'][h.name], g.domain_log(h))
        domtime = g.host.virsh('domtime', g.name, check=False).strip()
        res = dict(
            qemu=g.qemu, host=g.host.name,
            clock_error_ms=round((off1['offset_s'] - ctx['off']['offset_s'])
                                 * 1e3, 3),
            clock_rtt_ms=round(max(ctx['off']['rtt_s'], off1['rtt_s']) * 1e3,
                               3),
            tb_error_ms=round((ctx['lag'] - lag1) * 1e3, 3),
            backwards=g.backwards(ctx['t0']),
            stop_ms=round(stop_s * 1e3, 1) if stop_s is not None else None,
            # What the fork added back, over every start in the operation.
            applied_ms=round(sum(e['data']['applied-ns'] for e in adjusted)
                             / 1e6, 3) if adjusted else None,
            event=adjusted[-1]['data'] if adjusted else None,
            info_timebase=g.info_timebase(),
            log=log_lines, domtime=domtime, **extra)
        record(scenario, **res)
        return res

    def measure(self, g, scenario, op):
        """Run op(g) between two readings of the guest's clocks."""
        ctx = self.begin(g)
        extra = op(g) or {}
        return self.end(g, ctx, scenario, **extra)

    def check_accounted(self, res, slack_ms=CLOCK_BOUND_S * 1e3):
        """The guest lost exactly the part of the stop its QEMU did not
        add back: the whole stop under stock, the stop minus what the
        fork reports applying (its PPC_TIMEBASE_ADJUSTED events)."""
        self.check_common(res)
        applied = res['applied_ms'] or 0.0
        lost = res['stop_ms'] - applied
        self.assertLess(abs(res['clock_error_ms'] + lost),
                        slack_ms + res['clock_rtt_ms'],
                        f'the guest clock error is not the stop '
                        f'({res["stop_ms"]} ms) minus what was applied '
                        f'({applied} ms): {res}')

    def check_fork_kept(self, res, bound_ms=OFFLINE_BOUND_MS):
        """The fork's guest kept its clock across a stop libvirt made
        (slower to end than a live switchover: a new QEMU, a file)."""
        if res['qemu'] == 'fork':
            self.assertLess(abs(res['clock_error_ms']),
                            bound_ms + res['clock_rtt_ms'], res)

    def check_common(self, res):
        self.assertEqual(res['backwards'], 0, 'the guest TB stepped back')
        # The guest's wall clock follows its TB: both figures agree.
        self.assertLess(abs(res['clock_error_ms'] - res['tb_error_ms']),
                        CLOCK_BOUND_S * 1e3 + res['clock_rtt_ms'],
                        f'wall clock and TB disagree: {res}')
        if res['qemu'] == 'fork':
            self.assertIsNotNone(res['info_timebase'])
        else:
            self.assertIsNone(res['event'])

    # --- operations ----------------------------------------------------

    def restart(self, g, *virsh_args):
        """A virsh command that starts a new QEMU for the domain on its
        host (restore, start of a managed save): its new console."""
        try:
            os.unlink(g.console_path())
        except FileNotFoundError:
            pass
        conn = {}
        t = threading.Thread(
            target=lambda: conn.setdefault('r', g.connect_console(None, 120)))
        t.start()
        try:
            g.host.virsh(*virsh_args)
        finally:
            t.join()

    def migrate(self, g, flags, forced_stop=STOP_S, postcopy=False,
                paused=False):
        src, dst = g.host, g.other()
        fs = (ForcedStop(g, self.events[src.name], dst, forced_stop)
              if forced_stop else None)
        try:
            os.unlink(g.console_path(dst))
        except FileNotFoundError:
            pass
        conn = {}
        t = threading.Thread(
            target=lambda: conn.setdefault('r', g.connect_console(dst, 120)))
        t.start()
        cmd = ['migrate', '--p2p', '--persistent', '--undefinesource',
               '--unsafe', *flags, g.name, dst.tcp_uri,
               '--migrateuri', f'tcp://{dst.addr}']
        t_start = time.time()
        try:
            if postcopy:
                p = subprocess.Popen(['virsh', '-c', src.uri, *cmd],
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
                # Switch to postcopy once QEMU's precopy is under way
                # (QEMU refuses earlier).
                self.events[src.name].wait('MIGRATION', g.name, t_start,
                                           pred=lambda e: e['data'][
                                               'status'] == 'active')
                time.sleep(0.5)
                if p.poll() is not None:
                    self.fail('the migration ended in precopy: ' +
                              p.stdout.read())
                src.virsh('migrate-postcopy', g.name)
                out, _ = p.communicate(timeout=300)
                self.assertEqual(p.returncode, 0, out)
                post = [e for e in self.events[src.name].of(
                    'MIGRATION', g.name, t_start)
                    if e['data']['status'] == 'postcopy-active']
                self.assertTrue(post, 'the source never entered postcopy')
            else:
                src.virsh(*cmd)
        finally:
            if fs:
                fs.close()
            g.locate()
            t.join()
        self.assertIs(g.host, dst, 'the domain is not on the destination')
        paused = paused or '--suspend' in flags
        self.assertEqual(g.state(dst), 'paused' if paused else 'running')
        if fs:
            self.assertIsNotNone(fs.held_at,
                                 'the forced stop missed the switchover')
            # It held the destination before it resumed the guest: the
            # stop it adds is inside the switchover.
            if not paused:
                # virsh may return before the event reaches us
                resumed = self.events[dst.name].wait('RESUME', g.name,
                                                     t_start, timeout=10)
                self.assertGreater(resumed['received'],
                                   fs.held_at + forced_stop * 0.9,
                                   'the destination resumed before the '
                                   'forced stop ended')
        return {'forced_stop_s': forced_stop if fs else 0}

    # --- scenarios -----------------------------------------------------

    def live_migration(self, name, flags, postcopy=False):
        out = {}
        for q, g in self.guests.items():
            # The event as an operator watches it on the destination.
            watch = subprocess.Popen(
                ['virsh', '-c', g.other().uri, 'qemu-monitor-event',
                 '--event', 'PPC_TIMEBASE_ADJUSTED', '--timeout', '120'],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            try:
                out[q] = self.measure(g, name, lambda g: self.migrate(
                    g, flags, postcopy=postcopy))
            finally:
                if q == 'stock':
                    watch.terminate()
                seen, _ = watch.communicate(timeout=130)
            self.check_accounted(out[q])
            if q == 'fork':
                # virsh prints the first event and exits.
                self.assertIn('event PPC_TIMEBASE_ADJUSTED', seen)
                self.assertIn(f"for domain '{g.name}'", seen)
            else:
                self.assertNotIn('PPC_TIMEBASE_ADJUSTED', seen)
        # The fork keeps the guest's wall clock; stock loses the stop.
        self.assertLess(abs(out['fork']['clock_error_ms']),
                        CLOCK_BOUND_S * 1e3 + out['fork']['clock_rtt_ms'],
                        out['fork'])
        self.assertIsNotNone(out['fork']['event'])
        self.assertLess(out['stock']['clock_error_ms'],
                        -STOP_S * 1e3 * 0.8, out['stock'])
        return out

    def test_00_capabilities(self):
        """libvirt probes the installed fork as it probes stock: `virsh
        domcapabilities` resolves pseries to pseries-10.0, and the
        machine types libvirt cached for each emulator are the same."""
        machines = {}
        for q, g in self.guests.items():
            self.assertEqual(self.domcaps(g), 'pseries-10.0')
            machines[q] = self.cached_machines(g.host, g.emulator)
            self.assertIn('pseries-10.0', machines[q])
        self.assertEqual(machines['fork'], machines['stock'])
        record('capabilities', qemu='fork', machines=len(machines['fork']))

    @staticmethod
    def cached_machines(host, emulator):
        """The TCG machine types in libvirt's capability cache for one
        emulator (what `virsh capabilities` and domain validation use)."""
        d = host.path('cache', 'qemu', 'capabilities')
        for f in os.listdir(d):
            text = open(os.path.join(d, f), encoding='utf-8').read()
            if f'<emulator>{emulator}</emulator>' in text:
                return sorted(set(re.findall(
                    r"<machine type='tcg' name='([^']+)'", text)))
        raise AssertionError(f'libvirt cached no capabilities of {emulator}')

    def test_01_migrate_live(self):
        """virsh migrate --live (precopy), 1 s forced stop."""
        self.live_migration('migrate --live', ['--live'])

    def test_02_migrate_postcopy(self):
        """virsh migrate --live --postcopy, then virsh migrate-postcopy."""
        # Precopy held to 10 MiB/s, so that it is still running when
        # migrate-postcopy comes (postcopy itself is not limited).
        self.live_migration('migrate --postcopy + migrate-postcopy',
                            ['--live', '--postcopy', '--bandwidth', '10'],
                            postcopy=True)

    def test_03_migrate_parallel(self):
        """virsh migrate --live --parallel (multifd, 2 connections)."""
        self.live_migration('migrate --parallel',
                            ['--live', '--parallel',
                             '--parallel-connections', '2'])


    def test_04_migrate_suspend_then_paused(self):
        """virsh migrate --live --suspend (the destination stays paused),
        a second migration of the paused domain, then virsh resume."""
        for q, g in self.guests.items():
            def op(g):
                self.migrate(g, ['--live', '--suspend'], forced_stop=0)
                self.migrate(g, ['--live'], forced_stop=0, paused=True)
                time.sleep(1)
                g.host.virsh('resume', g.name)
                return {}
            res = self.measure(g, 'migrate --suspend, migrate paused, resume',
                               op)
            self.check_accounted(res)
            if q == 'fork':
                # every start of it compensated: the resume's too
                self.assertIsNotNone(res['event'])
                self.assertLess(abs(res['clock_error_ms']),
                                CLOCK_BOUND_S * 1e3 + res['clock_rtt_ms'],
                                res)

    def test_05_migrate_offline_pause(self):
        """virsh migrate without --live: libvirt pauses the guest first."""
        for q, g in self.guests.items():
            res = self.measure(g, 'migrate (not live)', lambda g:
                               self.migrate(g, [], forced_stop=0))
            self.check_accounted(res)
            self.check_fork_kept(res)

    def test_06_suspend_resume(self):
        """virsh suspend, 1 s, virsh resume: a user pause (frozen by the
        fork's default policy, as by stock)."""
        for q, g in self.guests.items():
            def op(g):
                g.host.virsh('suspend', g.name)
                time.sleep(1)
                g.host.virsh('resume', g.name)
            res = self.measure(g, 'suspend, 1 s, resume', op)
            self.check_accounted(res)
            self.assertLess(res['clock_error_ms'], -900, res)
            if q == 'fork':
                self.assertEqual(res['event']['reason'], 'user-paused')

    def test_07_managedsave_start(self):
        """virsh managedsave, 3 s, virsh start (restores the save)."""
        for q, g in self.guests.items():
            def op(g):
                g.host.virsh('managedsave', g.name)
                self.assertEqual(g.state(), 'shut off')
                time.sleep(3)
                self.restart(g, 'start', g.name)
            res = self.measure(g, 'managedsave, 3 s, start', op)
            self.check_accounted(res)
            self.check_fork_kept(res)

    def test_08_save_restore_minutes_apart(self):
        """virsh save, SAVE_GAP_S (2 min), virsh restore: both domains
        saved together, so the tier waits once."""
        ctx, files = {}, {}
        for q, g in self.guests.items():
            ctx[q] = self.begin(g)
            files[q] = os.path.join(WORK, f'{g.name}.save')
            if os.path.exists(files[q]):
                os.unlink(files[q])
            g.host.virsh('save', g.name, files[q])
        time.sleep(SAVE_GAP_S)
        out = {}
        for q, g in self.guests.items():
            self.restart(g, 'restore', files[q])
            out[q] = self.end(g, ctx[q], f'save, {SAVE_GAP_S:.0f} s, restore',
                              save_gap_s=SAVE_GAP_S)
        for q in self.guests:
            self.check_accounted(out[q])
        # The fork caps what it adds back (tb-max-delta-ms, 10 s by
        # default) and says so in the domain log.
        fork = out['fork']
        if SAVE_GAP_S > 10:
            self.assertEqual(fork['event']['applied-ns'], 10 * 10**9, fork)
            self.assertTrue(any('capped' in ln or 'tb-max-delta' in ln
                                for ln in fork['log']), fork)

    def test_09_snapshot_revert(self):
        """virsh snapshot-create-as (internal, with memory), 2 s, virsh
        snapshot-revert: the guest returns to the snapshot, its TB too;
        no step back from the guest's own point of view."""
        for q, g in self.guests.items():
            def op(g):
                g.host.virsh('snapshot-create-as', g.name, 'tb1')
                time.sleep(2)
                # libvirt 11.3 reverts in a new QEMU (-S, the
                # snapshot-load job, cont): follow its console.
                self.restart(g, 'snapshot-revert', g.name, 'tb1')
                g.host.virsh('snapshot-delete', g.name, 'tb1')
                return {}
            res = self.measure(g, 'snapshot-create-as, 2 s, snapshot-revert',
                               op)
            self.check_common(res)
            # Back to the snapshot: the clock lost the time since it.
            self.assertLess(res['clock_error_ms'], -2000, res)

    def test_10_rollback_to_stock_and_back(self):
        """A rollback during a rolling upgrade, live: virsh migrate --xml
        --persistent-xml with the domain's XML naming stock's emulator
        moves a domain of the fork to stock QEMU 10.0.2 on the other host,
        then the same naming the fork brings it back (the README's
        rollback). Its own domain: 10.0.2 predates the XICS state later
        10.0.x send (upstream's, not the fork's), so across that pair the
        domain runs with ic-mode=xive from its start."""
        g = Guest(self.pair, 'tbroll', 'fork', FORK,
                  qemu_args=('-machine', 'ic-mode=xive'))
        g.define_and_start()
        self.addCleanup(lambda: g.host.virsh('destroy', g.name, check=False))
        g.connect_console()
        record('boot', qemu='fork (ic-mode=xive)',
               boot_s=round(g.wait_booted(), 1), domcaps=None)
        out = {}
        for q, emulator in (('stock', STOCK), ('fork', FORK)):
            xml = re.sub(r'<emulator>[^<]*</emulator>',
                         f'<emulator>{emulator}</emulator>',
                         g.host.virsh('dumpxml', '--migratable', g.name))
            path = os.path.join(WORK, f'{g.name}-to-{q}.xml')
            with open(path, 'w', encoding='utf-8') as f:
                f.write(xml)
            # the rows name the QEMU the domain runs on after the leg
            g.qemu, g.emulator = q, emulator
            try:
                res = self.measure(
                    g, f'migrate --live --xml naming {q} (rollback)',
                    lambda g: self.migrate(g, ['--live', '--xml', path,
                                               '--persistent-xml', path]))
            finally:
                g.qemu, g.emulator = 'fork', FORK
            out[q] = res
            exe = os.readlink(f'/proc/{g.host.qemu_pid(g.name)}/exe')
            self.assertEqual(os.path.realpath(exe),
                             os.path.realpath(emulator))
            self.assertIn(f'<emulator>{emulator}</emulator>',
                          g.host.virsh('dumpxml', '--inactive', g.name))
            self.check_accounted(res)
        # Stock freezes the stop. The fork, destination of stock's stream,
        # adds back what upstream's fields measure: from stock's save of
        # its device state (after the forced stop here, which held the
        # stream) to the start.
        self.assertIsNone(out['stock']['event'])
        self.assertLess(out['stock']['clock_error_ms'], -STOP_S * 1e3 * 0.8,
                        out['stock'])
        self.assertIsNotNone(out['fork']['event'])
        self.assertGreater(out['fork']['applied_ms'], 0, out['fork'])


if __name__ == '__main__':
    # TAP on stdout (as QEMU's functional tests), tracebacks on stderr.
    from pycotap import LogMode, TAPTestRunner

    def interrupted(signum, frame):
        # unittest passes KeyboardInterrupt on (SystemExit would count as
        # one test's error and the next would run)
        raise KeyboardInterrupt(f'signal {signum}')
    # `timeout` ends a run that hangs: its hosts and domains go too
    signal.signal(signal.SIGTERM, interrupted)
    try:
        unittest.main(testRunner=TAPTestRunner(
            message_log=LogMode.LogToError,
            test_output_log=LogMode.LogToError))
    finally:
        LibvirtTBTest.stop_hosts()
