# The libvirt tier's pieces: a Debian guest as a libvirt domain (the
# installed fork or stock QEMU as its <emulator>), what it reads of its
# clocks, and the measurement around one virsh operation.
#
# Two figures per operation, taken before and after it:
#   - the guest's wall clock (CLOCK_REALTIME) minus the host's, through
#     qemu-guest-agent's guest-get-time (what `virsh domtime` reads; virsh
#     prints whole seconds, so the figure comes from the same agent
#     command, timed in-process: the host time is the middle of the
#     round trip, the tightest of several kept);
#   - the TB probe's NTP-style lag (tbfork.guest_lag) from its summary
#     lines on the console, and every backwards step it reports.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Dict, List, Optional, Tuple
from xml.sax.saxutils import quoteattr

import libvirt
import libvirt_qemu

from lvhosts import LibvirtHost, LibvirtPair, QemuEvents
from tbfork import ProbeReader, guest_lag

WORK = os.environ.get('TBFORK_LIBVIRT_WORKDIR', '/tmp/tbfork-libvirt')
GUEST = os.environ.get('TBFORK_DEBIAN_GUEST', '')
FORK = os.environ.get('TBFORK_LIBVIRT_FORK', '')
STOCK = os.environ.get('TBFORK_STOCK_QEMU', '/usr/bin/qemu-system-ppc64')
RESULTS = os.environ.get('TBFORK_LIBVIRT_RESULTS',
                         os.path.join(WORK, 'results.json'))
FREQ = 512000000
LAG_SAMPLES = 10
EVENTS = ('STOP', 'RESUME', 'PPC_TIMEBASE_ADJUSTED', 'MIGRATION')


def record(name: str, **fields) -> None:
    """Add one scenario's figures to the results file (a JSON list)."""
    try:
        with open(RESULTS, encoding='utf-8') as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = []
    results.append(dict(scenario=name, **fields))
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, 'w', encoding='utf-8') as f:
        json.dump(results, f, indent=1)


def domain_xml(name: str, emulator: str, disk: str,
               qemu_args: Tuple[str, ...] = ()) -> str:
    """A pseries TCG domain as an operator would write it: nothing
    fork-specific, no <qemu:commandline> unless qemu_args."""
    ns, extra = '', ''
    if qemu_args:
        ns = " xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
        extra = ('  <qemu:commandline>\n' +
                 ''.join(f"    <qemu:arg value={quoteattr(a)}/>\n"
                         for a in qemu_args)
                 + '  </qemu:commandline>\n')
    return f'''<domain type='qemu'{ns}>
  <name>{name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='ppc64' machine='pseries-10.0'>hvm</type>
    <kernel>{GUEST}/vmlinux</kernel>
    <initrd>{GUEST}/initrd.img</initrd>
    <cmdline>root=LABEL=root rw console=hvc0 quiet systemd.show_status=0 fsck.mode=skip</cmdline>
  </os>
  <features>
    <cfpc value='broken'/>
    <sbbc value='broken'/>
    <ibs value='broken'/>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>{emulator}</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='{disk}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='usb' model='none'/>
    <serial type='unix'>
      <source mode='bind' path='/var/lib/libvirt/qemu/{name}.console'/>
      <target type='spapr-vio-serial' port='0'/>
    </serial>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <memballoon model='none'/>
  </devices>
{extra}</domain>
'''


