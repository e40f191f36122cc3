"""Every program the updater runs, in one place: rauc (1.8, Debian bookworm), mount, systemctl.

Adjust arguments here only.  Each call returns what happened; none raises for a failing program.
Tests pass a Commands with other executables (stand-ins that print what rauc prints), because
rauc and a reboot cannot run on a development machine.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: `systemctl reboot`'s argument that makes the Pi firmware read tryboot.txt for one boot
TRYBOOT_ARGUMENT = "0 tryboot"


@dataclass(frozen=True)
class Result:
    ok: bool
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class Commands:
    rauc: str = "rauc"
    systemctl: str = "systemctl"
    mount: str = "mount"
    umount: str = "umount"

    def _run(self, argv: list[str], timeout: float = 120.0) -> Result:
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError) as e:
            return Result(False, error=f"{argv[0]}: {e}")
        return Result(r.returncode == 0, r.stdout, (r.stderr or r.stdout).strip())

    def bundle_version(self, bundle: Path) -> Result:
        """``rauc info``: checks the signature against the keyring too; output = the version."""
        r = self._run([self.rauc, "info", "--output-format=json", str(bundle)], timeout=600)
        if not r.ok:
            return r
        try:
            info = json.loads(r.output)
        except ValueError:
            return Result(True, "")
        version = info.get("version") if isinstance(info, dict) else None
        return Result(True, version if isinstance(version, str) else "")

    def install(self, bundle: Path, on_line: Callable[[str], None]) -> Result:
        """``rauc install``: each output line to ``on_line`` as it comes ("  40% Copying ...",
        "LastError: ..."); error = the last error RAUC gave."""
        try:
            proc = subprocess.Popen(
                [self.rauc, "install", str(bundle)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
            )
        except OSError as e:
            return Result(False, error=f"{self.rauc}: {e}")
        last_error, lines = "", []
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            del lines[:-50]
            if line.startswith("LastError:"):
                last_error = line.partition(":")[2].strip()
            on_line(line)
        code = proc.wait()
        if code == 0:
            return Result(True, "\n".join(lines))
        fallback = next((ln for ln in reversed(lines) if ln.strip() and "%" not in ln[:5]), "")
        return Result(False, "\n".join(lines), last_error or fallback or f"rauc install exited with {code}")

    def mark(self, state: str, slot: str = "booted") -> Result:
        """``rauc status mark-good|mark-bad [booted|other]``: RAUC calls our backend's set-state."""
        return self._run([self.rauc, "status", f"mark-{state}", slot])

    def reboot(self, tryboot: bool) -> Result:
        """An ordinary reboot (the committed slot), or one that tries tryboot.txt's slot once."""
        argv = [self.systemctl, "reboot"] + ([f"--reboot-argument={TRYBOOT_ARGUMENT}"] if tryboot else [])
        return self._run(argv)

    def mount_ro(self, device: str, where: Path) -> Result:
        return self._run([self.mount, "-o", "ro,noload", device, str(where)])

    def unmount(self, where: Path) -> Result:
        return self._run([self.umount, str(where)])
