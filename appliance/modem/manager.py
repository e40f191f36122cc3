"""All modem lines of the appliance, and the hot-plug events that start and stop them.

A configured device is matched by the path in the config (a /dev/serial/by-id link, stable when
the modem is plugged into another USB port), by any of the event's links, or by the node the
path resolved to when the line last opened it (a removal event comes after the link is gone).
With ``auto_adopt`` any USB/ACM serial device that appears gets a line of its own.

Sending: :meth:`ModemManager.acquire` names the line a fax goes out on, and the caller awaits
``line.send(job)`` at once (no await in between: the line is claimed before another caller can
pick it).  ``appliance.outbound.modem_send.send_over_modem`` does exactly that.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any, TypedDict

from appliance.calls.modem_line import (
    BeginHook,
    FinishHook,
    LineBusy,
    LineSettings,
    LineStatus,
    ModemLine,
    load_driver,
)
from appliance.modem.driver import ReceiveDriver
from appliance.modem.hotplug import HotplugEvent, HotplugMonitor

log = logging.getLogger("faxbridge.modem")


class ModemManager:
    def __init__(
        self,
        settings: LineSettings,
        devices: list[str],
        begin: BeginHook,
        finish: FinishHook,
        *,
        auto_adopt: bool = False,
        drivers: Callable[[str], ReceiveDriver] = load_driver,
    ) -> None:
        self.settings = settings
        self.auto_adopt = auto_adopt
        self._begin, self._finish, self._drivers = begin, finish, drivers
        self.lines: dict[str, ModemLine] = {}
        for device in devices:
            self._line(device)
        self.monitor: HotplugMonitor | None = None
        self.hotplug = "not started"
        self._started = False

    @classmethod
    def from_config(cls, cfg: Any, begin: BeginHook, finish: FinishHook, **kwargs: Any) -> ModemManager:
        """From the whole Config ([modem] plus fax.ident and fax.max_call_duration)."""
        return cls(
            LineSettings.from_config(cfg.modem, cfg.fax),
            list(cfg.modem.devices),
            begin,
            finish,
            auto_adopt=cfg.modem.auto_adopt,
            **kwargs,
        )

    def _line(self, device: str) -> ModemLine:
        line = ModemLine(device, self.settings, self._begin, self._finish, drivers=self._drivers)
        self.lines[device] = line
        return line

    def add(self, device: str) -> ModemLine:
        """The line for ``device``: the one there is, or a new one (started if the manager runs)."""
        line = self.lines.get(device)
        if line is None:
            line = self._line(device)
            if self._started:
                line.start()
        return line

    async def remove(self, device: str) -> ModemLine | None:
        """Stop the line for ``device`` and forget it; a call in progress ends and is still recorded."""
        line = self.lines.get(device)
        if line is None:
            return None
        await line.stop()
        self.lines.pop(device, None)
        return line

    async def start(self, hotplug: bool = True) -> None:
        """Start every line (a missing or broken device is a line in "down"/"error", not a failure)."""
        self._started = True
        for line in self.lines.values():
            line.start()
        if hotplug:
            self.monitor = HotplugMonitor(self.handle)
            self.hotplug = "watching udev" if self.monitor.start() else self.monitor.reason
        else:
            self.hotplug = "off"

    async def stop(self) -> None:
        """Stop the lines: calls in progress end and are still recorded; ports close."""
        if self.monitor is not None:
            self.monitor.stop()
        await asyncio.gather(*(line.stop() for line in self.lines.values()), return_exceptions=True)

    def find(self, event: HotplugEvent) -> ModemLine | None:
        """The line for the event's device.  The node a line last opened only counts for a
        removal: a new device may get the same /dev/ttyUSB0 when it is added."""
        names = {event.node, *event.links}
        for device, line in self.lines.items():
            if device in names or (event.action == "remove" and line.node == event.node):
                return line
            if os.path.exists(device) and os.path.realpath(device) == event.node:
                return line
        return None

    def handle(self, event: HotplugEvent) -> None:
        """One udev event (from the monitor, or a test)."""
        line = self.find(event)
        if event.action == "remove":
            if line is not None:
                log.info("hot-plug: %s removed (%s)", line.device, event.node)
                line.device_removed(f"unplugged ({event.node} removed)")
            return
        if line is not None:
            log.info("hot-plug: %s is back as %s", line.device, event.node)
            line.device_added()
        elif self.auto_adopt and event.looks_like_modem:
            log.info("hot-plug: adopting %s", event.stable_path)
            self.add(event.stable_path)

    def acquire(self, name: str = "any") -> ModemLine:
        """The line to send a fax on: ``"any"`` (or "") is the first line that can send now;
        otherwise the line whose device path or short name is ``name`` (with or without the
        route's ``modem:`` in front).
        LineBusy (in words for the report) when there is none or it cannot send now."""
        wanted = name.strip().removeprefix("modem:")  # the route's whole "modem:<x>" is fine too
        if wanted in ("", "any"):
            candidates = list(self.lines.values())
        else:
            candidates = [line for line in self.lines.values() if wanted in (line.device, line.name, line.line)]
        if not candidates:
            raise LineBusy(f"no modem line {wanted!r} is configured" if wanted not in ("", "any") else "no modem line")
        for line in candidates:
            if line.can_send:
                return line
        states = ", ".join(f"{line.name} {line.state.value}" for line in candidates)
        raise LineBusy(f"no modem line can send now ({states})")

    def status(self) -> ModemsStatus:
        return {"hotplug": self.hotplug, "lines": [line.status() for line in self.lines.values()]}


class ModemsStatus(TypedDict):
    hotplug: str  # "watching udev", "off", "not started" or why udev cannot be watched
    lines: list[LineStatus]
