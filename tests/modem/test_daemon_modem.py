"""The daemon with modem lines: a modem fax takes the SIP path through spool, routing and
delivery; a device that cannot be opened is a line that is down, not a daemon that is."""
from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Config
from appliance.daemon import Appliance
from appliance.calls import modem_line as line_mod
from tests.conftest import free_port

from .lines import MODEM, run, until
from .scripted import ScriptedModem
from tests.budgets import LOADED


def config(tmp_path: Path, devices: list[str]) -> Config:
    port = free_port()
    return Config.from_dict({
        "sip": {"listen": [f"udp:127.0.0.1:{port}"]},
        "spool": {"dir": str(tmp_path / "spool")},
        "delivery": {"backend": "maildir", "url": str(tmp_path / "Maildir")},
        "routing": {"default": "faxes@example.test", "called": {"5551000": "sales@example.test"}},
        "web": {"enabled": False},
        "fax": {"ident": "+1 555 0199"},
        "modem": {"devices": devices, "rings": 2, "flow_control": "none"},
    })


@pytest.fixture
def appliance_side_effects():
    """Appliance.start() tunes the process (gc off and frozen, a short switch interval): undo it."""
    interval = sys.getswitchinterval()
    yield
    gc.unfreeze()
    gc.enable()
    sys.setswitchinterval(interval)


def test_modem_fax_is_spooled_routed_by_ndid_and_delivered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          appliance_side_effects: None) -> None:
    monkeypatch.setitem(line_mod.DRIVERS, "1.0", ("tests.modem.lines", "PageDriver", {}))

    async def main() -> tuple[Any, list[Any], dict[str, Any]]:
        modem = ScriptedModem(MODEM)
        link = tmp_path / "usb-Faxmodem-if00"
        link.symlink_to(modem.path)
        app = Appliance(config(tmp_path, [str(link)]))
        await app.start()
        try:
            assert app.modems is not None
            line = app.modems.lines[str(link)]
            await until(lambda: line.state == "idle", LOADED, "idle")
            modem.unsolicited("RING", "NMBR=5550100", "NAME=ACME", "NDID=5551000", "RING")
            await until(lambda: app.stats["faxes"] == 1, LOADED, "fax received")
            fax = app.spool.get_fax(1)
            await until(lambda: any(j.state == "delivered" for j in app.spool.jobs_for(1)), LOADED, "delivered")
            jobs = app.spool.jobs_for(1)
            status = app.modems.status()
        finally:
            await app.stop()
            modem.close()
        assert app.modems.lines[str(link)].port is None  # stop closed the port
        return fax, jobs, status

    fax, jobs, status = run(main())
    assert fax.line == "modem:usb-Faxmodem-if00" and fax.state in ("received", "routed", "delivering", "delivered") and fax.pages == 1
    assert (fax.caller_number, fax.caller_name, fax.called_number) == ("5550100", "ACME", "5551000")
    assert (fax.remote_ident, fax.bit_rate, fax.complete) == ("+1 555 0100", 14400, True)
    assert fax.extra["device"].endswith("usb-Faxmodem-if00") and fax.extra["a_new_key"] == 5
    assert [j.recipient for j in jobs] == ["sales@example.test"]
    assert status["lines"][0]["calls"] == 1
    assert list((tmp_path / "Maildir" / "new").iterdir())


def test_a_device_that_cannot_be_opened_is_down_and_the_daemon_runs(tmp_path: Path,
                                                                   appliance_side_effects: None) -> None:
    async def main() -> dict[str, Any]:
        app = Appliance(config(tmp_path, [str(tmp_path / "absent")]))
        await app.start()
        try:
            assert app.modems is not None
            line = app.modems.lines[str(tmp_path / "absent")]
            await until(lambda: line.reason.startswith("device not present"), LOADED)
            await asyncio.sleep(0.1)
            return app.modems.status()
        finally:
            await app.stop()

    status = run(main())
    assert status["lines"][0]["state"] == "down"


def test_no_modem_configured_starts_no_manager(tmp_path: Path, appliance_side_effects: None) -> None:
    async def main() -> Any:
        app = Appliance(config(tmp_path, []))
        await app.start()
        await app.stop()
        return app.modems

    assert run(main()) is None
