"""A network namespace of the test run's own with a tap device: the guest's LAN.

The boot test needs the box on a real layer-2 network (SIP and RTP carry addresses in their
payloads, so QEMU's user-mode NAT would rewrite the wrong half). A tap device in a namespace this
run creates gives exactly that, and no address outside it is ever reached. The test process itself
steps into the namespace (setns on its main thread; threads and programs started afterwards are
born in it) and steps back out at the end.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class GuestLan:
    """``ip netns NAME`` with ``TAP`` at HOST_ADDR/24; the guest takes GUEST_ADDR."""

    name: str
    tap: str = "fbtap0"
    host_addr: str = "192.168.76.1"
    guest_addr: str = "192.168.76.2"
    _home: int = -1

    def create(self) -> None:
        _ip("netns", "add", self.name)
        _ip("-n", self.name, "link", "set", "lo", "up")
        _ip("-n", self.name, "tuntap", "add", "dev", self.tap, "mode", "tap")
        _ip("-n", self.name, "addr", "add", f"{self.host_addr}/24", "dev", self.tap)
        _ip("-n", self.name, "link", "set", self.tap, "up")

    def enter(self) -> None:
        """This thread (and what it starts from now on) into the namespace."""
        self._home = os.open("/proc/self/ns/net", os.O_RDONLY)
        fd = os.open(f"/run/netns/{self.name}", os.O_RDONLY)
        try:
            _setns(fd)
        finally:
            os.close(fd)

    def leave(self) -> None:
        if self._home >= 0:
            _setns(self._home)
            os.close(self._home)
            self._home = -1

    def delete(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
