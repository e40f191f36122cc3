#!/bin/sh
# The spandsp binding (appliance/spandsp/_build.py, cffi API mode) compiled for arm64 on the build
# host with Debian's cross compiler, against the arm64 headers of the same Debian archive (apt
# verifies their signatures and hashes): nothing is compiled on the device or under emulation.
# Usage: build-binding.sh CACHE_DIR OUT_DIR MIRROR  -> OUT_DIR/_spandsp.cpython-311-aarch64-linux-gnu.so
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cache=$1 out=$2 mirror=$3
py=${PYTHON:-"$here/../.venv/bin/python"}
apt_dir="$cache/apt-arm64"
sysroot="$cache/sysroot-arm64"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial" "$out"
echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bookworm main" \
  > "$apt_dir/sources.list"
apt_opts="-o Dir::State::Lists=$apt_dir/lists -o Dir::Cache::archives=$apt_dir/archives
  -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o Dir::Etc::SourceList=$apt_dir/sources.list
  -o Dir::Etc::SourceParts=/nonexistent -o APT::Architecture=arm64 -o APT::Architectures::=arm64
  -o Acquire::Check-Valid-Until=false -o Acquire::Retries=3 -o Debug::NoLocking=1"
if [ ! -d "$sysroot/usr/include/spandsp" ]; then
  # shellcheck disable=SC2086
  apt-get -q $apt_opts update >&2
  rm -rf "$sysroot.tmp"; mkdir -p "$sysroot.tmp"
  (cd "$apt_dir/archives" &&
    # shellcheck disable=SC2086
    apt-get -q $apt_opts download libspandsp-dev:arm64 libspandsp2:arm64 libtiff-dev:arm64 libtiff6:arm64 \
      libpython3.11-dev:arm64 >&2)
  for deb in "$apt_dir"/archives/*.deb; do dpkg-deb -x "$deb" "$sysroot.tmp"; done
  rm -rf "$sysroot"; mv "$sysroot.tmp" "$sysroot"
fi
build=$(mktemp -d); trap 'rm -rf "$build"' EXIT
(cd "$here/.." && "$py" -c 'import sys; from appliance.spandsp._build import ffibuilder; ffibuilder.emit_c_code(sys.argv[1])' \
  "$build/_spandsp.c")
multi=aarch64-linux-gnu
aarch64-linux-gnu-gcc -shared -fPIC -O2 -g0 -Wno-deprecated-declarations -ffile-prefix-map="$build"=. \
  -I"$sysroot/usr/include" -I"$sysroot/usr/include/$multi" \
  -I"$sysroot/usr/include/python3.11" -I"$sysroot/usr/include/$multi/python3.11" \
  -I"$here/../appliance/spandsp" \
  -o "$out/_spandsp.cpython-311-$multi.so" "$build/_spandsp.c" \
  "$here"/../appliance/spandsp/*.c \
  -L"$sysroot/usr/lib/$multi" -lspandsp -ltiff -Wl,--allow-shlib-undefined -Wl,--build-id=none
aarch64-linux-gnu-strip --strip-unneeded "$out/_spandsp.cpython-311-$multi.so"
echo "$out/_spandsp.cpython-311-$multi.so"
