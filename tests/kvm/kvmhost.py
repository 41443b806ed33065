# KVM-HV harness: emulated POWER hosts (powernv under TCG, the fork as
# the outer emulator) running Debian's kernel with kvm-hv, and inner
# QEMUs with KVM guests inside them, driven from outside through QEMU's
# own QMP library.
#
# Each host gets a virtio-serial controller whose ports come out as
# unix sockets here: "ctl" (a line-oriented shell served by
# tests/kvm/host-init) and, per inner QEMU slot, "qmp.SLOT" (its QMP
# monitor, a pipe chardev on the port inside the host) and "con.SLOT"
# (its guest console, where the TB probe reports).
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import os
import re
import select
import shutil
import socket
import tempfile
import time
from typing import List, Optional, Tuple

from qemu.machine import QEMUMachine
from qemu.qmp.legacy import QEMUMonitorProtocol

from tbfork import LineReader, ProbeReader

# What the fork's KVM path needs from an inner pseries guest on an
# emulated POWER9 (the security capabilities TCG's powernv does not
# offer are turned off).
INNER_MACHINE = ('pseries,x-vof=on,accel=kvm,cap-cfpc=broken,'
                 'cap-sbbc=broken,cap-ibs=broken,cap-ccf-assist=off')
SLOTS = ('a', 'b', 'c', 'd', 'e')
# What an inner QEMU may take to answer QMP once its monitor greeted, and
# any QMP command: a QEMU that exits after its greeting (a machine it
# cannot start) leaves the port open and would be waited for forever.
QMP_TIMEOUT_S = 300.0


class BoundedQMP(QEMUMonitorProtocol):
    """QEMU's legacy QMP client with a deadline on its negotiation."""

    def connect_within(self, timeout: float) -> None:
        # what legacy.py's accept() does, with a timeout
        # pylint: disable=protected-access
        self._qmp.await_greeting = True
        self._qmp.negotiate = True
        self._sync(self._qmp.connect(self._address), timeout)


class HostError(Exception):
    pass


