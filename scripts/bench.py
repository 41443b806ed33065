#!/usr/bin/env python3
# `make bench`: guest-visible TB error across live migration, stock QEMU
# versus the fork, measured in the same run (alternating A/B), for forced
# stops of 0, 0.5 and 2 s. Not a test: it measures and reports.
#
# Writes a markdown table (and a PNG plot when matplotlib is available).
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument('--fork', required=True)
    ap.add_argument('--stock', default='/usr/bin/qemu-system-ppc64')
    ap.add_argument('--guest', required=True)
    ap.add_argument('--qemu-python', required=True)
    ap.add_argument('-n', type=int, default=20, help='migrations per config')
    ap.add_argument('--stops', default='0,0.5,2')
    ap.add_argument('--load-n', type=int, default=3,
                    help='migrations per config of the load part (0: none)')
    ap.add_argument('--load-sizes', default='512M,2G,8G')
    ap.add_argument('--out', default='build/bench')
    args = ap.parse_args()

    top = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path[:0] = [args.qemu_python, os.path.join(top, 'tests', 'functional')]
    # pylint: disable-next=import-outside-toplevel
    from tbfork import MigrationMode, TBMigrationRig

    impls = {'stock 10.0.2': args.stock, 'fork': args.fork}
    stops = [float(x) for x in args.stops.split(',')]
    results = {(i, s): [] for i in impls for s in stops}
    os.makedirs(args.out, exist_ok=True)
    log_root = tempfile.mkdtemp(prefix='tbfork-bench-')
    total = args.n * len(stops) * len(impls)
    done = 0
    for r in range(args.n):
        for stop in stops:
            for name, binary in impls.items():
                # Stock 10.0.2 lacks the icp/server section of later
                # 10.0.x; XIVE only keeps both comparable.
                rig = TBMigrationRig(binary, args.guest,
                                     os.path.join(log_root, f'{r}-{stop}'),
                                     machine_opts='ic-mode=xive')
                try:
                    src, reader = rig.start_source()
                    dst, _, res = rig.migrate(src, reader, stop,
                                              settle_s=0.2)
                    dst.shutdown()
                finally:
                    rig.cleanup()
                results[(name, stop)].append(res)
                done += 1
                print(f'[{done}/{total}] {name:12s} stop {stop:.1f}s: '
                      f'error {res.error_s * 1e3:+9.3f} ms, gap-error '
                      f'{res.gap_error_s * 1e3:+9.3f} ms, downtime '
                      f'{res.downtime_ms} ms, backwards {res.backwards}',
                      flush=True)

    # The load part: no forced stop, a guest dirtying memory, QEMU's
    # default downtime limit (300 ms), precopy and postcopy.
    sizes = [x for x in args.load_sizes.split(',') if x] if args.load_n else []
    modes = {'precopy': MigrationMode(params={'max-bandwidth': 1 << 30}),
             'postcopy': MigrationMode(caps=['postcopy-ram'], postcopy=True,
                                       params={'max-bandwidth': 1 << 30})}
    load = {(i, z, m): [] for i in impls for z in sizes for m in modes}
    total = args.load_n * len(load)
    done = 0
    for r in range(args.load_n):
        for size in sizes:
            for mname, mode in modes.items():
                for name, binary in impls.items():
                    rig = TBMigrationRig(binary, args.guest,
                                         os.path.join(log_root, f'load-{r}'),
                                         machine_opts='ic-mode=xive',
                                         mem=size, probe_opts='i=100,t=5000,'
                                         'm=16')
                    try:
                        src, reader = rig.start_source()
                        dst, _, res = rig.migrate(src, reader, None,
                                                  settle_s=0.2, mode=mode)
                        dst.shutdown()
                    finally:
                        rig.cleanup()
                    load[(name, size, mname)].append(res)
                    done += 1
                    print(f'[load {done}/{total}] {name:12s} {size:>4s} '
                          f'{mname:8s}: error {res.error_s * 1e3:+9.3f} ms, '
                          f'downtime {res.downtime_ms} ms, backwards '
                          f'{res.backwards}', flush=True)

    now = datetime.datetime.now(datetime.timezone.utc)
    lines = [
        f'Measured {now:%Y-%m-%d %H:%M} UTC on {platform.node()} '
        f'({os.cpu_count()} cores, {platform.machine()}), TCG, '
        f'{args.n} migrations per row, alternating stock/fork.',
        '',
        '| QEMU | forced stop | median \\|error\\| | p95 \\|error\\| | '
        'max \\|error\\| | median gap-error | backwards steps | '
        'median downtime | added downtime vs stock |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for stop in stops:
        stock_dt = statistics.median(
            r.downtime_ms for r in results[('stock 10.0.2', stop)])
        for name in impls:
            rs = results[(name, stop)]
            err = [abs(r.error_s) * 1e3 for r in rs]
            gap = statistics.median(r.gap_error_s * 1e3 for r in rs)
            dt = statistics.median(r.downtime_ms for r in rs)
            lines.append(
                f'| {name} | {stop:.1f} s | {statistics.median(err):.3f} ms '
                f'| {pct(err, 0.95):.3f} ms | {max(err):.3f} ms '
                f'| {gap:+.3f} ms | {sum(r.backwards for r in rs)} '
                f'| {dt:.0f} ms | {dt - stock_dt:+.0f} ms |')
    lines += ['', '*error*: TB gain(+)/loss(-) against host realtime across '
              'the migration (NTP-style); *gap-error*: the probe\'s largest '
              'TB gap around the switch minus the QMP STOP-to-RESUME time.']
    if load:
        lines += ['', f'Under load (no forced stop; the guest rewrites 16 MiB '
                  f'continuously; downtime limit 300 ms, bandwidth 1 GiB/s), '
                  f'{args.load_n} migrations per row:', '',
                  '| QEMU | guest RAM | mode | median \\|error\\| | '
                  'max \\|error\\| | median downtime | backwards steps |',
                  '|---|---|---|---|---|---|---|']
        for size in sizes:
            for mname in modes:
                for name in impls:
                    rs = load[(name, size, mname)]
                    err = [abs(r.error_s) * 1e3 for r in rs]
                    dt = statistics.median(r.downtime_ms for r in rs)
                    lines.append(
                        f'| {name} | {size} | {mname} '
                        f'| {statistics.median(err):.3f} ms '
                        f'| {max(err):.3f} ms | {dt:.0f} ms '
                        f'| {sum(r.backwards for r in rs)} |')
    table = '\n'.join(lines) + '\n'
    with open(os.path.join(args.out, 'bench.md'), 'w') as f:
        f.write(table)
    print(table)

    try:
        import matplotlib   # pylint: disable=import-outside-toplevel
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    except ImportError:
        print('matplotlib not installed: no plot')
        return 0
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, marker in zip(impls, 'ox'):
        xs, ys = [], []
        for stop in stops:
            for r in results[(name, stop)]:
                xs.append(r.stop_to_start_s)
                ys.append(r.error_s * 1e3)
        ax.scatter(xs, ys, marker=marker, label=name)
    ax.set_xlabel('stop-to-start time (s)')
    ax.set_ylabel('guest TB error vs host realtime (ms)')
    ax.axhline(0, color='grey', lw=0.5)
    ax.legend()
    ax.set_title(f'TB error across live migration (TCG), {now:%Y-%m-%d}')
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, 'bench.png'), dpi=100)
    print(f'plot: {os.path.join(args.out, "bench.png")}')
    if load:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, marker in zip(impls, 'ox'):
            xs = [r.downtime_ms for k, rs in load.items() if k[0] == name
                  for r in rs]
            ys = [r.error_s * 1e3 for k, rs in load.items() if k[0] == name
                  for r in rs]
            ax.scatter(xs, ys, marker=marker, label=name)
        ax.set_xlabel('downtime reported by QEMU (ms)')
        ax.set_ylabel('guest TB error vs host realtime (ms)')
        ax.axhline(0, color='grey', lw=0.5)
        ax.legend()
        ax.set_title('TB error under load, no forced stop (TCG), '
                     f'{now:%Y-%m-%d}')
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, 'bench-load.png'), dpi=100)
        print(f'plot: {os.path.join(args.out, "bench-load.png")}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
