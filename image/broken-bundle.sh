#!/bin/sh
# A signed, installable bundle whose fax daemon cannot start (its unit runs /bin/false): for the
# bench's and the boot test's forced rollback. Edits a copy of the root file system with debugfs
# (no mount). Usage: broken-bundle.sh ROOT_EXT4 OUT.raucb VERSION CACHE_DIR
set -eu
here=$(cd "$(dirname "$0")" && pwd)
rootfs=$1 out=$2 version=$3 cache=$4
work=$(mktemp -d "$out.work.XXXXXX"); trap 'rm -rf "$work"' EXIT
cp --sparse=always "$rootfs" "$work/root.ext4"
unit=/lib/systemd/system/faxbridge.service
debugfs -R "cat $unit" "$work/root.ext4" 2>/dev/null | sed 's|^ExecStart=.*|ExecStart=/bin/false|' > "$work/unit"
grep -q '^ExecStart=/bin/false$' "$work/unit"
debugfs -w -R "rm $unit" "$work/root.ext4" >/dev/null 2>&1
debugfs -w -R "write $work/unit $unit" "$work/root.ext4" >/dev/null 2>&1
debugfs -R "cat $unit" "$work/root.ext4" 2>/dev/null | grep -q '^ExecStart=/bin/false$'
"$here/bundle.sh" "$work/root.ext4" "$out" "$version" "$cache"
