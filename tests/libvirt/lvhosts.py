# Two libvirt "hosts" on one machine, for the libvirt tier.
#
# Each host is a monolithic libvirtd (Debian's libvirt 11.3, QEMU
# driver) in its own network, mount and UTS namespace, with its own
# hostname, host UUID and libvirt directories (bind-mounted from
# build/libvirt/hosts/NAME by start-host.sh). The two are joined by a veth
# pair on a private test network of their own (10.253.77.0/24); libvirt
# migrates peer to peer over qemu+tcp with no authentication, which only
# these two namespaces can reach. Clients in the root namespace use each
# daemon's unix socket.
#
# Copyright (c) 2026 qemu-tb-fork developers
# SPDX-License-Identifier: GPL-2.0-or-later

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from typing import Callable, Dict, List, Optional

import libvirt
import libvirt_qemu

NET = '10.253.77'
HOST_NAMES = ('A', 'B')

_event_loop_started = False


def start_event_loop() -> None:
    """libvirt's default event loop in a thread (before any connection)."""
    global _event_loop_started
    if _event_loop_started:
        return
    libvirt.virEventRegisterDefaultImpl()
    # Errors reach the caller as exceptions; libvirt's default handler
    # would print each again (the agent polled while the guest boots).
    libvirt.registerErrorHandler(lambda ctx, err: None, None)

    def run():
        while True:
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=run, daemon=True).start()
    _event_loop_started = True


