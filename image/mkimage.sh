#!/bin/sh
# The flashable image from the built root: no loop devices, no mounts (mtools, mke2fs -d, sfdisk, dd).
#   p1 FAT  FAXBOOT    the Pi firmware, config.txt (os_prefix= the committed slot), a/ and b/ with
#                      each slot's kernel, initrd, DTBs and cmdline.txt, faxbridge.txt
#   p2 ext4 faxroot-a  root slot A (read-only on the box)
#   p3      (empty)    root slot B: an update writes it (RAUC), then tries it with tryboot
#   p4 ext4 faxdata    configuration, secrets, spool, host keys; grows to fill the card at first boot
# The disk id is fixed, so the slots are PARTUUID=fa8b0001-02 and -03 on every card.
# Usage: mkimage.sh ROOTFS_DIR OUT.img VERSION
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$1 out=$2 version=$3
BOOT_MB=${BOOT_MB:-256} ROOT_MB=${ROOT_MB:-1280} DATA_MB=${DATA_MB:-256}
DISK_ID=fa8b0001
work=$(mktemp -d "${out}.work.XXXXXX"); trap 'rm -rf "$work"' EXIT

# the FAT: firmware at the top, slot A's boot files in a/, b/ empty until an update
mkdir -p "$work/boot/a" "$work/boot/b"
find "$root.firmware" -maxdepth 1 -type f \( -name '*.elf' -o -name '*.dat' -o -name '*.bin' -o -iname 'LICEN*' \) \
  -exec cp {} "$work/boot/" \;
cp "$root"/usr/lib/faxbridge/boot/* "$work/boot/a/"
sed "s/@SLOT@/a/" "$here/boot/config.txt" > "$work/boot/config.txt"
if [ -e "$work/boot/a/vmlinuz_2712" ]; then  # RPI_ARCHIVE=1 (untested): the Pi 5 boots its own kernel
  printf '\n[pi5]\nkernel=vmlinuz_2712\ninitramfs initrd_2712.img followkernel\n[all]\n' >> "$work/boot/config.txt"
fi
sed -e "s/@PARTUUID@/$DISK_ID-02/" -e "s/@SLOT@/a/" "$here/boot/cmdline.txt" > "$work/boot/a/cmdline.txt"
cp "$here/boot/faxbridge.txt" "$work/boot/faxbridge.txt"
echo "$version" > "$work/boot/faxbridge-version.txt"
rm -f "$work/boot.vfat"
mkfs.vfat -F 32 -n FAXBOOT -i "$DISK_ID" -C "$work/boot.vfat" $((BOOT_MB * 1024)) >/dev/null
(cd "$work/boot" && mcopy -s -p -m -i "$work/boot.vfat" ./* ::/)

# root slot A, and the data partition with the state directory owned by the service user
uid=$(awk -F: '$1 == "faxbridge" {print $3}' "$root/etc/passwd")
gid=$(awk -F: '$1 == "faxbridge" {print $3}' "$root/etc/group")
mkdir -p "$work/data/faxbridge" "$work/data/system/rauc"
install -m 0600 "$here/files/faxbridge.toml" "$work/data/faxbridge/faxbridge.toml"
chown -R "$uid:$gid" "$work/data/faxbridge"; chmod 0700 "$work/data/faxbridge" "$work/data/system" "$work/data/system/rauc"
export E2FSPROGS_FAKE_TIME=${SOURCE_DATE_EPOCH:-0}
mkfs.ext4 -q -F -L faxroot-a -U 6a8b0001-0000-4000-8000-00000000000a -E hash_seed=6a8b0001-0000-4000-8000-0000000000aa \
  -d "$root" "$work/root.ext4" "${ROOT_MB}M"
mkfs.ext4 -q -F -L faxdata -U 6a8b0001-0000-4000-8000-0000000000da -d "$work/data" "$work/data.ext4" "${DATA_MB}M"

# the partition table, then each file system at its offset (sparse: slot B stays holes)
boot_start=8192
root_a=$((boot_start + BOOT_MB * 2048))
root_b=$((root_a + ROOT_MB * 2048))
data=$((root_b + ROOT_MB * 2048))
total_mb=$(( (data + DATA_MB * 2048) / 2048 + 1 ))
rm -f "$out.tmp"; truncate -s "${total_mb}M" "$out.tmp"
sfdisk -q "$out.tmp" <<TABLE
label: dos
label-id: 0x$DISK_ID
unit: sectors
start=$boot_start, size=$((BOOT_MB * 2048)), type=c, bootable
start=$root_a, size=$((ROOT_MB * 2048)), type=83
start=$root_b, size=$((ROOT_MB * 2048)), type=83
start=$data, size=$((DATA_MB * 2048)), type=83
TABLE
dd if="$work/boot.vfat" of="$out.tmp" bs=512 seek=$boot_start conv=notrunc,sparse status=none
dd if="$work/root.ext4" of="$out.tmp" bs=512 seek=$root_a conv=notrunc,sparse status=none
dd if="$work/data.ext4" of="$out.tmp" bs=512 seek=$data conv=notrunc,sparse status=none
# the root slot's file system alone: the update bundle carries it
if [ -n "${ROOT_EXT4_OUT:-}" ]; then cp --sparse=always "$work/root.ext4" "$ROOT_EXT4_OUT"; fi
mv "$out.tmp" "$out"