class LineChannel(LineReader):
    """A unix socket read line by line: wait for lines, send some."""

    def __init__(self, sock: socket.socket, log_path: Optional[str] = None):
        self.lines: List[Tuple[float, str]] = []
        super().__init__(sock, log_path)

    def _on_line(self, now: float, line: str) -> None:
        self.lines.append((now, line))

    def wait_line(self, pattern: str, timeout: float, start: int = 0
                  ) -> Tuple[int, re.Match]:
        """Index and match of the first line from `start` matching."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        with self.cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i][1])
                    if m:
                        return i, m
                    i += 1
                left = deadline - time.time()
                if left <= 0:
                    tail = '\n'.join(t for _, t in self.lines[-15:])
                    raise TimeoutError(f'no line matching {pattern!r} in '
                                       f'{timeout}s; tail:\n{tail}')
                self.cond.wait(left)

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class InnerVM:
    """An inner QEMU in a host slot: its QMP client and probe reader."""

    def __init__(self, host: 'KvmHost', slot: str, qmp: QEMUMonitorProtocol,
                 reader: ProbeReader, con: socket.socket):
        self.host = host
        self.slot = slot
        self.qmp = qmp
        self.reader = reader
        self._con = con
        self.events: List[dict] = []

    def cmd(self, name: str, **args):
        return self.qmp.cmd(name, **args)

    def hmp(self, line: str) -> str:
        return self.qmp.cmd('human-monitor-command', **{'command-line': line})

    def clear_events(self) -> None:
        """Forget every event received so far."""
        while self.qmp.pull_event(wait=False) is not None:
            pass
        self.events = []

    def event_wait(self, name: str, timeout: float, match=None) -> dict:
        """The first event `name` (with data matching) not yet taken.

        Events of other kinds are kept for later waits.
        """
        def matches(ev):
            return ev['event'] == name and not (
                match and any(ev.get('data', {}).get(k) != v
                              for k, v in match.items()))
        deadline = time.time() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if matches(ev):
                    return self.events.pop(i)
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f'{self.host.name}/{self.slot}: no {name} '
                                   f'event in {timeout}s')
            try:
                self.events.append(self.qmp.pull_event(wait=min(left, 1.0)))
            except TimeoutError:
                pass

    def stderr(self) -> str:
        return self.host.sh(f'cat /tmp/{self.slot}.err', check=False)[1]

    def close(self) -> None:
        try:
            self.qmp.close()
        except Exception:   # pylint: disable=broad-except
            pass
        try:
            self._con.close()
        except OSError:
            pass


class KvmHost:
    """One emulated POWER host running the harness init."""

    def __init__(self, name: str, outer_qemu: str, kernel: str, initrd: str,
                 workdir: str, machine: str = 'powernv9', cpu: str = 'power9',
                 kvmhv: bool = True, mem: str = '4G',
                 netdev: Optional[str] = None, mac: Optional[str] = None,
                 inner_opts: str = ''):
        self.name = name
        # Machine options every inner QEMU of this host needs (a 4 KiB
        # page host kernel: cap-hpt-max-page-size=4k).
        self.inner_opts = inner_opts
        self.workdir = os.path.join(workdir, name)
        os.makedirs(self.workdir, exist_ok=True)
        # Each PHB root port takes one device: the serial ports on the
        # first, the network on the second.
        # Short (unix socket paths are limited) and fresh per host.
        self.sockdir = tempfile.mkdtemp(prefix=f'tbkvm-{name}-')
        self.vm = QEMUMachine(outer_qemu, name=f'host-{name}',
                              base_temp_dir=self.sockdir,
                              log_dir=self.workdir)
        self.vm.set_console()
        # powernv: a root port per PHB; pseries (an L1 running nested
        # KVM-HV under TCG): the one PHB.
        pseries = machine.startswith('pseries')
        bus = 'pci.0' if pseries else 'pcie.0'
        append = 'console=hvc0 quiet'
        if not kvmhv:
            append += ' tbfork.kvmhv=0'
        self.vm.add_args('-M', machine, '-cpu', cpu, '-m', mem, '-smp', '1',
                         '-L', '/usr/share/qemu', '-kernel', kernel,
                         '-initrd', initrd, '-append', append,
                         '-device', f'virtio-serial-pci,id=vs,bus={bus}')
        self.ports = ['ctl', 'clk'] + [f'{k}.{s}' for s in SLOTS
                                for k in ('qmp', 'con')]
        for i, port in enumerate(self.ports):
            path = self.port_path(port)
            self.vm.add_args('-chardev', f'socket,id=p{i},path={path},'
                             'server=on,wait=off',
                             '-device', f'virtserialport,bus=vs.0,'
                             f'chardev=p{i},name={port}')
        if netdev:
            self.vm.add_args('-netdev', f'socket,id=n0,{netdev}',
                             '-device', f'virtio-net-pci,netdev=n0,mac={mac},'
                             f"bus={'pci.0' if pseries else 'pcie.1'},"
                             'romfile=')
        self.console: Optional[LineChannel] = None
        self.ctl: Optional[LineChannel] = None
        self.inner: List[InnerVM] = []
        self.boot_s = 0.0
        self.launched_at = 0.0

    def port_path(self, port: str) -> str:
        return os.path.join(self.sockdir, f'{port}.sock')

    def connect_port(self, port: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.port_path(port))
        return sock

    def launch(self, timeout: float = 300) -> None:
        t0 = self.launched_at = time.time()
        self.vm.launch()
        self.console = LineChannel(self.vm.console_socket,
                                   os.path.join(self.workdir, 'console.log'))
        self.ctl = LineChannel(self.connect_port('ctl'),
                               os.path.join(self.workdir, 'ctl.log'))
        try:
            self.console.wait_line(r'KVMHOST ready', timeout)
        except TimeoutError as e:
            raise HostError(f'host {self.name} did not come up: {e}') from e
        self.boot_s = time.time() - t0

    def start_clock(self) -> None:
        """Serve the host's realtime on its "clk" port (clockstep)."""
        self.sh('. /bin/hostlib; clockstep serve $(port clk) '
                '> /tmp/clk.err 2>&1 &')
        self._clk = self.connect_port('clk')
        self._clk.settimeout(10)

    def clock_offset(self, tries: int = 20) -> Tuple[float, float]:
        """Host realtime minus ours (s), and its bound (half the RTT)."""
        best = None
        for _ in range(tries):
            t0 = time.time()
            self._clk.sendall(b'?')
            data = b''
            while not data.endswith(b'\n'):
                data += self._clk.recv(64)
            t1 = time.time()
            off = int(data) / 1e9 - (t0 + t1) / 2
            if best is None or t1 - t0 < 2 * best[1]:
                best = (off, (t1 - t0) / 2)
        return best

    def sync_clock(self) -> Tuple[float, float]:
        """Step the host's realtime onto ours; the residual and bound."""
        off, _ = self.clock_offset()
        self.sh(f'clockstep step {int(round(-off * 1e9))}')
        return self.clock_offset()

    def console_has(self, pattern: str) -> bool:
        with self.console.cond:
            return any(re.search(pattern, t) for _, t in self.console.lines)

    def sh(self, cmd: str, timeout: float = 120, check: bool = True
           ) -> Tuple[int, str]:
        """Run one shell command line in the host: (rc, output)."""
        assert '\n' not in cmd
        start = len(self.ctl.lines)
        self.ctl.send(cmd + '\n')
        i, m = self.ctl.wait_line(r'^KVMHOST rc=(\d+)$', timeout, start)
        rc = int(m.group(1))
        out = '\n'.join(t for _, t in self.ctl.lines[start:i])
        if check and rc:
            raise HostError(f'{self.name}: `{cmd}` exited {rc}: {out}')
        return rc, out

    def start_inner(self, slot: str, binary: str = '/bin/qemu-system-ppc64',
                    machine_opts: str = '', probe_opts: str = 'i=100,t=5000',
                    incoming: bool = False, mem: str = '512',
                    timeout: float = 120, smp: str = '1',
                    initrd: str = '/guest/guest-initrd.gz',
                    append: str = '') -> InnerVM:
        """Start an inner QEMU in `slot`, connected to its QMP monitor.

        initrd: the guest's initramfs, a path in the host (the probe's by
        default); append: more of the guest kernel's command line."""
        con = self.connect_port(f'con.{slot}')
        qsock = self.connect_port(f'qmp.{slot}')
        reader = ProbeReader(con, os.path.join(self.workdir,
                                               f'console-{slot}.log'))
        machine = ','.join(o for o in (INNER_MACHINE, self.inner_opts,
                                       machine_opts) if o)
        args = (f'{binary} -M {machine} -cpu host -m {mem} -smp {smp} '
                f'-display none '
                f'-nodefaults -L /fw -kernel /guest/vmlinux '
                f'-initrd {initrd} '
                f'-append "console=hvc0 quiet tbp={probe_opts} {append}" '
                f'-chardev pipe,id=qmp,path=$(port qmp.{slot}) '
                f'-mon chardev=qmp,mode=control '
                f'-chardev pipe,id=con,path=$(port con.{slot}) '
                f'-serial chardev:con')
        if incoming:
            args += ' -incoming defer'
        self.sh(f'. /bin/hostlib; {args} > /tmp/{slot}.err 2>&1 & '
                f'echo $! > /tmp/{slot}.pid')
        # The QMP greeting only comes once the inner QEMU runs: wait for
        # it to be readable (without taking it), so that a QEMU that
        # fails to start is reported with its stderr instead of leaving
        # the QMP client waiting.
        deadline = time.time() + timeout
        while not select.select([qsock], [], [], 1.0)[0]:
            rc, _ = self.sh(f'kill -0 $(cat /tmp/{slot}.pid)', check=False)
            if rc or time.time() > deadline:
                _, out = self.sh(f'cat /tmp/{slot}.err', check=False)
                qsock.close()
                con.close()
                raise HostError(f'{self.name}/{slot}: inner QEMU did not '
                                f'come up; stderr:\n{out}')
        qmp = BoundedQMP(qsock, nickname=f'{self.name}.{slot}')
        try:
            qmp.connect_within(max(10.0, deadline - time.time()))
        except Exception as e:  # pylint: disable=broad-except
            # asyncio's TimeoutError, or the connection's own error
            _, out = self.sh(f'cat /tmp/{slot}.err', check=False)
            for closing in (qmp, con):
                try:
                    closing.close()
                except Exception:   # pylint: disable=broad-except
                    pass
            raise HostError(f'{self.name}/{slot}: inner QEMU greeted but '
                            f'did not answer QMP ({e!r}); stderr:\n{out}'
                            ) from e
        qmp.settimeout(QMP_TIMEOUT_S)
        vm = InnerVM(self, slot, qmp, reader, con)
        self.inner.append(vm)
        return vm

    def reset(self) -> bool:
        """Kill every inner QEMU, ready for the next test; False if the
        host no longer answers (it is then no use to anyone)."""
        for vm in self.inner:
            vm.close()
        self.inner = []
        try:
            self.sh('for f in /tmp/*.pid; do [ -f "$f" ] || continue; '
                    'p=$(cat "$f"); kill -9 $p 2>/dev/null; '
                    'while kill -0 $p 2>/dev/null; do sleep 0.1; done; '
                    'rm -f "$f"; done', timeout=60)
        except (HostError, TimeoutError, OSError):
            return False
        return True

    def shutdown(self) -> None:
        for vm in self.inner:
            vm.close()
        try:
            self.vm.shutdown(hard=True)
        except Exception:   # pylint: disable=broad-except
            pass
        for ch in (self.ctl, self.console):
            if ch:
                ch.close()
        shutil.rmtree(self.sockdir, ignore_errors=True)
