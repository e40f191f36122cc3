"""The Class 1 drivers against recorded dialogues of a real (spandsp T.31) modem, byte for byte.

Each recording (made by ``record_class1.py`` from a real call over the virtual line) is replayed
on a pty: the modem's answers are played back, and every byte our driver writes (commands, HDLC
frames, ECM bit stream, gaps) must equal what it wrote in the recorded call.  The call then has
to end the same way: complete, the same pages.  A hand-edited variant checks a modem quirk the
recording does not contain (+FCERROR in place of the image carrier).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from appliance.fax.pages import STANDARD, read_pages, write_fax_tiff
from appliance.fax.testpages import demo_pages
from appliance.modem.class1 import Class1Sender
from appliance.modem.serial_port import ModemPort

from .record_class1 import ECM_PAGES, SETUP, TX_IDENT, answer
from .replay import ReplayModem, load
from tests.budgets import LOADED

DIALOGUES = Path(__file__).parent / "dialogues"


async def _receive(path: str, tiff: Path, quirks: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    port = await ModemPort.open(path, flow="none")
    try:
        return await answer(port, tiff, quirks, max_call_duration=120)
    finally:
        port.close()


def _replay_receive(tmp_path: Path, name: str):  # type: ignore[no-untyped-def]
    modem = ReplayModem(load(DIALOGUES / name), tmp_path / "modem")
    try:
        result = asyncio.run(asyncio.wait_for(_receive(str(tmp_path / "modem"), tmp_path / "rx.tif"), 120))
    finally:
        modem.close()
    return modem, result


@pytest.mark.parametrize("name,pages,ecm", [("class1_receive_ecm.json.gz", 2, True),
                                             ("class1_receive_efax.json.gz", 1, False)])
def test_receiver_replays_a_recorded_call_byte_for_byte(tmp_path: Path, name: str, pages: int, ecm: bool) -> None:
    modem, result = _replay_receive(tmp_path, name)
    assert modem.error is None, modem.error
    assert modem.finished, f"the driver stopped at chunk {modem.position} of {len(modem.script)}"
    assert result.complete, result.facts.result_text
    assert result.facts.pages == pages and result.facts.ecm is ecm
    assert len(read_pages(tmp_path / "rx.tif")) == pages


def test_sender_replays_a_recorded_ecm_call_byte_for_byte(tmp_path: Path) -> None:
    src = tmp_path / "send.tif"
    write_fax_tiff(demo_pages(ECM_PAGES["count"], ECM_PAGES["dpi"], seed=ECM_PAGES["seed"]), src, STANDARD)
    modem = ReplayModem(load(DIALOGUES / "class1_send_ecm.json.gz"), tmp_path / "modem")

    async def main():  # type: ignore[no-untyped-def]
        port = await ModemPort.open(str(tmp_path / "modem"), flow="none")
        try:
            for cmd in SETUP:
                await port.command(cmd)
            return await Class1Sender("5551000", src, ident=TX_IDENT, ecm=True, max_duration=120).send(port)
        finally:
            port.close()

    try:
        ok, info = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        modem.close()
    assert modem.error is None, modem.error
    assert modem.finished
    assert ok and info["pages"] == 2 and info["ecm"], info["result"]


def test_fcerror_instead_of_the_image_carrier_fetches_the_v21_frame(tmp_path: Path) -> None:
    """+FCERROR answers +FRM when the modem hears V.21 (the sender repeated DCS): the driver asks
    +FRH=3 next, as HylaFAX does, instead of failing or waiting for the image carrier again."""
    chunks = load(DIALOGUES / "class1_receive_ecm.json.gz")
    # cut the recording at the first +FRM and let the modem answer +FCERROR
    at = next(i for i, (d, b) in enumerate(chunks) if d == ">" and b.startswith(b"AT+FRM="))
    script = chunks[:at + 1] + [("<", b"\r\n+FCERROR\r\n"), (">", b"AT+FRH=3\r")]
    modem = ReplayModem(script, tmp_path / "modem")
    try:
        async def main() -> None:
            task = asyncio.create_task(_receive(str(tmp_path / "modem"), tmp_path / "rx.tif"))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + LOADED
            while not (modem.finished or modem.error) and loop.time() < deadline:
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        asyncio.run(main())
    finally:
        modem.close()
    assert modem.error is None, modem.error
    assert modem.finished, "the driver did not ask for the V.21 frame after +FCERROR"


def test_no_frs_quirk_waits_locally_instead_of_asking_the_modem(tmp_path: Path) -> None:
    """USR modems reset on +FRS (HylaFAX config.usr-rts): with the quirk the same call goes through
    with every +FRS=7 and its OK taken out of the recording."""
    chunks = load(DIALOGUES / "class1_receive_ecm.json.gz")
    script, i = [], 0
    while i < len(chunks):
        if chunks[i] == (">", b"AT+FRS=7\r"):
            i += 2  # the command and its OK
            continue
        script.append(chunks[i])
        i += 1
    assert len(script) < len(chunks)
    modem = ReplayModem(script, tmp_path / "modem")

    async def main():  # type: ignore[no-untyped-def]
        return await _receive(str(tmp_path / "modem"), tmp_path / "rx.tif", frozenset({"no_frs"}))

    try:
        result = asyncio.run(asyncio.wait_for(main(), 120))
    finally:
        modem.close()
    assert modem.error is None, modem.error
    assert modem.finished and result.complete and result.facts.pages == 2
