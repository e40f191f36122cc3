#!/bin/sh
# qemu-user for arm64 programs (mmdebstrap's maintainer scripts, the self-test in the chroot).
# Where PID 1 is not systemd, nothing registered it at install time: mount binfmt_misc and enable.
set -eu
[ -r /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 && exit 0
[ -e /proc/sys/fs/binfmt_misc/register ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
update-binfmts --enable qemu-aarch64
grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64
