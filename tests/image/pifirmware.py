"""What the Raspberry Pi's firmware does at power-on, for a QEMU ``virt`` machine.

QEMU cannot run the Pi's GPU firmware, so this plays its part, written from the firmware's
documentation and sharing no code with the appliance: read ``config.txt`` from the card's first
(FAT) partition, or ``tryboot.txt`` for one boot after the system asked for it with
``reboot "0 tryboot"``; take ``os_prefix``, ``kernel``, ``initramfs`` and the prefixed
``cmdline.txt``; start the kernel. The card image itself is not changed by anything but the guest.
The only difference from a Pi is the serial console's name (``console=ttyAMA0`` is appended).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

#: the FAT partition starts at sector 8192 (image/mkimage.sh)
FAT_OFFSET = 8192 * 512
TRYBOOT_LINE = "Restarting system with command '0 tryboot'"


def ahead_of_the_suite() -> None:
    """The emulated box has real-time work (a fax's audio) and a real Pi has its cores to itself;
    in `make test` the suite's other workers share the machine's: the guest goes first."""
    if os.geteuid() == 0:
        os.nice(-10)


def _fat(image: Path) -> str:
    return f"{image}@@{FAT_OFFSET}"


def fat_read(image: Path, name: str) -> bytes | None:
    """A file from the card's FAT partition (mtools: no mount), or None if it is absent."""
    out = subprocess.run(["mtype", "-i", _fat(image), f"::{name}"], capture_output=True,
                         env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return out.stdout if out.returncode == 0 else None


def fat_write(image: Path, name: str, data: bytes, workdir: Path) -> None:
    """Edit a file on the FAT partition, as an owner does in a card reader before first boot."""
    tmp = workdir / Path(name).name
    tmp.write_bytes(data)
    subprocess.run(["mcopy", "-o", "-i", _fat(image), str(tmp), f"::{name}"], check=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})


def fat_copy_out(image: Path, name: str, dest: Path) -> None:
    subprocess.run(["mcopy", "-o", "-i", _fat(image), f"::{name}", str(dest)], check=True,
                   env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})


@dataclass
class BootConfig:
    os_prefix: str = ""
    kernel: str = "kernel8.img"
    initramfs: str = ""


def parse_config(text: str) -> BootConfig:
    """config.txt's lines that matter here, in the [all] (and unfiltered) sections; a later line wins."""
    cfg = BootConfig()
    active = True
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            active = line in ("[all]", "[pi4]")
            continue
        if not active:
            continue
        if line.startswith("initramfs "):
            cfg.initramfs = line.split()[1]
        elif "=" in line:
            key, value = (s.strip() for s in line.split("=", 1))
            if key == "os_prefix":
                cfg.os_prefix = value
            elif key == "kernel":
                cfg.kernel = value
    return cfg


@dataclass
class Boot:
    """One power-on: which file the firmware read, and what it booted."""

    config_file: str
    os_prefix: str
    cmdline: str


@dataclass
class Machine:
    """The guest: a card image, a tap device on the guest LAN, a serial log per boot."""

    image: Path
    workdir: Path
    tap: str
    mac: str = "52:54:00:fa:8b:01"
    memory_mb: int = 1024
    boots: list[Boot] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    serial: Path | None = None
    tryboot_next: bool = False
    #: appended to the slot's cmdline after the console (debugging: systemd.journald.forward_to_console=1)
    extra_cmdline: str = ""

    def power_on(self) -> Boot:
        """Read the FAT like the firmware, then start QEMU (in the background)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        name = "tryboot.txt" if self.tryboot_next else "config.txt"
        self.tryboot_next = False  # the firmware's flag is good for one boot
        text = fat_read(self.image, name)
        if text is None:  # a Pi without tryboot.txt boots config.txt
            name, text = "config.txt", fat_read(self.image, "config.txt")
        assert text is not None, "no config.txt on the card's FAT partition"
        cfg = parse_config(text.decode())
        n = len(self.boots) + 1
        kernel, initrd = self.workdir / f"vmlinuz.{n}", self.workdir / f"initrd.{n}"
        fat_copy_out(self.image, cfg.os_prefix + cfg.kernel, kernel)
        fat_copy_out(self.image, cfg.os_prefix + cfg.initramfs, initrd)
        cmdline = (fat_read(self.image, cfg.os_prefix + "cmdline.txt") or b"").decode().strip()
        boot = Boot(name, cfg.os_prefix, cmdline)
        self.boots.append(boot)
        self.serial = self.workdir / f"serial.{n}.log"
        self.proc = subprocess.Popen(
            ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", "2", "-m", str(self.memory_mb),
             "-kernel", str(kernel), "-initrd", str(initrd), "-append", f"{cmdline} console=ttyAMA0 {self.extra_cmdline}".strip(),
             "-drive", f"if=none,id=hd,file={self.image},format=raw,cache=writeback",
             "-device", "virtio-blk-pci,drive=hd",
             "-netdev", f"tap,id=n0,ifname={self.tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=n0,mac={self.mac}",
             "-device", "virtio-rng-pci",
             "-serial", f"file:{self.serial}", "-monitor", "none", "-display", "none", "-no-reboot"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(self.workdir / f"qemu.{n}.err", "wb"),
            preexec_fn=ahead_of_the_suite)
        return boot

    def console(self) -> str:
        return self.serial.read_text("utf-8", "replace") if self.serial and self.serial.exists() else ""

    def wait_console(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.console())
            if m:
                return m
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.5)
        raise AssertionError(f"console never showed {pattern!r} in {timeout} s; its end:\n{self.console()[-4000:]}")

    def wait_off(self, timeout: float) -> str:
        """Until QEMU ends (the guest powered off or rebooted); notes a tryboot request."""
        assert self.proc is not None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the guest did not stop in {timeout} s; console:\n{self.console()[-4000:]}")
        text = self.console()
        self.tryboot_next = TRYBOOT_LINE in text
        return text

    def power_cut(self) -> None:
        """Pull the plug: QEMU killed, nothing flushed that the guest had not written out."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
