"""Record the Class 1 dialogues replayed by test_class1_dialogues.py.

    .venv/bin/python -m tests.modem.record_class1

Runs real calls over the virtual line (spandsp's T.31 modems) and saves, byte for byte, what
crossed each of our drivers' serial ports: our Class 1 receiver answering our ECM sender
(both sides recorded) and answering efax (non-ECM, one page).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from appliance.fax.pages import STANDARD, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.at import Unsolicited
from appliance.modem.class1 import Class1Receiver, Class1Sender
from appliance.modem.driver import ModemCall, ModemCallResult
from appliance.modem.serial_port import ModemPort
from appliance.modem.virtual import VirtualLine

from .replay import record, save
from .test_virtual_line import _efax_pages

HERE = Path(__file__).parent / "dialogues"
SETUP = ("ATZ", "ATE0", "AT+FCLASS=1")
#: the pages and identities the replay test re-creates: they must stay in step with it
ECM_PAGES = dict(count=2, dpi=STANDARD, seed=11)
RX_IDENT, TX_IDENT = "+1 555 1000", "+1 555 0100"


async def answer(port: ModemPort, tiff: Path, quirks: frozenset[str] = frozenset(),
                 max_call_duration: float = 300.0) -> ModemCallResult:
    """Set the modem up, wait for two RINGs and receive with the Class 1 driver (ECM offered)."""
    for cmd in SETUP:
        await port.command(cmd)
    rings = 0
    while rings < 2:
        ev = await asyncio.wait_for(port.events.get(), 60)
        rings += isinstance(ev, Unsolicited) and ev.line == "RING"
    call = ModemCall(device="modem", line="modem:test", tiff_path=tiff, ident=RX_IDENT, ecm=True,
                     max_call_duration=max_call_duration, quirks=quirks)
    return await Class1Receiver().receive(port, call)


async def _receiver(path: str, tiff: Path) -> tuple[bool, list]:
    port = await ModemPort.open(path, flow="none")
    chunks = record(port)
    res = await answer(port, tiff)
    port.close()
    return res.complete, chunks


async def _sender(path: str, tiff: Path) -> tuple[bool, list]:
    port = await ModemPort.open(path, flow="none")
    chunks = record(port)
    for cmd in SETUP:
        await port.command(cmd)
    ok, _ = await Class1Sender("5551000", tiff, ident=TX_IDENT, ecm=True).send(port)
    port.close()
    return ok, chunks


def main() -> int:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        src = tmp / "send.tif"
        write_fax_tiff(demo_pages(ECM_PAGES["count"], ECM_PAGES["dpi"], seed=ECM_PAGES["seed"]), src, STANDARD)

        async def ecm() -> None:
            rx = asyncio.create_task(_receiver(str(tmp / "B"), tmp / "rx.tif"))
            await asyncio.sleep(0.5)
            tx_ok, tx_chunks = await _sender(str(tmp / "A"), src)
            rx_ok, rx_chunks = await rx
            assert tx_ok and rx_ok, "the ECM call failed: nothing recorded"
            save(rx_chunks, HERE / "class1_receive_ecm.json.gz", "Class1Receiver answering Class1Sender, ECM, 2 pages")
            save(tx_chunks, HERE / "class1_send_ecm.json.gz", "Class1Sender calling Class1Receiver, ECM, 2 pages")

        with VirtualLine(str(tmp / "A"), str(tmp / "B")):
            asyncio.run(ecm())

        if shutil.which("efax"):
            pages = _efax_pages(tmp, 1)

            async def efax() -> None:
                rx = asyncio.create_task(_receiver(str(tmp / "D"), tmp / "rx2.tif"))
                await asyncio.sleep(0.5)
                proc = await asyncio.create_subprocess_exec("efax", "-d", str(tmp / "C"), "-o1", "-t", "5551000",
                                                            str(pages[0]), stdout=subprocess.DEVNULL,
                                                            stderr=subprocess.DEVNULL)
                await proc.wait()
                ok, chunks = await rx
                assert ok, "the efax call failed: nothing recorded"
                save(chunks, HERE / "class1_receive_efax.json.gz", "Class1Receiver answering efax 0.9a, 1 page")

            with VirtualLine(str(tmp / "C"), str(tmp / "D")):
                asyncio.run(efax())
    for p in sorted(HERE.glob("class1_*.json.gz")):
        print(p.name, p.stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
