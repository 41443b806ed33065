# The KVM-HV harness's test scenarios, shared by the test modules
# (test_kvm_tb_migration.py, test_kvm_kernel_patches.py): hosts, a probe
# guest given a non-zero TB offset, a migration with a forced stop, and
# the checks of what the fork promises under KVM. Results are collected
# from QMP and the guest's TB probe and written as JSON
# (TBFORK_KVM_RESULTS).
#
# Needs: TBFORK_OUTER_QEMU (the fork's native qemu-system-ppc64),
# TBFORK_HOST_KERNEL, TBFORK_HOST_INITRD (scripts/kvm-host-initrd.sh
# with tests/kvm/host-init and the stock build as /bin/qemu-stock).
# `make check-kvm` and `make check-kernel` set them.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import dataclasses
import json
import os
import re
import time
import unittest

from kvmhost import KvmHost
from tbfork import (MigrationMode, event_time, guest_lag,
                    measure_migration, sleeps_across_stop)

OUTER = os.environ.get('TBFORK_OUTER_QEMU', '')
KERNEL = os.environ.get('TBFORK_HOST_KERNEL', '')
INITRD = os.environ.get('TBFORK_HOST_INITRD', '')
# Machine options every inner QEMU needs on these hosts' kernel
# (cap-hpt-max-page-size=4k under a 4 KiB page kernel).
INNER_OPTS = os.environ.get('TBFORK_INNER_MACHINE_OPTS', '')
WORKDIR = os.environ.get('TBFORK_KVM_WORKDIR', '/tmp/tbfork-kvm')
RESULTS = os.environ.get('TBFORK_KVM_RESULTS',
                         os.path.join(WORKDIR, 'results.json'))

# Stock QEMU 10.0.x as the outer emulator (`make check`: Debian's 10.0.2
# from bookworm-backports): it lacks the radix C-bit fix (patches/qemu).
STOCK_OUTER = os.environ.get('TBFORK_STOCK_QEMU', '')
FORK = '/bin/qemu-system-ppc64'
STOCK = '/bin/qemu-stock'
FREQ = 512000000
# The kernel applies TB_OFFSET in multiples of 2^24 ticks; the fork picks
# the multiple nearest its target (never below the saved TB), so the
# guest-visible error is at most half a granule...
HALF_GRANULE_S = (1 << 23) / FREQ
# ... plus what measuring it through the emulated hosts' consoles adds
# (probe summaries every 100 ms, min-filtered; the console paths of two
# hosts differ in their latency floor), and the pairing bound the fork
# reports. Up to 7 ms seen on the machine of earlier runs; up to 20 ms
# on the 2026-11-25 evening's, where the emulated hosts ran about 1.6x
# slower (a 1 s forced stop took 2.06 s stop-to-start instead of 1.29 s,
# stock and fork alike); on 2026-11-26, +37 and +38 ms on one host with
# residue 0 (two runs) and -56 ms across two hosts with residue -5.5 ms.
# The exact checks are query-ppc-timebase's (offset read back from the
# kernel, residue within half a granule, the same on every vCPU); this
# one bounds what the guest saw by that plus the measurement.
MEASURE_S = 0.060
# The forced stop (pause-before-switchover) of every migration here.
STOP_S = 1.0
# Two hosts started this far apart have TB origins that differ by it.
HOST_GAP_S = 60


@dataclasses.dataclass(frozen=True)
class HostSpec:
    """An emulated host: machine, CPU, the host kernel and initramfs (the
    module's by default), and what the results call it (the machine's
    name by default)."""
    machine: str = 'powernv9'
    cpu: str = 'power9'
    kernel: str = KERNEL
    initrd: str = INITRD
    label: str = ''

    @property
    def name(self):
        return self.label or self.machine

    def host(self, name, workdir, inner_opts, outer_qemu=OUTER, **kwargs):
        return KvmHost(name, outer_qemu, self.kernel, self.initrd, workdir,
                       machine=self.machine, cpu=self.cpu,
                       inner_opts=inner_opts, **kwargs)


# KVM in a PowerVM-style partition: a pseries L1 of the fork's TCG
# offering the PAPR nested API v2 (H_GUEST_*), as PowerVM does; its
# kvm-hv (Linux 6.8+) uses v2 when offered. POWER10, as the L1s are.
NESTED_V2_MACHINE = ('pseries,x-vof=on,cap-nested-papr=on,cap-cfpc=broken,'
                     'cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off')

# The pair most scenarios use.
P9_PAIR = (HostSpec(), HostSpec())
# Probe: summaries every 100 ms, report jumps over 5 ms.
PROBE = 'i=100,t=5000'

_results = []


def record(name, **fields):
    entry = {'scenario': name, **fields}
    _results.append(entry)
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, 'w', encoding='utf-8') as f:
        json.dump(_results, f, indent=1)
    return entry


