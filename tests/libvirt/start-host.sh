#!/bin/sh
# Start one libvirt "host" of the libvirt tier: run by lvhosts.py as
#   ip netns exec NS unshare --uts -- start-host.sh DIR HOSTNAME
# i.e. in its own network namespace, its own mount namespace (ip netns
# exec makes one, and hides the cgroup mounts, so libvirt uses none), and
# its own UTS namespace. libvirt's directories are bind-mounted from DIR,
# so the two hosts share nothing but the file system the images live on.
set -eu
D=$1
hostname "$2"
for m in etc:/etc/libvirt run:/run/libvirt lib:/var/lib/libvirt \
         cache:/var/cache/libvirt log:/var/log/libvirt; do
    mkdir -p "$D/${m%%:*}" "${m#*:}"
    mount --bind "$D/${m%%:*}" "${m#*:}"
done
exec libvirtd --daemon --listen --pid-file /run/libvirt/libvirtd.pid
