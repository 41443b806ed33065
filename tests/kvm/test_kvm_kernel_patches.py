#!/usr/bin/env python3
#
# The KVM-HV harness on a host kernel built with kernel-patches/ (Debian's
# linux-source-6.1 + the series, scripts/build-kernel.sh): the kernel's
# own view of the timebase offset, through the new debugfs entry and
# tracepoints, agrees with what the fork's query-ppc-timebase reports; the
# scenarios of test_kvm_tb_migration.py pass on it. The kernel also has
# KVM-PR built in (Debian's has none), a KVM without KVM_REG_PPC_TB_OFFSET:
# the fork's refusal is tested on it. `make check-kernel` runs it with
# TBFORK_HOST_KERNEL set to that kernel; then with the series on
# linux-source-6.12 (TBFORK_PATCHED_KERNEL=6.12) as a POWER10 host.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import unittest

from kvmtest import FORK, NESTED_V2_MACHINE, PROBE, KvmTestBase, record

TRACE = '/sys/kernel/tracing'
# A KVM-PR guest: what KVM-PR cannot offer is turned off.
KVM_PR_OPTS = 'kvm-type=PR,cap-fwnmi=off,cap-ail-mode-3=off'
NO_TB_OFFSET = 'this kernel does not support KVM_REG_PPC_TB_OFFSET'


def u64(value):
    return value & (2**64 - 1)


