#!/bin/sh
# mmdebstrap customize hook for the libvirt tier's Debian guest
# (scripts/debian-guest.sh): runs on the host with the guest's root file
# system in $1; `chroot` runs its ppc64el binaries through binfmt_misc.
set -eu
R=$1
echo tbguest > "$R/etc/hostname"
printf '127.0.1.1 tbguest\n' >> "$R/etc/hosts"
printf 'LABEL=root / ext4 rw,noatime 0 1\n' > "$R/etc/fstab"
chroot "$R" passwd -d root >/dev/null
# The console (hvc0) carries the TB probe's lines: no login prompt on it.
chroot "$R" systemctl mask serial-getty@hvc0.service getty@tty1.service \
    >/dev/null 2>&1
# Nothing that would set or slew the clock, nothing scheduled.
chroot "$R" systemctl mask apt-daily.timer apt-daily-upgrade.timer \
    e2scrub_all.timer e2scrub_reap.service fstrim.timer \
    systemd-timesyncd.service >/dev/null 2>&1
chroot "$R" systemctl set-default multi-user.target >/dev/null 2>&1
# The TB probe as a service, its lines on the console (tests/guest/tbprobe.c).
cat > "$R/etc/systemd/system/tbprobe.service" <<'UNIT'
[Unit]
Description=Timebase probe (qemu-tb-fork tests) on the console
After=systemd-udev-settle.service

[Service]
ExecStart=/usr/local/bin/tbprobe i=200,t=20000
StandardOutput=tty
TTYPath=/dev/hvc0
TTYReset=no
TTYVHangup=no

[Install]
WantedBy=multi-user.target
UNIT
chmod 755 "$R/usr/local/bin/tbprobe"
chroot "$R" systemctl enable tbprobe.service >/dev/null 2>&1
