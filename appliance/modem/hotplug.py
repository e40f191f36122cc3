"""USB modems coming and going: udev "tty" events as plain :class:`HotplugEvent` objects.

pyudev's netlink monitor is read from the event loop through its file descriptor (no thread).
Each add/remove becomes a ``HotplugEvent`` with the device node and its ``/dev/serial/by-id``
links (udev's DEVLINKS), handed to a callback: the modem manager's ``handle``, which tests call
directly with events of their own.  Where udev is not there (containers, CI) the monitor says so
and the appliance goes on with its configured devices, whose lines poll for their paths anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

log = logging.getLogger("faxbridge.modem")

#: udev's stable names live in /dev/serial/by-id/
BY_ID = "/serial/by-id/"


@dataclass(frozen=True)
class HotplugEvent:
    action: Literal["add", "remove"]
    node: str  # /dev/ttyUSB0
    links: tuple[str, ...] = ()  # /dev/serial/by-id/usb-..., /dev/serial/by-path/...

    @property
    def stable_path(self) -> str:
        """The by-id link if there is one (survives re-plugging into another port), else the node."""
        return next((link for link in self.links if BY_ID in link), self.node)

    @property
    def looks_like_modem(self) -> bool:
        """A USB/ACM serial device, not a console or a pty: what auto-adoption may take."""
        name = os.path.basename(self.node)
        return any(BY_ID in link for link in self.links) or name.startswith(("ttyUSB", "ttyACM"))


def event_from_udev(device: Any) -> HotplugEvent | None:
    """A pyudev Device (as the monitor yields it) -> HotplugEvent; None for other actions."""
    action = getattr(device, "action", None)
    node = getattr(device, "device_node", None)
    if action not in ("add", "remove") or not node:
        return None
    return HotplugEvent(action, node, tuple(sorted(device.device_links)))


class HotplugMonitor:
    """pyudev Monitor on subsystem "tty", read on the event loop."""

    def __init__(self, callback: Callable[[HotplugEvent], None]) -> None:
        self.callback = callback
        self.monitor: Any = None
        self.reason = ""
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> bool:
        """True if events will come; False (and ``reason`` says why) where udev cannot be monitored."""
        try:
            import pyudev

            if not os.path.isdir("/run/udev"):
                raise OSError("no udev daemon (/run/udev is missing)")
            monitor = pyudev.Monitor.from_netlink(pyudev.Context())
            monitor.filter_by("tty")
            monitor.start()
            self._loop = asyncio.get_running_loop()
            self._loop.add_reader(monitor.fileno(), self._readable)
        except Exception as e:  # noqa: BLE001 - ImportError, no netlink permission, no udev: not fatal
            self.reason = f"hot-plug unavailable: {e}"
            log.warning("%s; only the configured devices are used (their paths are polled)", self.reason)
            return False
        self.monitor = monitor
        log.info("hot-plug: watching udev tty events")
        return True

    def _readable(self) -> None:
        while self.monitor is not None:
            try:
                device = self.monitor.poll(timeout=0)
            except Exception as e:  # noqa: BLE001 - pyudev's errors vary; without the monitor only polling is lost
                log.warning("hot-plug: reading udev failed: %s", e)
                return
            if device is None:
                return
            event = event_from_udev(device)
            if event is None:
                continue
            try:
                self.callback(event)
            except Exception:  # one bad event must not stop the monitor
                log.exception("hot-plug: handling %s", event)

    def stop(self) -> None:
        if self.monitor is not None and self._loop is not None:
            self._loop.remove_reader(self.monitor.fileno())
        self.monitor = None