class KvmKernelPatchesTest(KvmTestBase):

    def vcpu_debugfs(self, host, slot):
        """The kernel's tb_offset and tb_offset_applied for slot's vcpu 0."""
        _, out = host.sh(f'cat /sys/kernel/debug/kvm/$(cat /tmp/{slot}.pid)-'
                         f'*/vcpu0/tb_offset')
        fields = dict(re.findall(r'^(\w+) 0x([0-9a-f]+)$', out, re.M))
        self.assertIn('tb_offset', fields, out)
        return int(fields['tb_offset'], 16), \
            int(fields['tb_offset_applied'], 16)

    def ground_truth(self, machine, cpu, name):
        """The kernel applies exactly what query-ppc-timebase reports."""
        h = self.host('A', machine=machine, cpu=cpu)
        src = self.start_guest(h, FORK)
        # The set events of the migration, alone: the entry and exit
        # events come thousands a second and would wrap the buffer.
        h.sh(f'echo > {TRACE}/trace; '
             f'echo 1 > {TRACE}/events/kvm_hv/kvmppc_tb_offset_set/enable')
        dst, res = self.migrate(src, h, 'b', FORK, '127.0.0.1')
        entry = self.outcome(name, machine, FORK, dst, res)
        offset = u64(entry['offset'])
        kernel_off, applied = self.vcpu_debugfs(h, 'b')
        _, trace = h.sh(f'cat {TRACE}/trace')
        sets = re.findall(r'kvmppc_tb_offset_set: VCPU \d+: TB offset '
                          r'requested 0x([0-9a-f]+) set 0x([0-9a-f]+)', trace)
        # Then a second of guest entries and exits.
        h.sh(f'echo 0 > {TRACE}/events/kvm_hv/kvmppc_tb_offset_set/enable; '
             f'echo > {TRACE}/trace; '
             f'echo 1 > {TRACE}/events/kvm_hv/kvmppc_tb_offset_enter/enable; '
             f'echo 1 > {TRACE}/events/kvm_hv/kvmppc_tb_offset_exit/enable; '
             f'sleep 1; echo 0 > {TRACE}/events/kvm_hv/enable')
        _, trace = h.sh(f'cat {TRACE}/trace')
        enters = re.findall(r'kvmppc_tb_offset_enter: vcore \d+: guest entry '
                            r'applies TB offset 0x([0-9a-f]+)', trace)
        exits = re.findall(r'kvmppc_tb_offset_exit: vcore \d+: guest exit '
                           r'removed TB offset 0x([0-9a-f]+) \(still applied '
                           r'0x([0-9a-f]+)\)', trace)
        record('kernel ground truth', machine=machine, qemu='fork',
               offset=entry['offset'], debugfs_offset=kernel_off,
               trace_sets=len(sets), trace_entries=len(enters),
               trace_exits=len(exits))
        # debugfs: the vcore holds the fork's offset; it is in force only
        # while the guest runs (this shell runs on the host's only CPU).
        self.assertEqual(kernel_off, offset)
        self.assertEqual(applied, 0)
        # The destination set it on its vCPU: requested = kept, already a
        # 2^24 multiple, and it is what the fork reports.
        self.assertIn((f'{offset:x}', f'{offset:x}'), sets)
        self.assertEqual(offset % (1 << 24), 0)
        # Entries and exits applied and removed that offset.
        self.assertGreater(len(enters), 0)
        self.assertEqual({int(e, 16) for e in enters}, {offset})
        self.assertGreater(len(exits), 0)
        for removed, still in exits:
            self.assertEqual(int(removed, 16), offset)
            self.assertEqual(int(still, 16), 0)

    def test_p9_debugfs_and_tracepoints(self):
        """The kernel applies exactly what query-ppc-timebase reports."""
        self.ground_truth('powernv9', 'power9', 'P9 one host, patched kernel')

    def test_p9_one_host(self):
        """Scenario 1 of the harness on the patched kernel."""
        self.one_host('powernv9', 'power9', FORK,
                      'P9 one host, patched kernel')

    def test_p8_dec_at_resume(self):
        """POWER8 (assembly path): DEC_EXPIRY crosses with the offset."""
        self.dec_at_resume('powernv8', 'power8',
                           'DEC at resume (P8, patched kernel)')

    def test_p8_kvm_pr_refused(self):
        """KVM-PR has no TB offset: migration refused, the source runs on;
        a snapshot on the same host loads.

        A KVM-PR guest reads the host TB. Moved to another host its TB
        would jump to that host's origin, so the destination refuses the
        stream with a clear error and the source (told through the return
        path) keeps running. A pause and resume on the source applies
        nothing: one warning, no error per vCPU.
        """
        h = self.host('A', machine='powernv8', cpu='power8')
        src = self.start_guest(h, FORK, machine_opts=KVM_PR_OPTS,
                               boot_timeout=300)

        dst = h.start_inner('b', FORK, machine_opts=KVM_PR_OPTS,
                            probe_opts=PROBE, incoming=True)
        dst_err = self.refused_migration(src, dst, '127.0.0.1')
        src_err = src.stderr()
        status = src.cmd('query-status')
        info = src.cmd('query-ppc-timebase')
        record('KVM-PR: no TB offset', machine='powernv8', qemu='fork',
               error=next((line for line in dst_err.splitlines()
                           if NO_TB_OFFSET in line), None))
        # The destination says why, and gave up.
        self.assertIn(f'timebase: {NO_TB_OFFSET}', dst_err)
        self.assertIn('load of migration failed', dst_err)
        # The source runs on, its TB monotonic throughout.
        self.assertEqual(status['status'], 'running')
        self.assertEqual(info['accelerator'], 'kvm')
        self.assertEqual(src.reader.of_kind('back'), [])
        self.assertEqual(src.reader.of_kind('sum')[-1].fields['back'], 0)
        # Its resumes applied nothing, said so once, and failed no vCPU.
        self.assertEqual(src_err.count(NO_TB_OFFSET), 1, src_err)
        self.assertNotIn('setting KVM_REG_PPC_TB_OFFSET', src_err)
        self.assertNotIn('last-adjustment', info)
        self.kvm_pr_snapshot(h, src)

    def kvm_pr_snapshot(self, host, vm):
        """Only incoming migrations are refused under KVM-PR: a snapshot
        saved and loaded on the same host (its TB, the guest's) loads as
        with stock QEMU, and the guest runs on, its TB monotonic."""
        def job(cmd, job_id, **args):
            vm.cmd(cmd, **{'job-id': job_id, **args})
            vm.event_wait('JOB_STATUS_CHANGE', 120,
                          {'id': job_id, 'status': 'concluded'})
            info = [j for j in vm.cmd('query-jobs') if j['id'] == job_id][0]
            vm.cmd('job-dismiss', id=job_id)
            return info.get('error')

        vm.cmd('migrate-set-capabilities', capabilities=[
            {'capability': 'return-path', 'state': False}])
        # A qcow2 image for the snapshot, made by the inner QEMU itself
        # (the host has no qemu-img).
        path = f'/tmp/{vm.slot}-snap.qcow2'
        self.assertIsNone(job('blockdev-create', 'mkfile', options={
            'driver': 'file', 'filename': path, 'size': 0}))
        vm.cmd('blockdev-add', driver='file', filename=path,
               **{'node-name': 'snapfile'})
        self.assertIsNone(job('blockdev-create', 'mkqcow2', options={
            'driver': 'qcow2', 'file': 'snapfile', 'size': 64 << 20}))
        vm.cmd('blockdev-add', driver='qcow2', file='snapfile',
               **{'node-name': 'snap'})
        snap = {'tag': 's1', 'vmstate': 'snap', 'devices': ['snap']}
        self.assertIsNone(job('snapshot-save', 'save', **snap))
        n = len(vm.reader.of_kind('sum'))
        vm.reader.wait_for('sum', count=n + 5, timeout=60)
        load_error = job('snapshot-load', 'load', **snap)
        status = vm.cmd('query-status')['status']
        err = vm.stderr()
        if load_error is None and status == 'running':
            n = len(vm.reader.of_kind('sum'))
            vm.reader.wait_for('sum', count=n + 10, timeout=120)
        back = vm.reader.of_kind('back')
        record('KVM-PR: snapshot-load on the same host', machine='powernv8',
               qemu='fork', snapshot_load_error=load_error, status=status,
               backwards=len(back))
        self.assertIsNone(load_error)
        self.assertEqual(status, 'running')
        self.assertEqual(err.count(NO_TB_OFFSET), 1, err)
        self.assertEqual(back, [])

    def test_p8_one_host(self):
        """Scenario 1 on POWER8 (assembly entry path), patched kernel."""
        self.one_host('powernv8', 'power8', FORK,
                      'P8 one host, patched kernel')



