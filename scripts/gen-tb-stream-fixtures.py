#!/usr/bin/env python3
"""Write migration streams of a fork build as test fixtures.

The fork's earlier stream formats (the spapr/timebase-sync subsection,
formats 1 and 2) must still load. Their writers are gone from the tree, so
streams written by builds of the commits that had them are kept in
tests/functional/data/ppc64-tb-streams/, with what the source saved (from
its ppc_tb_sync_save trace) beside each. This script wrote them:

  scripts/gen-tb-stream-fixtures.py QEMU LABEL OUTDIR COMMIT

QEMU: qemu-system-ppc64 built at the commit (format 1: 968f8a1, format 2:
061c043); LABEL: file name prefix (format1, format2). Two streams each:
  LABEL-running: a running VM (SLOF at its prompt) migrated to a file, the
                 migration's own stop (policy downtime);
  LABEL-paused-freeze: tb-policy=freeze, the VM paused by `stop` first,
                 then migrated to a file (the subsection says user pause).
"""
import json
import lzma
import os
import re
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'build', 'qemu-src', 'python'))
from qemu.machine import QEMUMachine  # noqa: E402

# The command line the stream belongs to; tests load it with the same.
ARGS = ['-cpu', 'power9', '-smp', '1', '-m', '256M', '-accel', 'tcg',
        '-nodefaults', '-display', 'none', '-L', '/usr/share/qemu']
SAVE_RE = re.compile(r'ppc_tb_sync_save (\S+): guest tb 0x([0-9a-f]+) '
                     r'realtime (-?\d+) ns pairing error (\d+) ticks '
                     r'user_paused (\d)')


def write_stream(qemu, commit, out, machine_opts, pause):
    tmp = tempfile.mkdtemp(prefix='tbfx-')
    vm = QEMUMachine(qemu, base_temp_dir=tmp)
    machine = 'pseries-10.0' + (',' + machine_opts if machine_opts else '')
    vm.add_args('-M', machine, *ARGS, '-trace', 'ppc_tb_sync_save')
    vm.launch()
    time.sleep(2)           # SLOF runs: the TB is well away from 0
    if pause:
        vm.cmd('stop')
        time.sleep(0.5)
    raw = os.path.join(tmp, 'stream.bin')
    vm.cmd('migrate', uri='file:' + raw)
    while True:
        st = vm.cmd('query-migrate')['status']
        if st in ('completed', 'failed'):
            break
        time.sleep(0.1)
    vm.shutdown()
    if st != 'completed':
        sys.exit(f'{out}: migration {st}')
    saves = SAVE_RE.findall(vm.get_log())
    if not saves:
        sys.exit(f'{out}: no ppc_tb_sync_save trace in the log')
    when, tb, realtime, err, paused = saves[-1]
    with open(raw, 'rb') as f, lzma.open(out + '.bin.xz', 'wb',
                                         preset=9) as g:
        g.write(f.read())
    meta = {'SPDX-License-Identifier': 'GPL-2.0-or-later',
            'machine': machine, 'args': ARGS, 'sampled': when,
            'guest_tb': int(tb, 16), 'realtime_ns': int(realtime),
            'pairing_err_ticks': int(err), 'user_paused': paused == '1',
            'commit': commit, 'written': time.strftime('%Y-%m-%d %H:%M UTC',
                                                   time.gmtime())}
    with open(out + '.json', 'w') as f:
        json.dump(meta, f, indent=1)
        f.write('\n')
    print(f'{out}: {meta}')


def main():
    qemu, label, outdir, commit = sys.argv[1:5]
    os.makedirs(outdir, exist_ok=True)
    write_stream(qemu, commit, os.path.join(outdir, label + '-running'), '',
                 False)
    write_stream(qemu, commit, os.path.join(outdir, label + '-paused-freeze'),
                 'tb-policy=freeze', True)


if __name__ == '__main__':
    main()
