#!/bin/sh
# `make image`: base root (cached) -> the appliance on it -> the partitioned image -> the update
# bundle -> (release) .img.xz, .sha256, .bmap. Prints each step's time.
# Usage: build.sh OUT_DIR CACHE_DIR      IMAGE_COMPRESS=0 skips xz and bmap (the boot test's build)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
out=$1 cache=$2
mkdir -p "$out" "$cache"
out=$(cd "$out" && pwd) cache=$(cd "$cache" && pwd)
py=${PYTHON:-"$top/.venv/bin/python"}
export PYTHON="$py"
[ "$(id -u)" = 0 ] || { echo "image: needs root (mmdebstrap --mode=root, file ownership in the image): sudo make image" >&2; exit 1; }

pkgver=$("$py" -c 'import tomllib; print(tomllib.load(open("'"$top"'/pyproject.toml","rb"))["project"]["version"])')
commit=$(git -C "$top" rev-parse --short=10 HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$top" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo .dirty || true)
version=${IMAGE_VERSION:-"$pkgver+g$commit$dirty"}
name="faxbridge-$version-arm64"
. "$here/mirror.conf"
export SOURCE_DATE_EPOCH=$(date -u -d "$(echo "$SNAPSHOT" | sed 's/\(....\)\(..\)\(..\)T\(..\)\(..\)\(..\)Z/\1-\2-\3 \4:\5:\6/')" +%s)

rm -f "$out"/faxbridge-*-arm64.*  # an older build's files would pass for this one's
t0=$(date +%s); step() { echo "image: $1 ($(( $(date +%s) - t0 )) s)" >&2; }
# each step's answer is its last line; "&&", not a pipe into tail: a failing step (the arm64
# self-test, a missing tool) must stop the build, and a pipe's status is tail's
keyring=$("$here/keys.sh" "$cache" > "$out/.keys.out" && tail -1 "$out/.keys.out")
base=$("$here/build-base.sh" "$cache" > "$out/.base.out" && tail -1 "$out/.base.out")
step "base root file system ready"
kver=$(KEYRING="$keyring" "$here/build-app.sh" "$base" "$out/rootfs" "$cache" "$version" > "$out/.app.out" &&
  tail -1 "$out/.app.out")
step "appliance installed, self-test passed in the arm64 root (kernel $kver)"
ROOT_EXT4_OUT="$out/$name.root.ext4" "$here/mkimage.sh" "$out/rootfs" "$out/$name.img" "$version"
step "image assembled: $out/$name.img"
# what the same commit must build again: every path with its type, mode, owner and size
(cd "$out/rootfs" && find . -printf '%y %m %U:%G %s %p\n' | LC_ALL=C sort -k5) > "$out/$name.files"
dpkg-query --admindir="$out/rootfs/var/lib/dpkg" -W -f '${Package} ${Version} ${Architecture}\n' > "$out/$name.packages"
if [ -x "$here/bundle.sh" ]; then
  "$here/bundle.sh" "$out/$name.root.ext4" "$out/$name.raucb" "$version" "$cache"
  step "update bundle: $out/$name.raucb"
fi
if [ "${BROKEN_BUNDLE:-0}" = 1 ]; then  # the bench's forced rollback (hwtests/BENCH.md)
  "$here/broken-bundle.sh" "$out/$name.root.ext4" "$out/faxbridge-$version-broken-arm64.raucb" "$version.broken" "$cache"
  step "broken bundle (its daemon cannot start): $out/faxbridge-$version-broken-arm64.raucb"
fi
if [ "${IMAGE_COMPRESS:-1}" != 0 ]; then
  bmaptool -q create -o "$out/$name.img.bmap" "$out/$name.img"
  xz -T0 -6 -f -k "$out/$name.img"
  (cd "$out" && sha256sum "$name.img.xz" > "$name.img.xz.sha256")
  step "compressed: $out/$name.img.xz ($(du -m "$out/$name.img.xz" | cut -f1) MB)"
fi
echo "$out/$name.img"