class KvmKernelPatches612Test(KvmKernelPatchesTest):
    """The series on Debian's linux-source-6.12, booted as a POWER10 host:
    the same ground truth."""

    def test_p10_debugfs_and_tracepoints(self):
        self.ground_truth('powernv10', 'power10',
                          'P10 one host, patched 6.12 kernel')

    def test_p10_dec_at_resume(self):
        """A sleep due in the stop ends at resume (DEC_EXPIRY crosses with
        the offset) on POWER10."""
        self.dec_at_resume('powernv10', 'power10',
                           'DEC at resume (P10, patched 6.12 kernel)')

    def test_p10_nested_v2_sent_to_l0(self):
        """Booted as a pseries L1 on the nested API v2 (the fork's TCG as
        the L0): the L1 applies no offset itself but sends it to the L0
        (H_GUEST_SET_STATE); what it sent is what query-ppc-timebase
        reports, and the L2's TB shows the L0 applied it."""
        name = 'nested v2 L1 one host, patched 6.12 kernel'
        h = self.host('N', machine=NESTED_V2_MACHINE, cpu='power10')
        src = self.start_guest(h, FORK)
        events = ('kvmppc_tb_offset_set', 'kvmppc_tb_offset_sent',
                  'kvmppc_tb_offset_enter', 'kvmppc_tb_offset_exit')
        h.sh(f'echo > {TRACE}/trace; ' + '; '.join(
            f'echo 1 > {TRACE}/events/kvm_hv/{e}/enable' for e in events))
        dst, res = self.migrate(src, h, 'b', FORK, '127.0.0.1')
        entry = self.outcome(name, 'pseries L1, nested API v2', FORK, dst,
                             res)
        offset = u64(entry['offset'])
        h.sh(f'echo 0 > {TRACE}/events/kvm_hv/enable')
        kernel_off, applied = self.vcpu_debugfs(h, 'b')
        _, trace = h.sh(f'cat {TRACE}/trace')
        sent = re.findall(r'kvmppc_tb_offset_sent: VCPU \d+: TB offset '
                          r'0x([0-9a-f]+) sent to the L0', trace)
        tbu40 = re.findall(r'kvmppc_tb_offset_(?:enter|exit):', trace)
        record('kernel ground truth, nested v2', machine='pseries L1',
               qemu='fork', offset=entry['offset'], debugfs_offset=kernel_off,
               trace_sent=len(sent), trace_tbu40=len(tbu40))
        self.assertEqual(kernel_off, offset)
        # Sent to the L0, and only that; never applied by the L1 itself.
        self.assertGreater(len(sent), 0)
        self.assertEqual({int(v, 16) for v in sent}, {offset})
        self.assertEqual(applied, 0)
        self.assertEqual(tbu40, [])


def load_tests(loader, tests, pattern):
    """The tests of the kernel version the tier built and booted
    (TBFORK_PATCHED_KERNEL: 6.1 by default, or 6.12)."""
    del tests, pattern
    if os.environ.get('TBFORK_PATCHED_KERNEL', '6.1') == '6.12':
        cls = KvmKernelPatches612Test
        names = [n for n in loader.getTestCaseNames(cls)
                 if n.startswith('test_p10_')]
        return unittest.TestSuite(cls(n) for n in names)
    return loader.loadTestsFromTestCase(KvmKernelPatchesTest)


if __name__ == '__main__':
    from pycotap import LogMode, TAPTestRunner
    unittest.main(testRunner=TAPTestRunner(
        message_log=LogMode.LogToError, test_output_log=LogMode.LogToError))
