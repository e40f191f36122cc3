#!/bin/sh
# Writes requirements-arm64.txt: the newest aarch64 wheels (CPython 3.11, glibc <= 2.36 as in
# bookworm) of the appliance's dependencies in pyproject.toml, each pinned with its sha256.
# Run it by hand after changing the dependencies, then commit the file (builds never resolve).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-"$here/../.venv/bin/python"}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
"$py" -c 'import tomllib,sys; print("\n".join(tomllib.load(open(sys.argv[1],"rb"))["project"]["dependencies"]))' \
  "$here/../pyproject.toml" > "$tmp/deps.txt"
"$py" -m pip download -q -r "$tmp/deps.txt" -d "$tmp/wheels" --only-binary=:all: \
  --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux_2_28_aarch64 \
  --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none
{ sed -n '1,2p' "$here/requirements-arm64.txt"
  for f in "$tmp"/wheels/*.whl; do n=$(basename "$f")
    echo "$(echo "$n" | cut -d- -f1)==$(echo "$n" | cut -d- -f2) --hash=sha256:$(sha256sum "$f" | cut -d' ' -f1)"
  done; } > "$tmp/req.txt"
mv "$tmp/req.txt" "$here/requirements-arm64.txt"
