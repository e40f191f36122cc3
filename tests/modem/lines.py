"""Helpers for the line and hot-plug tests: a scripted modem's answers, the spool hooks, a test
driver that implements the driver contract, and a caller on port A of the virtual line."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from appliance.calls.facts import CallFacts
from appliance.modem.at import DeviceGone
from appliance.modem.driver import ModemCall, ModemCallResult
from appliance.calls.modem_line import CallerInfo
from appliance.modem.serial_port import ModemPort
from tests.budgets import LOADED

MODEM = {
    "ATZ": ["OK"], "ATE0V1Q0": ["OK"], "ATI": ["spandsp", "OK"], "AT+FCLASS=?": ["0,1,1.0", "OK"],
    "AT+FMI?": ["www.soft-switch.org", "OK"], "AT+FMM?": ["spandsp", "OK"], "AT+FMR?": ["0.0.6", "OK"],
    "AT+FCLASS=1": ["OK"], "AT+FCLASS=1.0": ["OK"], "AT+FCLASS=0": ["OK"], "ATS0=0": ["OK"],
    "AT+FTM=?": ["24,48,72,96,145,146", "OK"], "AT+FRM=?": ["24,48,72,96,145,146", "OK"],
    "AT+VCID=1": ["OK"], "ATA": ["CONNECT"], "ATH0": ["OK"], "AT": ["OK"],
}


def run(coro, timeout: float = 30.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(pred: Callable[[], bool], timeout: float, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.02)


class Spool:
    """The two hooks the daemon gives a line (spool.begin_fax / Appliance._finish), recorded."""

    def __init__(self, tmp_path: Path, fail: bool = False) -> None:
        self.tmp_path, self.fail = tmp_path, fail
        self.begun: list[CallerInfo] = []
        self.finished: list[tuple[Any, ModemCallResult]] = []

    async def begin(self, caller: CallerInfo) -> tuple[int, Path]:
        if self.fail:
            raise OSError(28, "No space left on device")
        self.begun.append(caller)
        return len(self.begun), self.tmp_path / f"fax{len(self.begun)}.tif"

    async def finish(self, fax_id: Any, result: ModemCallResult) -> None:
        self.finished.append((fax_id, result))


class AnsweringDriver:
    """Implements the driver contract: ATA, then either hang up at once or hold the call until the
    device goes (then report the pages it has, as a real driver must)."""

    def __init__(self, hold: bool = False, fail: bool = False) -> None:
        self.hold, self.fail = hold, fail
        self.calls: list[ModemCall] = []
        self.answered: asyncio.Event | None = None

    async def receive(self, port: ModemPort, call: ModemCall) -> ModemCallResult:
        self.answered = self.answered or asyncio.Event()
        self.calls.append(call)
        await port.command("ATA", timeout=LOADED, expect=("CONNECT",))
        self.answered.set()
        if self.fail:
            raise RuntimeError("driver bug")
        if self.hold:
            while True:
                ev = await port.events.get()
                if isinstance(ev, DeviceGone):
                    return ModemCallResult(False, CallFacts(pages=1, result_text=f"device gone: {ev.reason}"))
        return ModemCallResult(True, CallFacts(pages=0, result_text="test driver done"))


async def dial(path: Path, number: str = "5551000") -> tuple[ModemPort, asyncio.Task[Any]]:
    """Port A: a caller that dials B and waits (the line rings B every 5 s)."""
    a = await ModemPort.open(str(path), flow="rtscts")
    await a.command("ATE0")
    await a.command("AT+FCLASS=1")
    return a, asyncio.create_task(a.command(f"ATD{number}", timeout=60, expect=("CONNECT",)))


class PageDriver:
    """A driver (contract only) that answers and "receives" one real G4 page into the spool file,
    for the daemon's wiring tests; selected through appliance.calls.modem_line.DRIVERS."""

    async def receive(self, port: ModemPort, call: ModemCall) -> ModemCallResult:
        from appliance.fax.testpages import demo_pages

        await port.command("ATA", timeout=LOADED, expect=("CONNECT",))
        page = demo_pages(1)[0]
        call.tiff_path.parent.mkdir(parents=True, exist_ok=True)
        page.save(call.tiff_path, format="TIFF", compression="group4", dpi=(204, 196))
        return ModemCallResult(True, CallFacts(pages=1, remote_ident="+1 555 0100", bit_rate=14400, ecm=True,
                                               result_code=0, result_text="OK", hangup_reason="normal",
                                               extra={"a_new_key": 5}))


def fax_to_the_daemon(tmp_path: Path, send: Callable[[str], Any], *, modem: dict[str, Any] | None = None,
                      options: Any = None, timeout: float = 420.0) -> tuple[Any, Any, Any, Any]:
    """The whole modem path on the virtual line: the daemon's line on port B (its [modem] section
    updated with ``modem``), ``await send(port A path)`` as the far end calling it.

    Waits for the fax to be recorded and delivered; returns (what send returned, the fax record,
    the delivered mail as an EmailMessage, the line's CallRecord)."""
    import email
    import email.policy

    from appliance.daemon import Appliance
    from appliance.modem.virtual import LineOptions, VirtualLine

    from .test_daemon_modem import config

    links = (str(tmp_path / "ttyA"), str(tmp_path / "ttyB"))
    cfg = config(tmp_path, [links[1]])
    for key, value in (modem or {}).items():
        setattr(cfg.modem, key, value)

    async def main() -> tuple[Any, Any, list[Path]]:
        app = Appliance(cfg)
        await app.start()
        try:
            assert app.modems is not None
            line = app.modems.lines[links[1]]
            await until(lambda: line.state == "idle", LOADED, "idle")
            sent = await send(links[0])
            await until(lambda: app.stats["faxes"] >= 1, 60, "fax recorded")
            await until(lambda: any(j.state == "delivered" for j in app.spool.jobs_for(1)), LOADED, "delivered")
            return sent, app.spool.get_fax(1), list((tmp_path / "Maildir" / "new").iterdir())
        finally:
            await app.stop()

    with VirtualLine(*links, options=options or LineOptions()) as ln:
        sent, fax, mails = asyncio.run(asyncio.wait_for(main(), timeout))
        call = ln.calls[-1] if ln.calls else None
    assert len(mails) == 1, mails
    return sent, fax, email.message_from_bytes(mails[0].read_bytes(), policy=email.policy.default), call


def mailed_tiff(msg: Any) -> bytes:
    (tif,) = [p for p in msg.iter_attachments() if p.get_content_type() == "image/tiff"]
    return tif.get_content()
