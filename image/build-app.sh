#!/bin/sh
# The appliance on the base root file system: the package in a venv with pinned aarch64 wheels and
# the cross-compiled spandsp binding, the units, the overlay (image/overlay), then the self-test
# run in the arm64 root (under qemu-user): the image is never built around a binding that fails.
# Usage: build-app.sh BASE_TARBALL ROOTFS_DIR CACHE_DIR VERSION
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
base=$1 root=$2 cache=$3 version=$4
py=${PYTHON:-"$top/.venv/bin/python"}
. "$here/mirror.conf"

rm -rf "$root"; mkdir -p "$root"
zstd -dc "$base" | tar -C "$root" --numeric-owner -xpf -

# the venv: Debian's python3.11 with the appliance's own packages (no pip, nothing built here)
venv=/opt/faxbridge/venv
site="$root$venv/lib/python3.11/site-packages"
mkdir -p "$root$venv/bin" "$site"
ln -s /usr/bin/python3.11 "$root$venv/bin/python3"
ln -s python3 "$root$venv/bin/python"
printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n' > "$root$venv/pyvenv.cfg"
"$py" -m pip download -q --no-deps --require-hashes -r "$here/requirements-arm64.txt" -d "$cache/wheels" \
  --only-binary=:all: --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 \
  --platform manylinux_2_28_aarch64 --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none >&2
"$py" -m pip install -q --no-deps --no-index --find-links "$cache/wheels" --require-hashes \
  -r "$here/requirements-arm64.txt" --target "$site" --no-compile --only-binary=:all: \
  --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none >&2
rm -rf "$site/bin"

# the appliance itself: its source, the arm64 binding, metadata with the image's version
(cd "$top" && git ls-files -z appliance | xargs -0 -I{} cp --parents {} "$site/")
"$here/build-binding.sh" "$cache" "$site/appliance/spandsp" "${BINDING_MIRROR:-$MIRROR}" >&2
dist="$site/faxbridge-$version.dist-info"
mkdir -p "$dist"
printf 'Metadata-Version: 2.1\nName: faxbridge\nVersion: %s\n' "$version" > "$dist/METADATA"
printf '[console_scripts]\nfaxbridge = appliance.cli:main\n' > "$dist/entry_points.txt"
echo "faxbridge-image" > "$dist/INSTALLER"
cat > "$root$venv/bin/faxbridge" <<'PY'
#!/opt/faxbridge/venv/bin/python3
import sys
from appliance.cli import main
sys.exit(main())
PY
chmod 755 "$root$venv/bin/faxbridge"
ln -sf "$venv/bin/faxbridge" "$root/usr/local/bin/faxbridge"
# bytecode now (the root is read-only on the box); hash-based so file times do not matter
"$py" -m compileall -q -j 0 --invalidation-mode unchecked-hash -d "$venv/lib/python3.11/site-packages" \
  "$site" >/dev/null || true

# units, the overlay, the mount points, what is enabled
install -m 0644 "$top"/systemd/*.service "$root/lib/systemd/system/"
for unit in "$top"/systemd/*.path "$top"/systemd/*.timer; do
  [ -e "$unit" ] && install -m 0644 "$unit" "$root/lib/systemd/system/"
done
cp -a "$here/overlay/." "$root/"
mkdir -p "$root/etc/rauc"
install -m 0644 "$KEYRING" "$root/etc/rauc/keyring.pem"
chown -R 0:0 "$root/etc" "$root/usr/lib/faxbridge"
chmod 0440 "$root/etc/sudoers.d/faxbridge-admin"
mkdir -p "$root/data" "$root/var/lib/faxbridge" "$root/usr/lib/faxbridge/boot"
echo "FAXBRIDGE_VERSION=$version" > "$root/etc/faxbridge-release"
systemctl --root="$root" enable faxbridge.service faxbridge-web.service faxbridge-firstboot.service faxbridge-health.service \
  faxbridge-growdata.service \
  systemd-networkd.service systemd-resolved.service avahi-daemon.service ssh.service >&2
for unit in "$top"/systemd/*.path; do
  [ -e "$unit" ] && systemctl --root="$root" enable "$(basename "$unit")" >&2
done
mkdir -p "$root/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
ln -sf /lib/systemd/system/wpa_supplicant@.service \
  "$root/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"
# networkd waits for every link otherwise (Wi-Fi absent, cable unplugged): one is enough
systemctl --root="$root" disable systemd-networkd-wait-online.service >/dev/null 2>&1 || true

# one slot's boot files, from the kernel package (the FAT gets a copy per root slot)
kver=$(ls "$root/lib/modules" | grep -v -- '-rpi-2712$' | sort -V | tail -1)
bootdir="$root/usr/lib/faxbridge/boot"
cp "$root/boot/vmlinuz-$kver" "$bootdir/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$bootdir/initrd.img"
cp "$root"/usr/lib/linux-image-"$kver"/broadcom/bcm2*.dtb "$bootdir/"
# RPI_ARCHIVE=1 (untested): the Pi 5's own kernel beside it, named by config.txt's [pi5] section
k2712=$(ls "$root/lib/modules" | grep -- '-rpi-2712$' | sort -V | tail -1 || true)
if [ -n "$k2712" ]; then
  cp "$root/boot/vmlinuz-$k2712" "$bootdir/vmlinuz_2712"
  cp "$root/boot/initrd.img-$k2712" "$bootdir/initrd_2712.img"
  cp "$root"/usr/lib/linux-image-"$k2712"/broadcom/bcm2712*.dtb "$bootdir/" 2>/dev/null || true
fi
# the firmware (raspi-firmware's copy on /boot/firmware) goes to the FAT (ROOTFS_DIR.firmware), not into the root slot
rm -rf "$root.firmware"; mkdir -p "$root.firmware"
cp -a "$root/boot/firmware/." "$root.firmware/"
rm -rf "$root/boot/firmware"/*

# the arm64 root runs its own self-test: the binding loads, every module imports
tmpstate=$(mktemp -d "$root/tmp/selftest.XXXXXX")
chroot "$root" /opt/faxbridge/venv/bin/faxbridge selftest --state-dir "/tmp/$(basename "$tmpstate")" >&2
rm -rf "$tmpstate"
echo "$kver"
