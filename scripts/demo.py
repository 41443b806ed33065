#!/usr/bin/env python3
# `make demo`: boot a pseries TCG guest running the TB probe, live-migrate
# it between two QEMU processes of the fork with a ~1 s forced stop
# (pause-before-switchover), and print what the guest saw.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import argparse
import os
import sys
import tempfile
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument('--qemu', required=True)
    ap.add_argument('--guest', required=True)
    ap.add_argument('--qemu-python', required=True,
                    help="QEMU's python/ directory (qemu.machine, qemu.qmp)")
    ap.add_argument('--stop', type=float, default=1.0)
    ap.add_argument('--machine-opts', default='')
    args = ap.parse_args()

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:0] = [args.qemu_python, os.path.join(top, 'tests', 'functional')]
    from tbfork import TBMigrationRig   # pylint: disable=import-outside-toplevel

    log_dir = tempfile.mkdtemp(prefix='tbfork-demo-')
    rig = TBMigrationRig(args.qemu, args.guest, log_dir,
                         machine_opts=args.machine_opts)
    try:
        t0 = time.time()
        print(f'==> booting source guest ({args.qemu})', flush=True)
        src, reader = rig.start_source()
        start = reader.of_kind('start')[0].fields
        print(f'    guest up in {time.time() - t0:.1f}s, probe running, '
              f'TB frequency {start["freq"]} Hz', flush=True)
        print(f'==> live migration with a forced stop of {args.stop:.1f}s '
              f'(pause-before-switchover)', flush=True)
        dst, dreader, res = rig.migrate(src, reader, args.stop)
        sums = dreader.of_kind('sum')
        print('==> probe report (destination)')
        print(f'    stop-to-start (QMP STOP on source -> RESUME on '
              f'destination): {res.stop_to_start_s * 1e3:9.3f} ms')
        print(f'    guest-visible TB advance across the stop:          '
              f'{res.tb_advance_s * 1e3:9.3f} ms')
        print(f'    TB advance minus stop-to-start:                    '
              f'{res.gap_error_s * 1e3:+9.3f} ms')
        print(f'    TB error against host realtime (TB lost(-)/gained(+) '
              f'across the migration, NTP-style): '
              f'{res.error_s * 1e3:+.3f} ms')
        print(f'    backwards TB steps seen by the probe:              '
              f'{res.backwards}')
        print(f'    downtime reported by QEMU:                         '
              f'{res.downtime_ms} ms')
        print(f'    probe summaries after resume: {len(sums)}, last TB '
              f'{sums[-1].fields["tb"]:#x}')
        print(f'    consoles and QEMU logs: {log_dir}')
        dst.shutdown()
        return 0 if res.backwards == 0 else 1
    finally:
        rig.cleanup()


if __name__ == '__main__':
    sys.exit(main())
