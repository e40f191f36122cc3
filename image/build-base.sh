#!/bin/sh
# The image's base root file system: Debian bookworm arm64 from packages.txt, by mmdebstrap in
# one run (under qemu-user), packed as a tarball in the cache and reused while its inputs are the
# same (the key: packages.txt, the hooks, mirror.conf and the archive actually used).
# Usage: build-base.sh CACHE_DIR   -> prints the tarball's path on the last line
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=$1
. "$here/mirror.conf"
mkdir -p "$cache"

"$here/binfmt.sh"

# a dated snapshot where it can be reached, else the live mirror (say so: not pinned then)
suite_url="$SNAPSHOT_URL/debian/$SNAPSHOT"
if curl -sf --max-time 15 -o /dev/null "$suite_url/dists/$SUITE/InRelease"; then
  main="$suite_url"; security="$SNAPSHOT_URL/debian-security/$SNAPSHOT"; pinned="snapshot $SNAPSHOT"
else
  main="$MIRROR"; security="$SECURITY_MIRROR"; pinned="live mirror $MIRROR (snapshot.debian.org unreachable: not pinned)"
fi
echo "image: Debian archive: $pinned" >&2
comps=$(echo "$COMPONENTS" | tr , ' ')
packages=$(grep -v '^\s*#' "$here/packages.txt" | grep -v '^\s*$' | tr '\n' ',' | sed 's/,$//')
# RPI_ARCHIVE=1 (untested: that archive cannot be reached where this is built): Raspberry Pi's
# archive for the Pi 5, whose kernel (RP1: USB, Ethernet) is not in Debian; its key is not in Debian
# either: RPI_KEYRING= the .gpg from raspberrypi-archive-keyring, fetched by the builder
rpi_src=""
if [ "${RPI_ARCHIVE:-0}" = 1 ]; then
  [ -s "${RPI_KEYRING:-}" ] || { echo "image: RPI_ARCHIVE=1 needs RPI_KEYRING=<Raspberry Pi's archive key (.gpg)>" >&2; exit 1; }
  rpi_src="deb [signed-by=$RPI_KEYRING] ${RPI_MIRROR:-http://archive.raspberrypi.com/debian} $SUITE main"
  packages=$(echo "$packages" | sed 's/linux-image-arm64/linux-image-rpi-v8,linux-image-rpi-2712/')
fi
key=$( { cat "$here/packages.txt" "$here/mirror.conf" "$here"/hooks/*; echo "$main $security $rpi_src";
  [ -z "$rpi_src" ] || cat "$RPI_KEYRING"; } | sha256sum | cut -c1-16)
out="$cache/base-arm64-$key.tar.zst"
if [ -s "$out" ]; then
  echo "image: base root file system cached: $out" >&2
  echo "$out"; exit 0
fi
# the snapshot's date makes file times (and so the tarball) reproducible
export SOURCE_DATE_EPOCH=$(date -u -d "$(echo "$SNAPSHOT" | sed 's/\(....\)\(..\)\(..\)T\(..\)\(..\)\(..\)Z/\1-\2-\3 \4:\5:\6/')" +%s)
start=$(date +%s)
rm -f "$out.tmp"
mmdebstrap --mode=root --arch=arm64 --variant=apt --components="$COMPONENTS" \
  --aptopt='Acquire::Check-Valid-Until "false"' --aptopt='Acquire::Retries "3"' \
  --include="$packages" \
  --essential-hook="$here/hooks/essential.sh" --customize-hook="$here/hooks/customize.sh" \
  --format=tar \
  "$SUITE" "$out.tmp.tar" \
  "deb $main $SUITE $comps" "deb $main $SUITE-updates $comps" "deb $security $SUITE-security $comps" \
  ${rpi_src:+"$rpi_src"} >&2
zstd -q -T0 -3 --rm "$out.tmp.tar" -o "$out.tmp"
mv "$out.tmp" "$out"
echo "image: base root file system built in $(( $(date +%s) - start )) s: $out" >&2
echo "$out"