class Guest:
    """One Debian domain and where it runs now."""

    def __init__(self, pair: LibvirtPair, name: str, qemu: str,
                 emulator: str, qemu_args: Tuple[str, ...] = ()):
        self.pair = pair
        self.qemu_args = qemu_args
        self.name = name
        self.qemu = qemu            # 'fork' or 'stock'
        self.emulator = emulator
        self.host: LibvirtHost = pair.a
        self.disk = os.path.join(WORK, 'images', f'{name}.qcow2')
        self.readers: List[ProbeReader] = []
        self.reader: Optional[ProbeReader] = None
        self.log_dir = os.path.join(WORK, 'logs')
        self.nconsole = 0

    def other(self) -> LibvirtHost:
        return self.pair.b if self.host is self.pair.a else self.pair.a

    def locate(self) -> LibvirtHost:
        """The host the domain is active on (after a migration that may
        or may not have happened)."""
        for h in self.pair.hosts:
            try:
                if h.conn.lookupByName(self.name).isActive():
                    self.host = h
                    break
            except libvirt.libvirtError:
                pass
        return self.host

    def dom(self, host: Optional[LibvirtHost] = None) -> libvirt.virDomain:
        return (host or self.host).conn.lookupByName(self.name)

    def create_disk(self) -> None:
        os.makedirs(os.path.dirname(self.disk), exist_ok=True)
        if os.path.exists(self.disk):
            os.unlink(self.disk)
        subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', '-F',
                        'qcow2', '-b', os.path.join(GUEST, 'base.qcow2'),
                        self.disk], check=True)

    def define_and_start(self) -> None:
        self.create_disk()
        xml = os.path.join(WORK, f'{self.name}.xml')
        with open(xml, 'w') as f:
            f.write(domain_xml(self.name, self.emulator, self.disk,
                               self.qemu_args))
        self.host.virsh('define', xml)
        self.host.virsh('start', self.name)

    def console_path(self, host: Optional[LibvirtHost] = None) -> str:
        return (host or self.host).path('lib', 'qemu',
                                        f'{self.name}.console')

    def connect_console(self, host: Optional[LibvirtHost] = None,
                        timeout: float = 60.0) -> ProbeReader:
        """Follow the console of the domain's QEMU on `host` (a new
        QEMU: a new socket)."""
        path = self.console_path(host)
        deadline = time.time() + timeout
        while True:
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                break
            except OSError:
                s.close()
                if time.time() > deadline:
                    raise TimeoutError(f'no console socket {path}')
                time.sleep(0.05)
        self.nconsole += 1
        os.makedirs(self.log_dir, exist_ok=True)
        r = ProbeReader(s, os.path.join(
            self.log_dir, f'{self.name}-console-{self.nconsole}.log'))
        self.readers.append(r)
        self.reader = r
        return r

    def wait_booted(self, timeout: float = 300.0) -> float:
        """Until the probe reports and the agent answers; the boot time."""
        t0 = time.time()
        self.reader.wait_for('start', timeout=timeout)
        self.reader.wait_for('sum', count=LAG_SAMPLES + 5,
                             timeout=timeout)
        deadline = t0 + timeout
        while True:
            try:
                self.agent('guest-ping')
                break
            except libvirt.libvirtError:
                if time.time() > deadline:
                    raise
                time.sleep(1)
        return time.time() - t0

    def agent(self, command: str, timeout: int = 10):
        r = libvirt_qemu.qemuAgentCommand(
            self.dom(), json.dumps({'execute': command}), timeout, 0)
        return json.loads(r)['return']

    def clock_offset(self, samples: int = 7) -> Dict[str, float]:
        """Guest CLOCK_REALTIME minus host's, from the agent's
        guest-get-time; the tightest round trip of `samples`."""
        best = None
        for _ in range(samples):
            t0 = time.time()
            g = self.agent('guest-get-time') / 1e9
            t1 = time.time()
            if best is None or t1 - t0 < best[1]:
                best = (g - (t0 + t1) / 2, t1 - t0)
        return {'offset_s': best[0], 'rtt_s': best[1]}

    def tb_lag(self, since: float, timeout: float = 60.0) -> float:
        """The probe's NTP-style lag from LAG_SAMPLES summaries received
        after `since` on the current console."""
        lines = self.reader.wait_for(
            'sum', count=LAG_SAMPLES, timeout=timeout,
            pred=lambda p: p.host_time > since)
        return guest_lag(lines[:LAG_SAMPLES], FREQ)

    def backwards(self, since: float) -> int:
        return sum(1 for r in self.readers for p in r.of_kind('back')
                   if p.host_time >= since)

    def domain_log(self, host: LibvirtHost) -> str:
        try:
            with open(host.path('log', 'qemu', f'{self.name}.log'),
                      errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def info_timebase(self) -> Optional[str]:
        out = self.host.virsh('qemu-monitor-command', self.name, '--hmp',
                              'info timebase')
        # Stock QEMU has no such command (HMP answers in text).
        return None if 'unknown command' in out else out.strip()

    def state(self, host: Optional[LibvirtHost] = None) -> str:
        return self.host.virsh('domstate', self.name).strip() if host is None \
            else host.virsh('domstate', self.name).strip()


class ForcedStop:
    """Hold the destination QEMU for `seconds` once the source's vCPUs
    stop for the switchover (SIGSTOP/SIGCONT): a stop of known length
    inside a migration libvirt drives, as pause-before-switchover gives
    the QMP tests. The guest sees what any slow switchover gives it."""

    def __init__(self, guest: Guest, src_events: QemuEvents,
                 dst: LibvirtHost, seconds: float):
        self.guest, self.dst, self.seconds = guest, dst, seconds
        self.events = src_events
        self.held_at: Optional[float] = None
        self.pid: Optional[int] = None
        src_events.hooks.append(self._on_event)

    def _on_event(self, ev: Dict) -> None:
        if (ev['event'] != 'STOP' or ev['domain'] != self.guest.name or
                self.held_at is not None):
            return
        self.pid = self.dst.qemu_pid(self.guest.name)
        if not self.pid:
            return
        os.kill(self.pid, signal.SIGSTOP)
        self.held_at = time.time()
        threading.Timer(self.seconds, self._release).start()

    def _release(self) -> None:
        try:
            os.kill(self.pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def close(self) -> None:
        if self._on_event in self.events.hooks:
            self.events.hooks.remove(self._on_event)


def new_log_lines(before: str, after: str) -> List[str]:
    """The fork's timebase lines a domain log gained (capped/clamped
    warnings and the like)."""
    new = after[len(before):] if after.startswith(before) else after
    return [ln for ln in new.splitlines()
            if re.search(r'timebase|tb-max-delta|\bTB\b', ln)]
