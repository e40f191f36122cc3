"""A boot partition laid out like the image's FAT, as real files in a temp directory, and the
kernel command line of either slot."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.update.service import Paths

CONFIG_TXT = """# Faxbridge: Raspberry Pi firmware settings
[all]
arm_64bit=1
upstream_kernel=1
enable_uart=1
os_prefix=a/
kernel=vmlinuz
initramfs initrd.img followkernel
"""


def cmdline(slot: str) -> str:
    part = {"a": "02", "b": "03"}[slot]
    return (f"console=ttyS1,115200 console=tty0 root=PARTUUID=fa8b0001-{part} rw fsck.repair=yes "
            f"net.ifnames=0 panic=10 rootwait rauc.slot={slot}\n")


class Box:
    """The FAT, the running kernel's /proc/cmdline and the state directory of one box."""

    def __init__(self, root: Path) -> None:
        self.boot = root / "firmware"
        self.state = root / "state"
        self.work = root / "system-update"
        self.proc_cmdline = root / "cmdline"
        self.model = root / "model"
        self.boot.mkdir()
        self.state.mkdir()
        (self.boot / "config.txt").write_text(CONFIG_TXT)
        (self.boot / "start4.elf").write_bytes(b"firmware")
        for slot in ("a", "b"):
            d = self.boot / slot
            d.mkdir()
            (d / "vmlinuz").write_bytes(f"kernel {slot}".encode())
            (d / "cmdline.txt").write_text(cmdline(slot))
        self.boot_into("a")
        self.model.write_bytes(b"Raspberry Pi 4 Model B Rev 1.5\x00")

    def boot_into(self, slot: str) -> None:
        self.proc_cmdline.write_text(cmdline(slot))

    def firmware_boot(self, tryboot: bool) -> str:
        """What the Pi firmware does on a reboot: tryboot.txt once if asked and present, else
        config.txt; boots the slot its os_prefix names (and, like the firmware, forgets the flag)."""
        from appliance.update.slots import os_prefix_slot

        name = "tryboot.txt" if tryboot and (self.boot / "tryboot.txt").exists() else "config.txt"
        slot = os_prefix_slot((self.boot / name).read_text())
        assert slot is not None, name
        self.boot_into(slot)
        return slot

    @property
    def paths(self) -> Paths:
        return Paths(state_dir=self.state, boot=self.boot, work=self.work, cmdline=self.proc_cmdline,
                     model=(self.model,), mount_prefix=self.boot.parent / "mnt")

    def text(self, name: str) -> str | None:
        p = self.boot / name
        return p.read_text() if p.exists() else None


@pytest.fixture
def box(tmp_path: Path) -> Box:
    return Box(tmp_path)
