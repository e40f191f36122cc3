"""Stand-ins for the programs the updater runs that cannot run on a development machine: rauc
(it writes a partition and needs its D-Bus service), systemctl reboot, mount.

The rauc stand-in behaves as RAUC 1.8's command line does toward us: ``info`` checks a
"signature" (the bundle's first line) and prints JSON with the version; ``install`` calls the
real custom backend (``set-state X bad``, then ``set-primary X``) around its progress lines and
runs the real post-install handler; ``status mark-good|mark-bad [booted|other]`` calls the
backend's ``set-state``.  A bundle whose first line is not ``SIGNED`` fails as a bad signature.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

RAUC = r'''#!{python}
import json, os, subprocess, sys
backend = [{python!r}, "-m", "appliance", "rauc-backend"]
log = open({log!r}, "a")
log.write(" ".join(sys.argv[1:]) + "\n"); log.close()
def be(*a):
    subprocess.run(backend + list(a), check=True)
def booted():
    text = open(os.environ["FAXBRIDGE_CMDLINE"]).read()
    return [w.split("=")[1] for w in text.split() if w.startswith("rauc.slot=")][0]
cmd = sys.argv[1]
if cmd == "info":
    first = open(sys.argv[-1], "rb").readline().split()
    if not first or first[0] != b"SIGNED":
        print("signature verification failed: CMS_verify: certificate verify error", file=sys.stderr); sys.exit(1)
    print(json.dumps({{"compatible": "faxbridge-arm64", "version": first[1].decode()}}))
elif cmd == "install":
    first = open(sys.argv[-1], "rb").readline().split()
    target = "b" if booted() == "a" else "a"
    print("  0% Installing"); sys.stdout.flush()
    be("set-state", target, "bad")
    print(" 40% Copying image to rootfs.1"); sys.stdout.flush()
    if b"FAIL-WRITE" in first:
        print("LastError: Installation error: Failed updating slot rootfs.1: No space left on device")
        print("Installing `bundle` failed", file=sys.stderr); sys.exit(1)
    if b"NO-PRIMARY" not in first:
        be("set-primary", target)
    print("100% Installing done."); print("Installing `bundle` succeeded")
elif cmd == "status":
    slot = booted() if sys.argv[3:4] in ([], ["booted"]) else ("b" if booted() == "a" else "a")
    if os.environ.get("FAKE_RAUC_STATUS_FAILS"):
        print("rauc: D-Bus service not running", file=sys.stderr); sys.exit(1)
    be("set-state", slot, "good" if sys.argv[2] == "mark-good" else "bad")
else:
    sys.exit(2)
'''

RECORDER = r'''#!/bin/sh
echo "$*" >> {log!r}
'''

MOUNT = r'''#!/bin/sh
# mount -o ro,noload DEVICE WHERE: the "device" is a directory tree here
echo "mount $*" >> {log!r}
cp -a "$3"/. "$4"/
'''

UMOUNT = r'''#!/bin/sh
echo "umount $*" >> {log!r}
rm -rf "$1"/* 
'''


def _script(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def make(dir: Path):  # type: ignore[no-untyped-def]
    """Commands whose programs are the stand-ins, and the log each writes its calls to."""
    from appliance.update.commands import Commands

    dir.mkdir(parents=True, exist_ok=True)
    log = dir / "calls.log"
    log.touch()
    return Commands(rauc=_script(dir / "rauc", RAUC.format(python=sys.executable, log=str(log))),
                    systemctl=_script(dir / "systemctl", RECORDER.format(log=str(log))),
                    mount=_script(dir / "mount", MOUNT.format(log=str(log))),
                    umount=_script(dir / "umount", UMOUNT.format(log=str(log)))), log


def environ(boot: Path, cmdline: Path) -> None:
    """The stand-in rauc reaches the real backend through these (RAUC itself passes nothing)."""
    os.environ["FAXBRIDGE_BOOT_DIR"] = str(boot)
    os.environ["FAXBRIDGE_CMDLINE"] = str(cmdline)
