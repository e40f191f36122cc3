"""The Class 2.0 receive driver for real: efax sends (Class 1, port A) over the virtual line to
our :class:`Class2Receiver` on port B, whose modem is the virtual Class 2.0 emulator (spandsp's
T.30 behind the Class 2.0 command set).  Real ptys, real spandsp, real time.  The 3-page efax
call through the daemon's Class 2.0 line is in test_line_efax.py; here the line dropped after
page 2, and efax as an independent Class 2.0 receiver checking the emulator."""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from appliance.fax.pages import read_pages
from appliance.modem.class2 import Class2Receiver
from appliance.modem.driver import ModemCall
from appliance.modem.serial_port import ModemPort
from appliance.modem.virtual import LineOptions, VirtualLine

from .test_virtual_line import EFAX, EFAX_HEADER_ROWS, _efax_pages, _rows, needs_efax
from tests.budgets import LOADED

#: efax's header line sits in the rows it adds; compare sent rows from here on
BODY_FROM = 40


def _body_rows_equal(sent: Path, received) -> list[int]:
    """Sent rows BODY_FROM.. against received rows BODY_FROM+20..: the rows that differ."""
    s = _rows(sent)
    im = received.convert("1")
    stride = (im.width + 7) // 8
    data = im.tobytes()
    r = [data[i * stride:(i + 1) * stride] for i in range(im.height)]
    assert len(r) >= len(s) + EFAX_HEADER_ROWS, (len(s), len(r))
    body = r[BODY_FROM + EFAX_HEADER_ROWS:len(s) + EFAX_HEADER_ROWS]
    return [i + BODY_FROM for i, (x, y) in enumerate(zip(s[BODY_FROM:], body)) if x != y]


async def _answer_with_class2(path: Path, call: ModemCall, dial) -> tuple:
    port = await ModemPort.open(str(path), flow="none")
    try:
        for cmd in ("ATZ", "ATE0", "AT+FCLASS=2.0"):
            await port.command(cmd, LOADED)
        fclass = await port.command("AT+FCLASS=?", LOADED)
        assert fclass.lines == ["0,1,1.0,2,2.0"]
        dial()  # the modem is ready: now the fax may come in (ATZ would hang up a ringing call)
        while True:  # the line manager's job: wait for RING, then hand over to the driver
            ev = await asyncio.wait_for(port.events.get(), 60)
            if getattr(ev, "line", "") == "RING":
                break
        return await Class2Receiver("2.0").receive(port, call)
    finally:
        port.close()


def _call(tmp_path: Path, count: int, options: LineOptions | None = None):
    pages = _efax_pages(tmp_path, count)
    tiff = tmp_path / "rx.tif"
    call = ModemCall(device=str(tmp_path / "ttyB"), line="modem:test", tiff_path=tiff, ident="FAXBRIDGE 2",
                     ecm=False, max_call_duration=400)
    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB"), options=options) as ln:
        t0 = time.monotonic()
        procs: list[subprocess.Popen] = []
        with open(tmp_path / "tx.log", "w") as txlog:
            def dial() -> None:
                procs.append(subprocess.Popen([EFAX, "-d", str(tmp_path / "ttyA"), "-o1", "-l", "+1 555 0100", "-t", "5551000",
                                               *map(str, pages)], stdout=txlog, stderr=subprocess.STDOUT))
            try:
                result = asyncio.run(_answer_with_class2(tmp_path / "ttyB", call, dial))
                tx_rc = procs[0].wait(120)
            finally:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
        elapsed = time.monotonic() - t0
        record = ln.calls[-1]
    return pages, tiff, result, tx_rc, elapsed, record, (tmp_path / "tx.log").read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("modem-class2")
@needs_efax
def test_line_dropped_after_page_two_keeps_two_pages(tmp_path: Path) -> None:
    pages, tiff, result, tx_rc, elapsed, record, log = _call(tmp_path, 3, LineOptions(hangup_after_page=2))
    f = result.facts
    assert record.pages == 2 and record.ended_by == "fault: hang-up after page 2", record
    assert not result.complete
    assert f.pages == 2 and f.result_code != 0, f.result_text
    assert f.modem_history
    received = read_pages(tiff)
    assert len(received) == 2
    for n, (sent, got) in enumerate(zip(pages, received), 1):
        assert not _body_rows_equal(sent, got), f"page {n} differs"
    print(f"line dropped after page 2: {elapsed:.1f} s, {f.result_text!r}")


@pytest.mark.slow
@pytest.mark.xdist_group("modem-class2")
@needs_efax
def test_efax_as_class20_dte_receives_through_the_emulator(tmp_path: Path) -> None:
    """A third-party Class 2.0 DTE (efax -o0) on the emulator: checks the emulator without our driver."""
    from .test_virtual_line import _assert_body_equal

    pages = _efax_pages(tmp_path, 2)
    with VirtualLine(str(tmp_path / "ttyA"), str(tmp_path / "ttyB")) as ln:
        t0 = time.monotonic()
        with open(tmp_path / "rx.log", "w") as rxlog, open(tmp_path / "tx.log", "w") as txlog:
            rx = subprocess.Popen([EFAX, "-d", str(tmp_path / "ttyB"), "-o0", "-r", str(tmp_path / "rx")],
                                  stdout=rxlog, stderr=subprocess.STDOUT)
            assert ln.wait_for(lambda l: l.b.present, LOADED)
            time.sleep(2.0)  # efax sets Class 2.0 up, then ATA (answered when the ring comes)
            tx = subprocess.Popen([EFAX, "-d", str(tmp_path / "ttyA"), "-o1", "-t", "5551000", *map(str, pages)],
                                  stdout=txlog, stderr=subprocess.STDOUT)
            try:
                tx_rc, rx_rc = tx.wait(240), rx.wait(60)
            finally:
                for p in (tx, rx):
                    if p.poll() is None:
                        p.kill()
        elapsed = time.monotonic() - t0
        call = ln.calls[-1]
    logs = (tmp_path / "tx.log").read_text() + (tmp_path / "rx.log").read_text()
    assert tx_rc == 0 and rx_rc == 0, logs[-3000:]
    assert "in class 2.0" in logs and call.pages == 2
    received = sorted(tmp_path.glob("rx.0*"))
    assert [p.name[-3:] for p in received] == ["001", "002"], logs[-2000:]
    for sent, got in zip(pages, received):
        _assert_body_equal(sent, got)
    print(f"efax (Class 1) -> efax (Class 2.0 on the emulator), 2 pages: {elapsed:.1f} s")
