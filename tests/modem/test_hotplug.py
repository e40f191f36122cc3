"""Hot-plug: udev events as HotplugEvent, and the manager putting devices in and out of service.

Events are injected through ``ModemManager.handle``, the same path the pyudev monitor feeds.
"""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from appliance.modem.hotplug import HotplugEvent, HotplugMonitor, event_from_udev
from appliance.calls.modem_line import LineSettings
from appliance.modem.manager import ModemManager
from appliance.modem.virtual import VirtualLine

from .scripted import ScriptedModem
from .lines import MODEM, AnsweringDriver, Spool, dial, run, until
from tests.budgets import LOADED


def manager(tmp_path: Path, devices: list[str], driver: Any = None, **kw: Any) -> tuple[ModemManager, Spool]:
    spool = Spool(tmp_path)
    settings = LineSettings(flow_control=kw.pop("flow_control", "none"), command_timeout=LOADED, rings=1)
    d = driver or AnsweringDriver()
    return ModemManager(settings, devices, spool.begin, spool.finish, drivers=lambda cls: d, **kw), spool


def test_udev_device_becomes_an_event() -> None:
    dev = SimpleNamespace(action="add", device_node="/dev/ttyUSB0",
                          device_links=["/dev/serial/by-path/pci-0:1.0-port0",
                                        "/dev/serial/by-id/usb-USRobotics_USB_Modem-if00"])
    ev = event_from_udev(dev)
    assert ev == HotplugEvent("add", "/dev/ttyUSB0", ("/dev/serial/by-id/usb-USRobotics_USB_Modem-if00",
                                                     "/dev/serial/by-path/pci-0:1.0-port0"))
    assert ev.stable_path == "/dev/serial/by-id/usb-USRobotics_USB_Modem-if00" and ev.looks_like_modem
    assert event_from_udev(SimpleNamespace(action="change", device_node="/dev/ttyUSB0", device_links=[])) is None
    assert event_from_udev(SimpleNamespace(action="add", device_node=None, device_links=[])) is None
    assert not HotplugEvent("add", "/dev/tty1").looks_like_modem
    assert HotplugEvent("add", "/dev/ttyACM0").stable_path == "/dev/ttyACM0"


def test_monitor_starts_or_says_why_not() -> None:
    async def main() -> tuple[bool, str]:
        monitor = HotplugMonitor(lambda ev: None)
        ok = monitor.start()
        monitor.stop()
        return ok, monitor.reason

    ok, reason = run(main())
    assert ok or reason.startswith("hot-plug unavailable: "), reason
    if not os.path.isdir("/run/udev"):
        assert not ok and "no udev daemon" in reason


def test_monitor_feeds_events_and_survives_a_failing_handler() -> None:
    class FakeUdev:
        def __init__(self, devices: list[Any]) -> None:
            self.devices = devices

        def poll(self, timeout: float) -> Any:
            return self.devices.pop(0) if self.devices else None

    seen: list[HotplugEvent] = []

    def handler(ev: HotplugEvent) -> None:
        seen.append(ev)
        if len(seen) == 1:
            raise RuntimeError("handler bug")

    monitor = HotplugMonitor(handler)
    monitor.monitor = FakeUdev([
        SimpleNamespace(action="add", device_node="/dev/ttyUSB0", device_links=[]),
        SimpleNamespace(action="bind", device_node="/dev/ttyUSB0", device_links=[]),
        SimpleNamespace(action="remove", device_node="/dev/ttyUSB0", device_links=[]),
    ])
    monitor._readable()
    assert [e.action for e in seen] == ["add", "remove"]


def test_configured_by_id_link_goes_down_on_remove_and_back_on_add(tmp_path: Path) -> None:
    link = tmp_path / "usb-Zoom_3095-if00"

    async def main() -> None:
        modem = ScriptedModem(MODEM)
        os.symlink(modem.path, link)
        mgr, _ = manager(tmp_path, [str(link)])
        await mgr.start(hotplug=False)
        line = mgr.lines[str(link)]
        await until(lambda: line.state == "idle", LOADED, "idle")
        assert line.node == modem.path
        # udev removes the links first: the removal names only the node
        mgr.handle(HotplugEvent("remove", modem.path))
        await until(lambda: line.state == "down", LOADED, "down")
        assert "unplugged" in line.reason
        mgr.handle(HotplugEvent("add", modem.path, (str(link),)))
        await until(lambda: line.state == "idle", LOADED, "idle again")
        assert mgr.status()["lines"][0]["state"] == "idle" and mgr.status()["hotplug"] == "off"
        await mgr.stop()
        modem.close()

    run(main())


