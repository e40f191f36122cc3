#!/bin/sh
# The signed update bundle (RAUC, verity format): the root slot's file system of this build.
# The box writes it to its other root slot and tries it with the Pi firmware's tryboot.
# Usage: bundle.sh ROOT_EXT4 OUT.raucb VERSION CACHE_DIR
# Signing: SIGNING_CERT and SIGNING_KEY (a release key kept off the build machine's image), else a
# development key made once in CACHE_DIR/keys (its certificate is the image's keyring).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rootfs=$1 out=$2 version=$3 cache=$4
cert=${SIGNING_CERT:-"$cache/keys/signing.cert.pem"}
key=${SIGNING_KEY:-"$cache/keys/signing.key.pem"}
[ -s "$cert" ] && [ -s "$key" ] || { echo "bundle: no signing key: run image/keys.sh first" >&2; exit 1; }
work=$(mktemp -d "$out.work.XXXXXX"); trap 'rm -rf "$work"' EXIT
mkdir "$work/content"
ln "$rootfs" "$work/content/root.ext4" 2>/dev/null || cp --sparse=always "$rootfs" "$work/content/root.ext4"
cat > "$work/content/manifest.raucm" <<MANIFEST
[update]
compatible=$(sed -n 's/^compatible=//p' "$here/overlay/etc/rauc/system.conf")
version=$version

[bundle]
format=verity

[image.rootfs]
filename=root.ext4
MANIFEST
rm -f "$out"
rauc bundle --cert="$cert" --key="$key" --mksquashfs-args="-comp zstd -Xcompression-level 6" \
  "$work/content" "$out" >&2