def run(cmd: List[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


class LibvirtHost:
    """One libvirtd in its own namespaces."""

    def __init__(self, root: str, name: str, index: int):
        self.name = name
        self.hostname = f'tbhost{name.lower()}'
        self.netns = f'tblv{name}'
        self.veth = f'tblv{name}0'
        self.addr = f'{NET}.{index}'
        self.dir = os.path.join(root, name)
        # Distinct and stable: libvirt refuses a migration between hosts
        # with the same UUID ("Attempt to migrate guest to the same host").
        self.host_uuid = str(uuid.uuid5(uuid.NAMESPACE_DNS,
                                        f'{self.hostname}.qemu-tb-fork'))
        self.uri = f'qemu+unix:///system?socket={self.dir}/run/libvirt-sock'
        self.tcp_uri = f'qemu+tcp://{self.addr}/system'
        self.conn: Optional[libvirt.virConnect] = None

    def path(self, *parts: str) -> str:
        """A path of libvirt's, as the root namespace sees it."""
        top = {'etc': 'etc', 'run': 'run', 'lib': 'lib', 'log': 'log',
               'cache': 'cache'}[parts[0]]
        return os.path.join(self.dir, top, *parts[1:])

    def configure(self) -> None:
        for d in ('etc', 'run', 'lib', 'cache', 'log'):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        with open(self.path('etc', 'libvirtd.conf'), 'w') as f:
            f.write(f'''# qemu-tb-fork libvirt tier: host {self.name}
listen_tls = 0
listen_tcp = 1
listen_addr = "{self.addr}"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
host_uuid = "{self.host_uuid}"
log_filters = "1:qemu.qemu_monitor 1:qemu.qemu_migration 3:qemu 3:util 4:object 4:json 4:event 4:rpc"
log_outputs = "1:file:/var/log/libvirt/libvirtd.log"
''')
        # Root, no cgroups, no private /dev, no security driver: libvirt
        # in a namespace of a test machine; what QEMU is asked to do is
        # unchanged. Domain logs and the console are plain files.
        with open(self.path('etc', 'qemu.conf'), 'w') as f:
            f.write(f'''# qemu-tb-fork libvirt tier: host {self.name}
user = "+0"
group = "+0"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
clear_emulator_capabilities = 0
namespaces = [ ]
cgroup_controllers = [ ]
stdio_handler = "file"
seccomp_sandbox = 0
migration_address = "{self.addr}"
migration_host = "{self.addr}"
''')

    def start(self, timeout: float = 30.0) -> None:
        self.configure()
        for stale in ('libvirt-sock', 'libvirt-sock-ro',
                      'libvirt-admin-sock', 'libvirtd.pid'):
            try:
                os.unlink(self.path('run', stale))
            except FileNotFoundError:
                pass
        here = os.path.dirname(os.path.abspath(__file__))
        run(['ip', 'netns', 'exec', self.netns, 'unshare', '--uts', '--',
             'sh', os.path.join(here, 'start-host.sh'), self.dir,
             self.hostname])
        deadline = time.time() + timeout
        while True:
            try:
                self.conn = libvirt.open(self.uri)
                break
            except libvirt.libvirtError:
                if time.time() > deadline:
                    raise RuntimeError(
                        f'libvirtd of host {self.name} did not come up; '
                        f'see {self.path("log", "libvirtd.log")}')
                time.sleep(0.2)

    def pid(self) -> Optional[int]:
        try:
            with open(self.path('run', 'libvirtd.pid')) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def qemu_pid(self, domain: str) -> Optional[int]:
        try:
            with open(self.path('run', 'qemu', f'{domain}.pid')) as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError):
            return None

    def virsh(self, *args: str, check: bool = True,
              timeout: float = 600) -> str:
        """virsh on this host, as an operator types it."""
        p = run(['virsh', '-c', self.uri, *args], check=False,
                timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f'virsh on host {self.name} '
                               f'{" ".join(args)}: {p.stdout.strip()}')
        return p.stdout

    def stop(self) -> None:
        if self.conn is not None:
            try:
                for dom in self.conn.listAllDomains():
                    if dom.isActive():
                        dom.destroy()
            except libvirt.libvirtError:
                pass
            try:
                self.conn.close()
            except libvirt.libvirtError:
                pass
            self.conn = None
        pid = self.pid()
        if pid and _is_process(pid, 'libvirtd', self.netns):
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # A QEMU libvirt could not destroy (its daemon gone) goes too.
        qdir = self.path('run', 'qemu')
        if os.path.isdir(qdir):
            for f in os.listdir(qdir):
                if not f.endswith('.pid'):
                    continue
                try:
                    with open(os.path.join(qdir, f)) as p:
                        qpid = int(p.read().strip())
                    if _is_process(qpid, 'qemu-system-', self.netns):
                        os.kill(qpid, signal.SIGKILL)
                except (ValueError, OSError):
                    pass


def _is_process(pid: int, comm: str, netns: str) -> bool:
    """Whether pid is still the process a pid file named: its command,
    in this host's network namespace (pid files of an earlier run may
    name a pid reused since)."""
    try:
        with open(f'/proc/{pid}/comm') as f:
            if not f.read().startswith(comm):
                return False
        return (os.stat(f'/proc/{pid}/ns/net').st_ino ==
                os.stat(f'/run/netns/{netns}').st_ino)
    except OSError:
        return False


class LibvirtPair:
    """Hosts A and B, their namespaces and the veth pair between them."""

    def __init__(self, root: str):
        self.root = root
        self.hosts = [LibvirtHost(os.path.join(root, 'hosts'), n, i + 1)
                      for i, n in enumerate(HOST_NAMES)]
        self.a, self.b = self.hosts

    def _net_up(self) -> None:
        self._net_down()
        for h in self.hosts:
            run(['ip', 'netns', 'add', h.netns])
        run(['ip', 'link', 'add', self.a.veth, 'type', 'veth',
             'peer', 'name', self.b.veth])
        for h in self.hosts:
            run(['ip', 'link', 'set', h.veth, 'netns', h.netns])
            run(['ip', '-n', h.netns, 'addr', 'add', f'{h.addr}/24',
                 'dev', h.veth])
            run(['ip', '-n', h.netns, 'link', 'set', 'lo', 'up'])
            run(['ip', '-n', h.netns, 'link', 'set', h.veth, 'up'])

    def _net_down(self) -> None:
        for h in self.hosts:
            run(['ip', 'netns', 'del', h.netns], check=False)

    def start(self) -> None:
        """Fresh hosts: no domain, image or cache of an earlier run."""
        start_event_loop()
        for h in self.hosts:
            h.stop()
        shutil.rmtree(os.path.join(self.root, 'hosts'), ignore_errors=True)
        self._net_up()
        for h in self.hosts:
            h.start()

    def stop(self) -> None:
        for h in self.hosts:
            h.stop()
        self._net_down()


class QemuEvents:
    """QEMU monitor events of one host's domains, as libvirt relays them
    (the call behind `virsh qemu-monitor-event`), with QEMU's timestamps.
    """

    def __init__(self, host: LibvirtHost, names: List[str]):
        self.host = host
        self.events: List[Dict] = []
        self.cond = threading.Condition()
        self.hooks: List[Callable[[Dict], None]] = []
        self._ids = []
        for n in names:
            self._ids.append(libvirt_qemu.qemuMonitorEventRegister(
                host.conn, None, n, self._cb, None, 0))

    def _cb(self, conn, dom, event, seconds, micros, details, opaque):
        ev = {'event': event, 'domain': dom.name(),
              'time': seconds + micros / 1e6,
              'data': json.loads(details) if details else None,
              'received': time.time()}
        for hook in list(self.hooks):
            hook(ev)
        with self.cond:
            self.events.append(ev)
            self.cond.notify_all()

    def of(self, name: str, domain: str, since: float = 0.0) -> List[Dict]:
        with self.cond:
            return [e for e in self.events if e['event'] == name and
                    e['domain'] == domain and e['time'] >= since]

    def wait(self, name: str, domain: str, since: float,
             timeout: float = 60.0, pred=None) -> Dict:
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = [e for e in self.events if e['event'] == name and
                       e['domain'] == domain and e['time'] >= since and
                       (pred is None or pred(e))]
                if got:
                    return got[0]
                left = deadline - time.time()
                if left <= 0:
                    raise TimeoutError(f'no {name} of {domain} on host '
                                       f'{self.host.name} in {timeout} s')
                self.cond.wait(left)

    def close(self) -> None:
        for i in self._ids:
            try:
                libvirt_qemu.qemuMonitorEventDeregister(self.host.conn, i)
            except libvirt.libvirtError:
                pass