@pytest.mark.parametrize("auto_adopt", [True, False])
def test_auto_adopt_takes_new_usb_modems_only_when_asked(tmp_path: Path, auto_adopt: bool) -> None:
    link = tmp_path / "serial" / "by-id" / "usb-MultiTech_MT5634ZBA-if00"
    link.parent.mkdir(parents=True)

    async def main() -> dict[str, Any]:
        modem = ScriptedModem(MODEM)
        os.symlink(modem.path, link)
        mgr, _ = manager(tmp_path, [], auto_adopt=auto_adopt)
        await mgr.start(hotplug=False)
        mgr.handle(HotplugEvent("add", "/dev/tty1"))  # a console: never
        mgr.handle(HotplugEvent("add", "/dev/ttyUSB7", (str(link), "/dev/serial/by-id/x")))
        if auto_adopt:
            line = mgr.lines[str(link)]
            await until(lambda: line.state == "idle", LOADED, "adopted line idle")
        status = mgr.status()
        await mgr.stop()
        modem.close()
        return status

    # the event's node is made up; the adopted line opens the by-id link, which points at the pty
    status = run(main())
    devices = [line["device"] for line in status["lines"]]
    assert devices == ([str(link)] if auto_adopt else [])


def test_an_unopenable_device_is_a_line_down_with_the_reason_not_a_crash(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-tty"
    bogus.write_text("")

    async def main() -> dict[str, Any]:
        mgr, _ = manager(tmp_path, [str(bogus), str(tmp_path / "absent")])
        await mgr.start(hotplug=False)
        await until(lambda: all(l.state in ("down", "error") and l.reason != "not started"
                                for l in mgr.lines.values()), LOADED)
        status = mgr.status()
        await mgr.stop()
        return status

    states = {Path(l["device"]).name: (l["state"], l["reason"]) for l in run(main())["lines"]}
    assert states["absent"][0] == "down" and "not present" in states["absent"][1]
    assert states["not-a-tty"][0] == "down" and states["not-a-tty"][1].startswith(
        f"cannot open {bogus}: "), states


def test_lines_are_added_and_removed_through_the_managers_own_methods(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent")

    async def main() -> None:
        mgr, _ = manager(tmp_path, [])
        before = mgr.add(absent)  # not started: the line waits for start()
        await asyncio.sleep(0.05)
        assert mgr.lines == {absent: before} and before.reason == "not started"
        await mgr.start(hotplug=False)
        assert mgr.add(absent) is before  # the same line, now running
        await until(lambda: before.reason.startswith("device not present"), LOADED)
        later = mgr.add(str(tmp_path / "later"))  # added to a running manager: started at once
        await until(lambda: later.reason.startswith("device not present"), LOADED)
        assert await mgr.remove(absent) is before and absent not in mgr.lines
        assert before.state == "down" and before.reason == "stopped"
        assert await mgr.remove(absent) is None
        await mgr.stop()

    run(main())


@pytest.mark.slow
@pytest.mark.xdist_group("modem-line")
def test_udev_remove_mid_call_ends_the_call_with_its_pages(tmp_path: Path) -> None:
    links = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))
    driver = AnsweringDriver(hold=True)

    async def main(vl: VirtualLine) -> Spool:
        mgr, spool = manager(tmp_path, [links[1]], driver=driver, flow_control="rtscts")
        await mgr.start(hotplug=False)
        line = mgr.lines[links[1]]
        await until(lambda: line.state == "idle", LOADED, "idle")
        a, dialling = await dial(tmp_path / "ttyA")
        await until(lambda: driver.answered is not None and driver.answered.is_set(), LOADED, "answered")
        assert line.state == "receiving"
        mgr.handle(HotplugEvent("remove", vl.b.slave_path))
        await until(lambda: bool(spool.finished), LOADED, "finish")
        await until(lambda: line.state == "down", LOADED, "down")
        mgr.handle(HotplugEvent("add", vl.b.slave_path, (links[1],)))
        await until(lambda: line.state == "idle", LOADED, "back in service")
        a.close()
        dialling.cancel()
        await mgr.stop()
        return spool

    with VirtualLine(*links) as vl:
        spool = run(main(vl), 60)
    ((fax_id, result),) = spool.finished
    assert fax_id == 1 and result.facts.pages == 1 and not result.complete
    assert "unplugged" in result.facts.result_text
