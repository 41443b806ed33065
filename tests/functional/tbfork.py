# Helpers for the timebase (TB) migration tests, demo and benchmark.
#
# Drives pseries guests that run the TB probe (tests/guest/tbprobe.c)
# through QEMU's own python/qemu QEMUMachine and QMP, live-migrates them
# between two QEMU processes with a forced stop (pause-before-switchover)
# and measures what the guest saw: the TB advance across the stop versus
# the stop-to-start time from the QMP events (STOP on the source, RESUME
# on the destination).
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from qemu.machine import QEMUMachine

PROBE_RE = re.compile(r'TBP (\w+)((?: \w+=-?\d+)*)')
# Probe lines that report a failure: counted even when a kernel message
# broke into them on the console. Every other line is a sample, taken
# only whole (one cut short, or with a number cut, is not a sample).
FAILURE_KINDS = ('back', 'skew')


@dataclass
class ProbeLine:
    host_time: float        # time.time() when the line was received
    kind: str               # start, sum, jump, back, skew, wake
    fields: Dict[str, int]


class LineReader:
    """Reads a socket line by line in a thread, optionally logging.

    Subclasses see each line in _on_line, called with self.cond held.
    """

    def __init__(self, sock: socket.socket, log_path: Optional[str] = None):
        self.sock = sock
        self.text: List[str] = []
        self.cond = threading.Condition()
        self._log = open(log_path, 'w', encoding='utf-8') if log_path else None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _on_line(self, now: float, line: str) -> None:
        pass

    def _run(self) -> None:
        buf = b''
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                break
            if not data:
                break
            now = time.time()
            buf += data
            while b'\n' in buf:
                raw, buf = buf.split(b'\n', 1)
                line = raw.decode('utf-8', 'replace').strip('\r')
                if self._log:
                    self._log.write(f'{now:.6f} {line}\n')
                    self._log.flush()
                with self.cond:
                    self.text.append(line)
                    self._on_line(now, line)
                    self.cond.notify_all()


