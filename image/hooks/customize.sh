#!/bin/sh
# mmdebstrap --customize-hook: what every Faxbridge image has, whatever the appliance's version.
# Nothing unique to a device stays in the image: first boot makes the host keys and machine-id.
set -eu
root="$1"
chroot "$root" useradd --system --home-dir /var/lib/faxbridge --no-create-home --shell /usr/sbin/nologin \
  --groups dialout --user-group faxbridge
# the owner's SSH login: key only (faxbridge.txt's ssh_authorized_key), no password
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo,adm,systemd-journal --user-group admin
chroot "$root" passwd --lock admin >/dev/null
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
rm -f "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/var/cache/ldconfig/aux-cache