class KvmTestBase(unittest.TestCase):
    """Hosts and scenario pieces; no tests of its own."""

    maxDiff = None

    # Plain hosts (no network, the fork as the outer emulator, kvm-hv
    # loaded) by machine: booted once, shared by the tests that need no
    # more, each test's inner QEMUs killed after it.
    _shared = {}
    # the socket-network port of each shared pair, for its host B
    _pair_ports = {}

    def setUp(self):
        for var, val in (('TBFORK_OUTER_QEMU', OUTER),
                         ('TBFORK_HOST_KERNEL', KERNEL),
                         ('TBFORK_HOST_INITRD', INITRD)):
            self.assertTrue(val and os.path.exists(val),
                            f'{var} must name an existing file')
        self.hosts = []
        self.borrowed = []

    def tearDown(self):
        for h in self.hosts:
            h.shutdown()
        for key, h in self.borrowed:
            if not h.reset() and key in KvmTestBase._shared:
                # Not fit for the next test: neither is the rest of it.
                self.drop_shared()

    @classmethod
    def tearDownClass(cls):
        cls.drop_shared()

    @staticmethod
    def drop_shared(keep=None):
        """Shut down the shared hosts but `keep`: an idle emulated host
        still takes CPU time from the one under test."""
        for key in [k for k in KvmTestBase._shared if k != keep]:
            hosts = KvmTestBase._shared.pop(key)
            for h in hosts if isinstance(hosts, (tuple, list)) else (hosts,):
                h.shutdown()

    def borrow(self, key, hosts):
        """Lend shared hosts to this test: its inner consoles and logs go
        to its own directory, its inner QEMUs are killed after it."""
        for h in hosts:
            h.workdir = os.path.join(WORKDIR, self.id().split('.')[-1],
                                     h.name)
            os.makedirs(h.workdir, exist_ok=True)
            self.borrowed.append((key, h))

    def host(self, name, outer_qemu=OUTER, **kwargs):
        plain = (outer_qemu == OUTER and
                 not set(kwargs) - {'machine', 'cpu'} and
                 kwargs.get('machine', 'powernv9').startswith('powernv'))
        if plain:
            machine = kwargs.get('machine', 'powernv9')
            key = (name, machine, kwargs.get('cpu', 'power9'))
            self.drop_shared(keep=key)
            h = KvmTestBase._shared.get(key)
            if h is None:
                h = KvmHost(name, outer_qemu, KERNEL, INITRD,
                            os.path.join(WORKDIR, f'shared-{machine}'),
                            inner_opts=INNER_OPTS, **kwargs)
                h.launch()
                KvmTestBase._shared[key] = h
            self.borrow(key, (h,))
            return h
        self.drop_shared()
        h = KvmHost(name, outer_qemu, KERNEL, INITRD,
                    os.path.join(WORKDIR, self.id().split('.')[-1]),
                    inner_opts=INNER_OPTS, **kwargs)
        self.hosts.append(h)
        h.launch()
        return h

    def start_guest(self, host, binary, slot='a', probe=PROBE,
                    machine_opts='', boot_timeout=120, smp='1', **inner):
        """A KVM guest running the probe, given a non-zero TB offset.

        The kernel writes TBU40 on guest entry and exit only when the
        offset is non-zero: a 2 s user pause (not compensated under the
        fork's default policy, frozen by stock QEMU) puts the guest TB
        behind the host's for good (KVM-HV; under KVM-PR the pause
        applies nothing). inner: more of start_inner's arguments.
        """
        vm = host.start_inner(slot, binary, machine_opts=machine_opts,
                              probe_opts=probe, smp=smp, **inner)
        vm.reader.wait_for('sum', count=10, timeout=boot_timeout)
        vm.cmd('stop')
        time.sleep(2)
        vm.cmd('cont')
        n = len(vm.reader.of_kind('sum'))
        vm.reader.wait_for('sum', count=n + 25, timeout=60)
        return vm

    def migrate(self, src, dst_host, dst_slot, binary, uri_host,
                probe=PROBE, smp='1', mode=None, lag_samples=30, **inner):
        """Migrate src to a new inner QEMU with a STOP_S forced stop.

        mode: a tbfork.MigrationMode (precopy by default); lag_samples:
        the probe summaries after the switch that the error estimate
        waits for; inner: more of start_inner's arguments, as the
        source's.
        """
        mode = mode or MigrationMode()
        dst = dst_host.start_inner(dst_slot, binary, probe_opts=probe,
                                   incoming=True, smp=smp, **inner)
        dst.cmd('migrate-set-capabilities', capabilities=mode.caps_arg())
        if mode.dst_params:
            dst.cmd('migrate-set-parameters', **mode.dst_params)
        dst.cmd('migrate-incoming', uri='tcp:0.0.0.0:4444')
        # A source that came in by another mode still has its caps:
        # turn off those this mode does not use (multifd refuses
        # postcopy-ram).
        src.cmd('migrate-set-capabilities', capabilities=mode.caps_arg(
            extra=['pause-before-switchover']) + [
                {'capability': c, 'state': False}
                for c in ('postcopy-ram', 'multifd') if c not in mode.caps])
        src.cmd('migrate-set-parameters', **{'max-bandwidth': 10 << 30,
                                             'downtime-limit': 300,
                                             **mode.params})
        before = src.reader.of_kind('sum')
        src.clear_events()
        src.cmd('migrate', uri=f'tcp:{uri_host}:4444')
        if mode.postcopy:
            src.cmd('migrate-start-postcopy')
        src.event_wait('MIGRATION', 300, {'status': 'pre-switchover'})
        time.sleep(STOP_S)
        src.cmd('migrate-continue', state='pre-switchover')
        resume = dst.event_wait('RESUME', 120)
        stop = src.event_wait('STOP', 10)
        src.event_wait('MIGRATION', 300, {'status': 'completed'})
        downtime = src.cmd('query-migrate').get('downtime')
        res = measure_migration(src.reader, dst.reader, before, stop, resume,
                                FREQ, STOP_S, downtime, lag_samples)
        src.cmd('quit')
        return dst, res

    def figures(self, res, skew_s=0.0):
        return {'error_ms': round(res.error_s * 1e3, 3),
                'gap_error_ms': round(res.gap_error_s * 1e3, 3),
                'stop_to_start_ms': round(res.stop_to_start_s * 1e3, 1),
                'downtime_ms': res.downtime_ms,
                'backwards': res.backwards,
                'skew_ms': round(skew_s * 1e3, 3)}

    def outcome(self, name, machine, binary, dst, res, skew_s=0.0,
                console_error=True, **extra):
        """Record a migration's figures, then check what the fork promises.

        Recorded first, so that a failing run still leaves its numbers.
        console_error False: the guest's error measured through its
        console is recorded but not checked (a guest spinning on every
        vCPU of a one-CPU emulated host delays its console by hundreds of
        ms); the offset, residue and monotonicity still are.
        """
        qemu = 'fork' if binary == FORK else 'stock'
        fig = self.figures(res, skew_s)
        if binary != FORK:
            entry = record(name, machine=machine, qemu=qemu, **fig, **extra)
            self.assertEqual(res.backwards, 0, 'the guest TB went backwards')
            return entry
        info = dst.cmd('query-ppc-timebase')
        last = info['last-adjustment']
        residue_s = last['kvm-residue-ticks'] / FREQ
        bound = (HALF_GRANULE_S + last['pairing-error-ns'] / 1e9 +
                 MEASURE_S + abs(skew_s))
        entry = record(name, machine=machine, qemu=qemu, **fig,
                       residue_ms=round(residue_s * 1e3, 3),
                       offset=last['kvm-applied-offset'],
                       pairing_ns=last['pairing-error-ns'],
                       bound_ms=round(bound * 1e3, 3), **extra)
        self.assertEqual(info['accelerator'], 'kvm')
        self.assertEqual(last['trigger'], 'migration')
        # Upstream's timebase fields carry it all: a stock-loadable stream.
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        self.assertEqual(last['kvm-requested-offset'],
                         last['kvm-applied-offset'])
        self.assertNotEqual(last['kvm-applied-offset'], 0)
        # The nearest 2^24 multiple: within half a granule either way.
        self.assertLessEqual(abs(residue_s), HALF_GRANULE_S)
        # Every vCPU got the offset.
        for vcpu in info['vcpus']:
            self.assertEqual(vcpu['tb-offset'], last['kvm-applied-offset'])
        # HMP shows the same under KVM (where `info registers` shows TB 0).
        hmp = dst.hmp('info timebase')
        self.assertIn(', kvm, policy downtime', hmp)
        off = last['kvm-applied-offset'] & (2**64 - 1)
        self.assertIn(f'KVM: requested offset 0x{off:016x}, read back '
                      f'0x{off:016x}', hmp)
        self.assertEqual(res.backwards, 0, 'the guest TB went backwards')
        if not console_error:
            return entry
        self.assertLess(abs(res.error_s), bound,
                        f'TB error {res.error_s * 1e3:.3f} ms')
        # The error the guest saw is the rounding residue, plus the host
        # clocks' disagreement and the measurement.
        self.assertLess(abs(res.error_s - residue_s),
                        MEASURE_S + abs(skew_s),
                        f'guest saw {res.error_s * 1e3:.3f} ms, residue '
                        f'{residue_s * 1e3:.3f} ms')
        return entry

    def one_host(self, machine, cpu, binary, name, host=None):
        """Loopback on one host (host: one already booted, e.g. a pair's
        A, else a shared host of that machine)."""
        h = host or self.host('A', machine=machine, cpu=cpu)
        src = self.start_guest(h, binary)
        dst, res = self.migrate(src, h, 'b', binary, '127.0.0.1')
        return self.outcome(name, machine, binary, dst, res,
                            host_boot_s=round(h.boot_s, 1))

    def pair_host_a(self, hosts=P9_PAIR, inner_opts='', gap_s=HOST_GAP_S):
        """Host A of host_pair(hosts, ...) alone: the scenarios that need
        only A run in the gap before B boots."""
        return self._pair(hosts, inner_opts, gap_s, with_b=False)[0]

    def host_pair(self, hosts=P9_PAIR, inner_opts='', gap_s=HOST_GAP_S):
        """Hosts A and B (HostSpecs), B booted gap_s after A (their TB
        origins differ by that), on one socket network (10.0.0.1 and .2),
        each serving its realtime; shared by the tests that use the same
        pair. inner_opts: machine options of every inner QEMU on both
        (max-cpu-compat)."""
        return self._pair(hosts, inner_opts, gap_s, with_b=True)

    def _pair(self, hosts, inner_opts, gap_s, with_b):
        key = ('pair', hosts, inner_opts, gap_s)
        pair = KvmTestBase._shared.get(key)
        opts = ','.join(o for o in (INNER_OPTS, inner_opts) if o)
        # (one directory per pair of machines and kernels)
        workdir = os.path.join(WORKDIR, 'shared-pair-' + '-'.join(
            f"{h.machine.split(',')[0]}-{os.path.basename(h.initrd)}"
            for h in hosts))
        if pair is None:
            self.drop_shared()
            # B connects to A's socket network later, perhaps from
            # another test
            port = self.net_port()
            a = hosts[0].host('A', workdir, opts,
                              netdev=f'listen=127.0.0.1:{port}',
                              mac='52:54:00:00:00:0a')
            try:
                a.launch()
                a.sh('ip addr add 10.0.0.1/24 dev eth0 && '
                     'ip link set eth0 up')
            except Exception:
                a.shutdown()
                raise
            pair = KvmTestBase._shared[key] = [a]
            KvmTestBase._pair_ports[key] = port
        if with_b and len(pair) == 1:
            a, port = pair[0], KvmTestBase._pair_ports[key]
            time.sleep(max(0.0, gap_s - (time.time() - a.launched_at)))
            b = hosts[1].host('B', workdir, opts,
                              netdev=f'connect=127.0.0.1:{port}',
                              mac='52:54:00:00:00:0b')
            try:
                b.launch()
                b.sh('ip addr add 10.0.0.2/24 dev eth0 && '
                     'ip link set eth0 up')
                b.sh('ping -c 3 -W 5 10.0.0.1')
                for h in (a, b):
                    h.start_clock()
            except Exception:
                # no half pair for the next test: it starts over
                b.shutdown()
                self.drop_shared()
                raise
            pair.append(b)
        self.borrow(key, tuple(pair))
        return tuple(pair)

    @staticmethod
    def synced_skew(a, b):
        """Step both hosts' realtime onto the harness's (busybox has no
        ntpd here) and return the residual skew between them, with its
        bound: it goes into the error bound and the results."""
        for h in (a, b):
            h.sync_clock()
        (oa, ba), (ob, bb) = a.clock_offset(), b.clock_offset()
        return abs(ob - oa) + ba + bb

    def two_hosts(self, binary, name, hosts=P9_PAIR, inner_opts='',
                  gap_s=HOST_GAP_S):
        a, b = self.host_pair(hosts, inner_opts, gap_s)
        ma, mb = hosts[0].name, hosts[1].name
        src = self.start_guest(a, binary)
        skew_total = self.synced_skew(a, b)
        dst, res1 = self.migrate(src, b, 'b', binary, '10.0.0.2')
        host_gap_s = b.launched_at - a.launched_at
        e1 = self.outcome(f'{name} A->B', mb, binary, dst, res1,
                          skew_total, source_machine=ma,
                          host_gap_s=round(host_gap_s, 1))
        back, res2 = self.migrate(dst, a, 'c', binary, '10.0.0.1')
        e2 = self.outcome(f'{name} B->A', ma, binary, back, res2,
                          skew_total, source_machine=mb,
                          host_gap_s=round(host_gap_s, 1))
        if binary == FORK:
            # The hosts' TB origins differ by at least gap_s (B booted
            # that long after A, or later), so the offsets differ by at
            # least about that much.
            self.assertGreater(abs(e1['offset'] - e2['offset']),
                               0.9 * gap_s * FREQ)
        e3 = self.paused_double(a, b, back, binary, name, skew_total, ma)
        return e1, e2, e3

    def rolling_upgrade(self):
        """stock -> fork -> stock -> fork between hosts A and B with
        default options, each hop live with the forced stop. A fork
        destination is exact from the source's timebase fields (stock
        samples its TB when it saves, after the stop, and under KVM the
        TB ran in hardware until then); a stock destination programs the
        fork's stop-time TB: frozen across the stop. Never backwards."""
        a, b = self.host_pair()
        skew_total = self.synced_skew(a, b)
        vm = self.start_guest(a, STOCK, 'a')
        hops = [(b, 'b', FORK, '10.0.0.2'), (a, 'c', STOCK, '10.0.0.1'),
                (b, 'd', FORK, '10.0.0.2')]
        prev = 'stock'
        entries = []
        for i, (host, slot, binary, ip) in enumerate(hops):
            qemu = 'fork' if binary == FORK else 'stock'
            vm, res = self.migrate(vm, host, slot, binary, ip)
            entries.append(self.outcome(
                f'P9 rolling upgrade, hop {i + 1}: {prev} -> {qemu}',
                'powernv9', binary, vm, res, skew_total))
            if binary == STOCK:
                self.assertLess(res.error_s, -STOP_S / 2, f'hop {i + 1}')
            prev = qemu
        return entries

    def refused_migration(self, src, dst, uri_host):
        """Migrate src to dst, which must refuse the stream: the source
        (return path on) sees the failure and runs on. dst's stderr,
        read once its QEMU has exited (it prints its error first)."""
        dst.cmd('migrate-incoming', uri='tcp:0.0.0.0:4444')
        src.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'return-path', 'state': True},
            {'capability': 'events', 'state': True}])
        src.clear_events()
        src.cmd('migrate', uri=f'tcp:{uri_host}:4444')
        src.event_wait('MIGRATION', 300, {'status': 'failed'})
        # The source restarts its vCPUs after it reports the failure:
        # what it says then comes once they run.
        src.event_wait('RESUME', 60)
        n = len(src.reader.of_kind('sum'))
        src.reader.wait_for('sum', count=n + 10, timeout=120)
        deadline = time.monotonic() + 60
        while dst.host.sh(f'kill -0 $(cat /tmp/{dst.slot}.pid)',
                          check=False)[0] == 0:
            self.assertLess(time.monotonic(), deadline,
                            'the destination QEMU is still there')
            time.sleep(1)
        return dst.stderr()

    @staticmethod
    def plain_migration(src, dst, uri_host):
        """Migrate src to dst (no forced stop); src's setup event."""
        dst.cmd('migrate-set-capabilities',
                capabilities=[{'capability': 'events', 'state': True}])
        dst.cmd('migrate-incoming', uri='tcp:0.0.0.0:4444')
        src.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'pause-before-switchover', 'state': False},
            {'capability': 'events', 'state': True}])
        src.cmd('migrate', uri=f'tcp:{uri_host}:4444')
        setup = src.event_wait('MIGRATION', 60, {'status': 'setup'})
        src.event_wait('MIGRATION', 300, {'status': 'completed'})
        dst.event_wait('MIGRATION', 60, {'status': 'completed'})
        src.cmd('quit')
        return setup

    def paused_double(self, a, b, vm, binary, name, skew_s,
                      machine='powernv9'):
        """Paused on A, migrated to B (it stays paused: the run state
        travels), back to A, then cont: the guest's TB never goes below
        what it read on A (B's host TB, 60 s behind A's, must not leak
        in), and it is behind real time by the pause before the first
        migration only (frozen; the migrations are compensated)."""
        before = vm.reader.of_kind('sum')
        vm.clear_events()
        vm.cmd('stop')
        stop = vm.event_wait('STOP', 10)
        time.sleep(STOP_S)
        mid = b.start_inner('d', binary, incoming=True)
        setup = self.plain_migration(vm, mid, '10.0.0.2')
        status = mid.cmd('query-status')['status']
        time.sleep(STOP_S)
        # The decision at the end covers the whole trip, past the
        # default 10 s cap on a slow machine: lift the cap for it.
        end = a.start_inner('e', binary, incoming=True,
                            machine_opts=('tb-max-delta-ms=300000'
                                          if binary == FORK else ''))
        self.plain_migration(mid, end, '10.0.0.1')
        end.cmd('cont')
        resume = end.event_wait('RESUME', 60)
        settled = event_time(resume) + 0.3
        # A TB stepped back stalls the guest until it catches up.
        post = end.reader.wait_for('sum', count=30, timeout=240,
                                   pred=lambda p: p.host_time > settled)
        last_tb = max(p.fields['tb'] for p in before)
        first_tb = min(p.fields['tb'] for p in end.reader.of_kind('sum'))
        paused_s = event_time(setup) - event_time(stop)
        error_s = guest_lag(before[-30:], FREQ) - guest_lag(post, FREQ)
        backwards = len(vm.reader.of_kind('back') +
                        end.reader.of_kind('back'))
        qemu = 'fork' if binary == FORK else 'stock'
        entry = record(f'{name} paused A->B->A', machine=machine,
                       qemu=qemu, error_ms=round(error_s * 1e3, 3),
                       paused_ms=round(paused_s * 1e3, 1),
                       stop_to_start_ms=round((event_time(resume) -
                                               event_time(stop)) * 1e3, 1),
                       backwards=backwards, skew_ms=round(skew_s * 1e3, 3),
                       min_tb_step_s=round((first_tb - last_tb) / FREQ, 3),
                       mid_status=status)
        self.assertEqual(status, 'paused')
        if binary != FORK:
            return entry
        last = end.cmd('query-ppc-timebase')['last-adjustment']
        self.assertEqual(last['trigger'], 'migration')
        # The pause became downtime when the first migration began.
        self.assertFalse(last['sync-state-loaded'])
        self.assertEqual(last['reason'], 'applied')
        self.assertEqual(backwards, 0, 'the guest TB went backwards')
        self.assertGreaterEqual(first_tb, last_tb)
        # Frozen for the pause before the first migration, compensated
        # from there (docs: a pause that ends in a migration).
        bound = (HALF_GRANULE_S + last['pairing-error-ns'] / 1e9 +
                 MEASURE_S + abs(skew_s))
        self.assertLess(abs(error_s + paused_s), bound,
                        f'TB error {error_s * 1e3:.3f} ms, pause '
                        f'{paused_s * 1e3:.3f} ms')
        return entry

    def modes_smp(self, machine, cpu, name):
        """One 4-vCPU guest through precopy, postcopy and multifd on one
        host: each compensated within the bound, every vCPU with the
        same offset and running (a sleeper per vCPU keeps waking), the
        probe's cross-vCPU check silent."""
        h = self.host('A', machine=machine, cpu=cpu)
        smp = '4'
        probe = PROBE + ',a,w=200'
        vm = self.start_guest(h, FORK, 'a', probe=probe, smp=smp,
                              boot_timeout=240)
        postcopy = MigrationMode(caps=['postcopy-ram'], postcopy=True,
                                 params={'max-bandwidth': 8 << 20})
        params = {'multifd-channels': 2}
        multifd = MigrationMode(caps=['multifd'], params=params,
                                dst_params=params)
        entries = []
        for slot, mode_name, mode in (('b', 'precopy', None),
                                      ('c', 'postcopy', postcopy),
                                      ('d', 'multifd', multifd)):
            # Four spinning vCPUs on the host's one CPU each print a
            # summary every second or two: a short estimate window.
            vm, res = self.migrate(vm, h, slot, FORK, '127.0.0.1',
                                   probe=probe, smp=smp, mode=mode,
                                   lag_samples=8)
            entry = self.outcome(f'{name}, 4 vCPUs, {mode_name}', machine,
                                 FORK, vm, res, console_error=False)
            entries.append(entry)
            after = time.time()
            for c in range(4):
                for kind in ('wake', 'sum'):
                    vm.reader.wait_for(kind, count=3, timeout=60,
                                       pred=lambda p, c=c: p.fields['cpu']
                                       == c and p.host_time > after)
            self.assertEqual(vm.reader.of_kind('skew'), [],
                             'vCPU TBs disagree')
            self.assertEqual(len(vm.cmd('query-ppc-timebase')['vcpus']), 4)
        return entries

    def kvm_set_fails(self, machine, cpu, name):
        """Setting KVM_REG_PPC_TB_OFFSET fails on vCPU 1 of 2 (injected
        with x-tb-kvm-fail-vcpu): no vCPU keeps the new offset, and the
        VM does not run on (internal-error), with an error naming the
        vCPU. Vcpus with different TBs hang a Linux guest."""
        h = self.host('A', machine=machine, cpu=cpu)
        src = self.start_guest(h, FORK, 'a', smp='2', probe=PROBE + ',a')
        dst = h.start_inner('b', FORK, incoming=True, smp='2',
                            machine_opts='x-tb-kvm-fail-vcpu=1')
        self.plain_migration(src, dst, '127.0.0.1')
        dst.event_wait('STOP', 30)
        status = dst.cmd('query-status')['status']
        vcpus = dst.cmd('query-ppc-timebase')['vcpus']
        offsets = [v['tb-offset'] for v in vcpus]
        err = dst.stderr()
        record(name, machine=machine, qemu='fork', status=status,
               set_fail_offsets=offsets,
               error=([line for line in err.splitlines()
                       if 'TB_OFFSET' in line] or [''])[-1][:160])
        self.assertEqual(status, 'internal-error')
        self.assertEqual(len(set(offsets)), 1, offsets)
        self.assertIn('on vCPU 1 failed', err)
        self.assertIn('The VM is being stopped (internal-error)', err)
        # The pair stays held, its floor raised to the TB the vCPUs showed
        # while they ran for a moment (this host's, no offset): migrated
        # on, the stream needs timebase/sync to carry that floor.
        c = h.start_inner('c', FORK, incoming=True, smp='2')
        # (InnerVM.cmd's own first parameter is called name)
        c.qmp.cmd('trace-event-set-state', name='spapr_tb_sync_load',
                  enable=True)
        self.plain_migration(dst, c, '127.0.0.1')
        load = re.search(r'timebase with timebase/sync: flags 0x0 guest tb '
                         r'0x([0-9a-f]+) realtime -?\d+ ns floor '
                         r'0x([0-9a-f]+)', c.stderr())
        self.assertIsNotNone(load, 'no timebase/sync in the stream')
        tb, floor = int(load.group(1), 16), int(load.group(2), 16)
        record(name + ', migrated on', machine=machine, qemu='fork',
               floor_above_tb_s=round((floor - tb) / FREQ, 3))
        self.assertGreater(floor, tb)

    def hotplug_after_migration(self, host, binary, slots, name):
        """A core hot-plugged after a migration reads the same TB as the
        vCPU that migrated: the same offset in the kernel (RTAS start-cpu
        gives the new vCPU its caller's offset, stock QEMU too), and the
        probe's cross-CPU check (both ways) finds no skew."""
        smp = '1,maxcpus=2'
        probe = PROBE + ',a'
        src = self.start_guest(host, binary, slots[0], probe=probe, smp=smp)
        dst, res = self.migrate(src, host, slots[1], binary, '127.0.0.1',
                                probe=probe, smp=smp)
        core = [c for c in dst.cmd('query-hotpluggable-cpus')
                if 'qom-path' not in c][0]
        dst.cmd('device_add', driver=core['type'], id='core1',
                **core['props'])
        dst.reader.wait_for('cpuadd', timeout=60)
        after = time.time()
        dst.reader.wait_for('sum', count=20, timeout=60,
                            pred=lambda p: p.fields['cpu'] == 1 and
                            p.host_time > after)
        # Stock has no query-ppc-timebase: there the probe's check speaks.
        offsets = ([v['tb-offset'] for v in
                    dst.cmd('query-ppc-timebase')['vcpus']]
                   if binary == FORK else [])
        skews = dst.reader.of_kind('skew')
        qemu = 'fork' if binary == FORK else 'stock'
        entry = record(name, machine='powernv9', qemu=qemu,
                       hotplug_offsets=offsets, skews=len(skews),
                       skew_max_s=round(max([p.fields['behind'] for p in
                                             skews], default=0) / FREQ, 3),
                       backwards=res.backwards)
        if binary == FORK:
            self.assertEqual(len(offsets), 2)
            self.assertNotEqual(offsets[0], 0)
            self.assertEqual(offsets[1], offsets[0],
                             'the hot-plugged vCPU has another TB offset')
        self.assertEqual(skews, [], 'vCPU TBs disagree')
        self.assertEqual(res.backwards, 0)
        dst.cmd('quit')
        return entry

    def net_port(self):
        if not hasattr(self, '_net_port'):
            import socket
            s = socket.socket()
            s.bind(('127.0.0.1', 0))
            self._net_port = s.getsockname()[1]
            s.close()
        return self._net_port

    def dirty_migration(self, outer):
        """Migrate a guest that rewrites 16 MiB, reading each page first;
        return (pages that lost their last write, guest alive after).

        KVM-HV's dirty tracking under radix reads the C bit of its
        partition-scoped PTEs; the outer TCG emulator must set C on the
        first store after a load, or the last writes are lost.
        """
        h = self.host('A', outer_qemu=outer)
        probe = PROBE + ',m=16'
        src = h.start_inner('a', FORK, probe_opts=probe)
        src.reader.wait_for('memsum', count=2, timeout=120)
        dst = h.start_inner('b', FORK, probe_opts=probe, incoming=True)
        dst.cmd('migrate-incoming', uri='tcp:127.0.0.1:4444')
        src.cmd('migrate-set-parameters', **{'max-bandwidth': 10 << 30,
                                             'downtime-limit': 300})
        src.cmd('migrate', uri='tcp:127.0.0.1:4444')
        limit_ms = 300
        try:
            dst.event_wait('RESUME', 120)
        except TimeoutError:
            # The guest can dirty its 16 MiB faster than the loopback
            # copies them (seen once in 300 s): the final pass may then
            # take what it needs. Lost writes show up all the same.
            limit_ms = 20000
            src.cmd('migrate-set-parameters', **{'downtime-limit': limit_ms})
            dst.event_wait('RESUME', 300)
        # Every page is checked once per pass: a few passes after the
        # switch, a lost write has shown up (or the guest died of one).
        # The destination faults its 16 MiB in anew (KVM-HV under TCG):
        # twice in four runs on 2026-11-26 no pass came within a minute
        # (the spinner printing all along; not understood yet).
        # A guest that died (stock's outer emulator: an oops) prints no
        # probe line at all: 30 s of that ends the wait, not 240 s.
        passes = max(p.fields['pass'] for p in src.reader.of_kind('memsum'))
        switched = time.time()
        first_pass_s = None
        alive = None
        while alive is None:
            try:
                got = dst.reader.wait_for(
                    'memsum', count=3, timeout=10,
                    pred=lambda p: p.fields['pass'] > passes)
                first_pass_s = round(got[0].host_time - switched, 1)
                alive = True
            except TimeoutError:
                with dst.reader.cond:
                    last = max([switched] + [p.host_time
                                             for p in dst.reader.lines[-1:]])
                now = time.time()
                if now - last > 30 or now - switched > 240:
                    alive = False
        lost = len(dst.reader.of_kind('mem'))
        record('dirtying guest, outer ' + ('fork' if outer == OUTER
                                            else 'stock 10.0.2'),
               machine='powernv9', qemu='fork', lost_pages=lost,
               first_pass_s=first_pass_s,
               guest_alive=alive, downtime_limit_ms=limit_ms)
        return lost, alive

    def tb_regs_order(self, host, name, machine):
        """KVM_REG_PPC_TB_OFFSET and KVM_REG_PPC_DEC_EXPIRY set in either
        order on fresh vCPUs (tests/kvm/tbregs.c), as a VMM loading a
        migrated vCPU may: the offset is rounded up to a 2^24 multiple,
        an expiry set before or after it is kept as given, and with none
        set the decrementer starts expired (the guest's TB at the set),
        not 2^64 ticks away."""
        offset = -(1 << 30) - 12345     # not a multiple of 2^24
        expiry = 1 << 40
        _, out = host.sh(f'tbregs {offset} {expiry}')
        rows = {m.group(1): dict((k, int(v)) for k, v in
                                 re.findall(r'(\w+)=(-?\d+)', m.group(2)))
                for m in re.finditer(r'^TBREGS order=(\S+)((?: \w+=-?\d+)+)',
                                     out, re.M)}
        aligned = (offset + (1 << 24) - 1) & ~((1 << 24) - 1)
        only = rows.get('offset-only', {})
        record(name, machine=machine, qemu='-', requested_offset=offset,
               requested_expiry=expiry, aligned_offset=aligned,
               tb_regs={k: {'offset': v['offset'], 'expiry': v['expiry']}
                        for k, v in rows.items()},
               expiry_vs_guest_tb=(only['expiry'] - (only['tb0'] + aligned)
                                   if only else None))
        self.assertEqual(set(rows), {'offset-then-expiry',
                                     'expiry-then-offset', 'offset-only'},
                         out)
        for order in ('offset-then-expiry', 'expiry-then-offset'):
            self.assertEqual(rows[order]['offset'], aligned, order)
            self.assertEqual(rows[order]['expiry'], expiry, order)
        self.assertEqual(only['offset'], aligned)
        self.assertGreaterEqual(only['expiry'], only['tb0'] + aligned)
        self.assertLessEqual(only['expiry'], only['tb1'] + aligned)

    def dec_at_resume(self, machine, cpu, name):
        """A sleep whose deadline fell in the forced stop ends at resume.

        Four probe sleepers with deadlines 0.8 s apart, a quarter period
        out of phase: the stop holds several deadlines, the last one at
        least 0.6 s in. The decrementer state (DEC_EXPIRY, in guest TB)
        crosses the migration with the TB offset; if either were off, the
        sleepers would wake up to the rest of their sleep late.
        """
        probe = PROBE + ',w=800'
        h = self.host('A', machine=machine, cpu=cpu)
        src = self.start_guest(h, FORK, probe=probe)
        dst, res = self.migrate(src, h, 'b', FORK, '127.0.0.1', probe=probe)
        self.assertEqual(res.backwards, 0)
        n, into_stop_s, after_s = sleeps_across_stop([src.reader, dst.reader],
                                                     FREQ)
        self.assertGreaterEqual(n, 2, 'sleepers with a deadline in the stop')
        record(name, machine=machine, qemu='fork',
               deadline_into_stop_ms=round(into_stop_s * 1e3, 1),
               woke_after_resume_ms=round(after_s * 1e3, 3))
        # Not firing at resume would mean waking at least 0.35 s late.
        self.assertGreater(into_stop_s, 0.35)
        self.assertLess(after_s, 0.100)