class ProbeReader(LineReader):
    """Reads a guest console socket in a thread and parses TBP lines."""

    def __init__(self, sock: socket.socket, log_path: Optional[str] = None):
        self.lines: List[ProbeLine] = []
        super().__init__(sock, log_path)

    def _on_line(self, now: float, line: str) -> None:
        m = PROBE_RE.search(line)
        if m and (not line[m.end():].strip() or
                  m.group(1) in FAILURE_KINDS):
            fields = {k: int(v) for k, v in
                      re.findall(r'(\w+)=(-?\d+)', m.group(2))}
            self.lines.append(ProbeLine(now, m.group(1), fields))

    def of_kind(self, kind: str) -> List[ProbeLine]:
        with self.cond:
            return [p for p in self.lines if p.kind == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 60.0,
                 pred=None) -> List[ProbeLine]:
        """Wait until `count` lines of `kind` (matching pred) arrived."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = [p for p in self.lines if p.kind == kind and
                       (pred is None or pred(p))]
                if len(got) >= count:
                    return got
                left = deadline - time.time()
                if left <= 0:
                    tail = '\n'.join(self.text[-20:])
                    raise TimeoutError(f'no {count} TBP {kind} lines in '
                                       f'{timeout}s; console tail:\n{tail}')
                self.cond.wait(left)


def event_time(event: dict) -> float:
    ts = event['timestamp']
    return ts['seconds'] + ts['microseconds'] / 1e6


def guest_lag(lines: List[ProbeLine], freq: int) -> Optional[float]:
    """Host receive time minus guest TB time, lowest over `lines`.

    Each line's receive time is its TB time plus a positive console
    latency, so the minimum estimates the TB's offset from host realtime
    (NTP-style). A TB that loses L seconds raises this by L.
    """
    lags = [p.host_time - p.fields['tb'] / freq for p in lines]
    return min(lags) if lags else None


@dataclass
class MigrationResult:
    stop_s: float              # requested extra stop
    stop_to_start_s: float     # RESUME(dst).ts - STOP(src).ts
    tb_advance_s: float        # guest-visible TB advance across the stop
    gap_error_s: float         # tb_advance - stop_to_start
    error_s: float             # TB error against host realtime (NTP-style)
    backwards: int             # backwards steps seen by the probe
    downtime_ms: Optional[int]  # as reported by query-migrate
    tb_freq: int
    extra: Dict[str, object] = field(default_factory=dict)


def sleeps_across_stop(readers: List[ProbeReader], freq: int
                       ) -> (int, float, float):
    """The probe sleepers whose deadline fell in the migration's stop.

    The stop is the spinning probe's largest TB jump. Returns how many
    sleeps were due inside it, how far into the stop the latest deadline
    was (s), and how long after the first TB read after resume the last
    of them woke (s; negative: before the spinner ran again).
    """
    jumps = [p for r in readers for p in r.of_kind('jump')]
    stop = max(jumps, key=lambda p: p.fields['gap']).fields
    wakes = [p.fields for r in readers for p in r.of_kind('wake')
             if stop['from'] < p.fields['due'] < stop['to']]
    if not wakes:
        return 0, 0.0, 0.0
    into = max(w['due'] - stop['from'] for w in wakes) / freq
    after = max(w['woke'] - stop['to'] for w in wakes) / freq
    return len(wakes), into, after


def measure_migration(src_reader: ProbeReader, dst_reader: ProbeReader,
                      before: List[ProbeLine], stop: dict, resume: dict,
                      freq: int, stop_s: float, downtime_ms: Optional[int],
                      lag_samples: int, settle_s: float = 1.0
                      ) -> MigrationResult:
    """What the guest saw across one migration, from its probe lines.

    before: the source's summary lines up to the migration; stop and
    resume: the source's STOP and the destination's RESUME events.
    """
    # The last seq each vCPU's probe printed on the source (lines of
    # the last RAM passes included). With several vCPUs (tbprobe -a)
    # follow the first one whose probe reports after the switch.
    last_seq: Dict[int, int] = {}
    for p in src_reader.of_kind('sum'):
        last_seq[p.fields['cpu']] = max(p.fields['seq'],
                                        last_seq.get(p.fields['cpu'], -1))

    def new(p):
        return p.fields['seq'] > last_seq.get(p.fields['cpu'], -1)

    cpu = dst_reader.wait_for('sum', timeout=60, pred=new)[0].fields['cpu']
    after = dst_reader.wait_for(
        'sum', count=2, timeout=60,
        pred=lambda p: p.fields['cpu'] == cpu and new(p))
    # The window holding the stop is the first one the source did not
    # print, or the next one if that line was still in the guest's
    # console buffer at the stop (the destination then prints it).
    crossing = max(after[:2], key=lambda p: p.fields['maxgap'])
    # Steady-state lines after the switch, for the NTP-style estimate.
    settled = time.time() + 0.3
    post = dst_reader.wait_for('sum', count=lag_samples, timeout=60,
                               pred=lambda p: p.host_time > settled and
                               p.fields['cpu'] == cpu)
    time.sleep(settle_s)
    stop_to_start = event_time(resume) - event_time(stop)
    tb_adv = crossing.fields['maxgap'] / freq
    lag_pre = guest_lag(before[-lag_samples:], freq)
    lag_post = guest_lag(post[:lag_samples], freq)
    backwards = sum(len(r.of_kind('back')) for r in
                    (src_reader, dst_reader))
    return MigrationResult(
        stop_s=stop_s, stop_to_start_s=stop_to_start,
        tb_advance_s=tb_adv, gap_error_s=tb_adv - stop_to_start,
        error_s=lag_pre - lag_post,
        backwards=backwards, downtime_ms=downtime_ms,
        tb_freq=freq)


class TBMigrationRig:
    """Source and destination QEMUs running one probe guest."""

    def __init__(self, qemu_bin: str, guest_dir: str, log_dir: str,
                 machine: str = 'pseries', machine_opts: str = '',
                 smp: int = 1, mem: str = '256M',
                 probe_opts: str = 'i=100,t=5000',
                 dst_qemu_bin: Optional[str] = None,
                 src_machine_opts: Optional[str] = None,
                 dst_machine_opts: Optional[str] = None):
        self.qemu_bin = qemu_bin
        self.dst_qemu_bin = dst_qemu_bin or qemu_bin
        self.guest_dir = guest_dir
        self.log_dir = log_dir
        self.machine = machine
        self.src_machine_opts = (src_machine_opts if src_machine_opts
                                 is not None else machine_opts)
        self.dst_machine_opts = (dst_machine_opts if dst_machine_opts
                                 is not None else machine_opts)
        self.smp = smp
        self.mem = mem
        self.probe_opts = probe_opts
        self.hop = 0
        # Probe summaries used on each side for the NTP-style estimate.
        self.lag_samples = 15
        self.vms: List[QEMUMachine] = []
        self.extra_args: List[str] = []     # added to every QEMU
        os.makedirs(log_dir, exist_ok=True)
        self.sock_dir = tempfile.mkdtemp(prefix='tbfork-')

    def _machine_arg(self, opts: str) -> str:
        # x-vof: QEMU's small built-in firmware boots the kernel directly.
        arg = f'{self.machine},x-vof=on'
        return f'{arg},{opts}' if opts else arg

    def new_vm(self, name: str, binary: str, machine_opts: str,
               incoming: Optional[str] = None) -> QEMUMachine:
        vm = QEMUMachine(binary, name=name, base_temp_dir=self.sock_dir,
                         log_dir=self.log_dir)
        vm.set_console()
        vm.add_args('-M', self._machine_arg(machine_opts),
                    '-cpu', 'power9', '-smp', str(self.smp), '-m', self.mem,
                    '-accel', 'tcg', '-nodefaults', '-display', 'none',
                    '-L', '/usr/share/qemu',
                    '-kernel', os.path.join(self.guest_dir, 'vmlinux'),
                    '-initrd', os.path.join(self.guest_dir,
                                            'guest-initrd.gz'),
                    '-append', f'console=hvc0 quiet tbp={self.probe_opts}')
        vm.add_args(*self.extra_args)
        if incoming:
            vm.add_args('-incoming', incoming)
        self.vms.append(vm)
        return vm

    def start_source(self) -> (QEMUMachine, ProbeReader):
        vm = self.new_vm('src', self.qemu_bin, self.src_machine_opts)
        vm.launch()
        reader = ProbeReader(vm.console_socket,
                             os.path.join(self.log_dir, 'console-src.log'))
        self.freq = reader.wait_for('start', timeout=120)[0].fields['freq']
        # Let boot settle, then collect steady-state summaries.
        first = reader.wait_for('sum', timeout=60)[0]
        reader.wait_for('sum', count=self.lag_samples, timeout=60,
                        pred=lambda p: p.host_time > first.host_time + 0.5)
        return vm, reader

    def start_destination(self, dst_bin: Optional[str] = None,
                          dst_opts: Optional[str] = None,
                          return_path: bool = False, autostart: bool = True,
                          mode: Optional['MigrationMode'] = None
                          ) -> (QEMUMachine, ProbeReader, int):
        self.hop += 1
        port = free_port()
        dst = self.new_vm(f'dst{self.hop}', dst_bin or self.dst_qemu_bin,
                          self.dst_machine_opts if dst_opts is None
                          else dst_opts, incoming='defer')
        if not autostart:
            dst.add_args('-S')
        dst.launch()
        dst_reader = ProbeReader(dst.console_socket,
                                 os.path.join(self.log_dir,
                                              f'console-dst{self.hop}.log'))
        mode = mode or MigrationMode()
        dst.cmd('migrate-set-capabilities',
                capabilities=mode.caps_arg(return_path))
        if mode.dst_params:
            dst.cmd('migrate-set-parameters', **mode.dst_params)
        dst.cmd('migrate-incoming', uri=f'tcp:127.0.0.1:{port}')
        return dst, dst_reader, port

    def start_migration(self, src: QEMUMachine, port: int,
                        return_path: bool = False,
                        mode: Optional['MigrationMode'] = None,
                        pause: bool = True) -> None:
        """Start migrating src to port; with pause, it stops in
        pre-switchover."""
        mode = mode or MigrationMode()
        src.cmd('migrate-set-capabilities', capabilities=mode.caps_arg(
            return_path, ['pause-before-switchover'] if pause else []))
        src.cmd('migrate-set-parameters', **{'max-bandwidth': 10 << 30,
                                             'downtime-limit': 300,
                                             **mode.params})
        src.cmd('migrate', uri=f'tcp:127.0.0.1:{port}')
        if mode.postcopy:
            src.cmd('migrate-start-postcopy')
        if pause:
            src.event_wait('MIGRATION', timeout=120,
                           match={'data': {'status': 'pre-switchover'}})

    def migrate(self, src: QEMUMachine, src_reader: ProbeReader,
                stop_s: float, dst_bin: Optional[str] = None,
                dst_opts: Optional[str] = None,
                settle_s: float = 1.0,
                dst_hold_s: Optional[float] = None,
                mode: Optional['MigrationMode'] = None,
                during_postcopy=None
                ) -> (QEMUMachine, ProbeReader, MigrationResult):
        """Migrate src to a new destination with a forced stop.

        With dst_hold_s, the destination starts with -S and is only
        continued that long after the migration completed (as a
        management layer does), which adds to the stop. stop_s None:
        no forced stop (no pause-before-switchover). mode: the
        capabilities and parameters of the migration (precopy by
        default); during_postcopy(src, dst) runs once the destination
        runs and postcopy is still active.
        """
        dst, dst_reader, port = self.start_destination(
            dst_bin, dst_opts, autostart=dst_hold_s is None, mode=mode)
        before = src_reader.of_kind('sum')
        self.start_migration(src, port, mode=mode, pause=stop_s is not None)
        if stop_s is not None:
            time.sleep(stop_s)
            src.cmd('migrate-continue', state='pre-switchover')
        if dst_hold_s is not None:
            dst.event_wait('MIGRATION', timeout=120,
                           match={'data': {'status': 'completed'}})
            time.sleep(dst_hold_s)
            dst.cmd('cont')
        resume = wait_resume_or_failure(src, dst, timeout=600)
        stop = src.event_wait('STOP', timeout=10)
        if during_postcopy:
            during_postcopy(src, dst)
        src.event_wait('MIGRATION', timeout=600,
                       match={'data': {'status': 'completed'}})
        info = src.cmd('query-migrate')
        result = measure_migration(src_reader, dst_reader, before, stop,
                                   resume, self.freq, stop_s or 0.0,
                                   info.get('downtime'), self.lag_samples,
                                   settle_s)
        result.extra['status'] = info.get('status')
        src.shutdown()
        return dst, dst_reader, result

    def restore_from_file(self, path: str, mode: Optional['MigrationMode']
                          = None, resume: bool = True
                          ) -> (QEMUMachine, ProbeReader, Optional[dict]):
        """A new QEMU loading a migration file; its RESUME event (resume
        False: a paused VM's state, loaded and left paused; None)."""
        mode = mode or MigrationMode()
        self.hop += 1
        dst = self.new_vm(f'dst{self.hop}', self.dst_qemu_bin,
                          self.dst_machine_opts, incoming='defer')
        dst.launch()
        reader = ProbeReader(dst.console_socket, os.path.join(
            self.log_dir, f'console-dst{self.hop}.log'))
        dst.cmd('migrate-set-capabilities', capabilities=mode.caps_arg())
        if mode.dst_params:
            dst.cmd('migrate-set-parameters', **mode.dst_params)
        dst.cmd('migrate-incoming', uri=f'file:{path}')
        if not resume:
            dst.event_wait('MIGRATION', timeout=120,
                           match={'data': {'status': 'completed'}})
            return dst, reader, None
        return dst, reader, dst.event_wait('RESUME', timeout=120)

    def migrate_via_file(self, src: QEMUMachine, src_reader: ProbeReader,
                         path: str, gap_s: float,
                         mode: Optional['MigrationMode'] = None
                         ) -> (QEMUMachine, ProbeReader, MigrationResult):
        """Migrate src to a file (as `virsh save`), restore it gap_s
        after the source quit in a new QEMU (as `virsh restore`)."""
        mode = mode or MigrationMode()
        before = src_reader.of_kind('sum')
        src.cmd('migrate-set-capabilities', capabilities=mode.caps_arg())
        if mode.params:
            src.cmd('migrate-set-parameters', **mode.params)
        src.cmd('migrate', uri=f'file:{path}')
        stop = src.event_wait('STOP', timeout=60)
        src.event_wait('MIGRATION', timeout=120,
                       match={'data': {'status': 'completed'}})
        src.shutdown()
        time.sleep(gap_s)
        dst, dst_reader, resume = self.restore_from_file(path, mode)
        result = measure_migration(src_reader, dst_reader, before, stop,
                                   resume, self.freq, gap_s, None,
                                   self.lag_samples)
        return dst, dst_reader, result

    def cleanup(self) -> None:
        for vm in self.vms:
            try:
                vm.shutdown(hard=True)
            except Exception:   # pylint: disable=broad-except
                pass


@dataclass
class MigrationMode:
    """Capabilities and parameters of one migration mode."""
    caps: List[str] = field(default_factory=list)
    params: Dict[str, object] = field(default_factory=dict)
    # parameters the destination needs too (multifd channels, ...)
    dst_params: Dict[str, object] = field(default_factory=dict)
    postcopy: bool = False

    def caps_arg(self, return_path: bool = False,
                 extra: Optional[List[str]] = None) -> List[dict]:
        names = ['events'] + self.caps + (extra or [])
        if return_path:
            names.append('return-path')
        return [{'capability': c, 'state': True} for c in names]


class MigrationFailed(Exception):
    pass


def wait_resume_or_failure(src: QEMUMachine, dst: QEMUMachine,
                           timeout: float = 120.0) -> dict:
    """The destination's RESUME event, or MigrationFailed with its log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            return dst.event_wait('RESUME', timeout=0.2)
        except Exception:   # pylint: disable=broad-except
            pass            # timeout, or the destination is gone
        try:
            src.event_wait('MIGRATION', timeout=0.2,
                           match={'data': {'status': 'failed'}})
        except Exception:   # pylint: disable=broad-except
            if dst.is_running():
                continue
        # Let a failing destination report and exit by itself.
        end = time.time() + 10
        while dst.is_running() and time.time() < end:
            time.sleep(0.1)
        dst.shutdown(hard=True)
        raise MigrationFailed(dst.get_log() or '')
    raise MigrationFailed(f'no RESUME in {timeout}s')


class StreamCorrupter:
    """A TCP proxy between source and destination that rewrites the
    timebase/sync subsection of the migration stream in transit.

    mode: 'flags' (an unknown flag bit), 'floor' (a floor of 0, below
    guest_timebase) or 'truncate' (cut the stream inside the subsection).
    """

    NAME = b'timebase/sync'
    # After the name: section version_id (4), then the fields.
    OFFSETS = {'flags': 4, 'floor': 4 + 4}

    def __init__(self, dst_port: int, mode: str):
        self.dst_port = dst_port
        self.mode = mode
        self.hit = False
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        src, _ = self.listener.accept()
        dst = socket.create_connection(('127.0.0.1', self.dst_port))
        threading.Thread(target=self._pipe, args=(dst, src),
                         daemon=True).start()   # return path
        self._forward(src, dst)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        _half_close(a, b)

    def _forward(self, src: socket.socket, dst: socket.socket) -> None:
        buf = bytearray()
        keep = len(self.NAME) + 64
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                i = buf.find(self.NAME) if not self.hit else -1
                if i >= 0 and len(buf) >= i + len(self.NAME) + 64:
                    self.hit = True
                    at = i + len(self.NAME)
                    if self.mode == 'truncate':
                        dst.sendall(bytes(buf[:at + 10]))
                        # shutdown, not just close: the return-path
                        # thread blocked in recv() keeps the fd alive.
                        for sock in (dst, src):
                            sock.shutdown(socket.SHUT_RDWR)
                        return
                    off = at + self.OFFSETS[self.mode]
                    if self.mode == 'flags':
                        flags = int.from_bytes(buf[off:off + 4], 'big')
                        buf[off:off + 4] = (flags | 1 << 31).to_bytes(
                            4, 'big')
                    else:
                        buf[off:off + 8] = bytes(8)
                if self.hit or len(buf) > keep:
                    n = len(buf) if self.hit else len(buf) - keep
                    dst.sendall(bytes(buf[:n]))
                    del buf[:n]
            dst.sendall(bytes(buf))
        except OSError:
            pass
        _half_close(src, dst)


def _half_close(*socks: socket.socket) -> None:
    """Pass end-of-stream on; the sockets may already be closed."""
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]
