#!/bin/sh
# mmdebstrap --essential-hook: runs before the kernel is installed, so its initramfs is built once and
# small: MODULES=list (about 50 s under emulation instead of 17 min for MODULES=most). Only paths
# that no package owns: a conffile written here would stop dpkg with a question.
set -eu
root="$1"
mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
echo "MODULES=list" > "$root/etc/initramfs-tools/conf.d/faxbridge"
# the Pi's SD card and USB (boot from USB disks), and virtio for the boot test under QEMU
cat > "$root/usr/share/initramfs-tools/modules.d/faxbridge" <<'MODS'
sdhci-iproc
mmc_block
ext4
vfat
overlay
reset-raspberrypi
pcie-brcmstb
xhci-pci
usb-storage
uas
virtio_blk
virtio_pci
MODS
